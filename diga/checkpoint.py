"""Checkpoints: safetensors weights + a JSON sidecar. Loading never unpickles.

The metadata (architecture, classes, palette, normalisation, input size, training summary) is
stored twice: inside the safetensors header (so one file is self-describing) and in
``<name>.json`` beside it (so people and other tools can read it without parsing weights).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import nn

from .classes import LABEL_SPACES, get_label_space
from .data.transforms import input_norm_stats
from .errors import DigaError
from .io import atomic_write, atomic_write_text

FORMAT = "diga-checkpoint"
FORMAT_VERSION = 1
REQUIRED_KEYS = ("format", "architecture", "num_classes", "classes", "palette", "mean", "std")
SIZE_KEYS = ("input_size", "train_size", "crop")  # (height, width) or null
MAX_CLASSES = 255  # labels are stored as uint8, 255 being "ignore"
MAX_SIDE = 16384  # a larger input size is damage, not a camera
MIN_STD = 1e-6
MAX_KWARG = 4096  # head widths, output strides: larger is damage


class CheckpointError(DigaError, ValueError):
    pass


def model_metadata(
    architecture: str, label_space: str, input_size: tuple[int, int] | None = None, input_norm: str = "imagenet",
    **extra: Any
) -> dict[str, Any]:
    """The metadata every diga checkpoint carries; ``mean`` and ``std`` are those of ``input_norm``
    (``diga.data.transforms.INPUT_NORMS``), which everything that runs the model applies."""
    space = get_label_space(label_space)
    mean, std = input_norm_stats(input_norm)
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "architecture": architecture,
        "label_space": space.name,
        "num_classes": space.num_classes,
        "classes": list(space.classes),
        "palette": [list(c) for c in space.palette],
        "input_norm": input_norm,
        "mean": list(mean),
        "std": list(std),
        "input_size": list(input_size) if input_size else None,
    }
    meta.update(extra)
    return meta


def sidecar_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_suffix(".json")


def save_weights(path: str | Path, state: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    """Write ``state`` (tensors) + ``meta`` atomically as .safetensors and .json sidecar."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    header = {"diga": json.dumps(meta, sort_keys=True)}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=header))
    atomic_write_text(sidecar_path(path), json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return Path(path)


def read_metadata(path: str | Path) -> dict[str, Any]:
    """Metadata from the safetensors header (the sidecar is only a convenience copy), validated."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder; expected a diga checkpoint file (.safetensors)")
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors file: {e}") from e
    if "diga" not in header:
        raise CheckpointError(f"{path} has no diga metadata; was it written by diga?")
    try:
        meta = json.loads(header["diga"])
    except (ValueError, RecursionError) as e:
        raise CheckpointError(f"{path}: its diga metadata is not valid JSON ({e}); the file is damaged") from None
    return validate_metadata(meta, path)


def validate_metadata(meta: Any, source: str | os.PathLike) -> dict[str, Any]:
    """The one check of diga metadata, for checkpoints and (through ``diga.export.metadata``) every
    exported model: what inference relies on has the right type, count and range. Raises a
    :class:`CheckpointError` naming ``source`` and every problem; returns ``meta`` unchanged."""
    if not isinstance(meta, dict):
        raise CheckpointError(f"{source}: its diga metadata is a JSON {type(meta).__name__}, expected an object")
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        raise CheckpointError(f"{source}: metadata lacks {missing}")
    problems = metadata_problems(meta)
    if problems:
        raise CheckpointError(f"{source}: invalid diga metadata: " + "; ".join(problems))
    return meta


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


def _is_setting(v: Any) -> bool:
    """A value an architecture setting may take: a size, a switch or a short name (``head_norm: gn``)."""
    return isinstance(v, bool) or (_is_int(v) and 1 <= v <= MAX_KWARG) or (isinstance(v, str) and 0 < len(v) <= 32)


def _triple(meta: dict[str, Any], key: str, low: float | None = None) -> str | None:
    v = meta[key]
    if not (isinstance(v, list) and len(v) == 3 and all(_is_number(x) for x in v)):
        return f"{key} must be 3 finite numbers (R, G, B), got {v!r}"
    if low is not None and min(v) < low:
        return f"{key} must be positive (at least {low:g}) in every channel, got {v!r}"
    return None


def metadata_problems(meta: dict[str, Any]) -> list[str]:
    """Everything wrong with ``meta`` (a dict holding REQUIRED_KEYS), as phrases for one message."""
    problems = []
    if meta["format"] != FORMAT:
        problems.append(f"format is {meta['format']!r}, expected {FORMAT!r}")
    version = meta.get("format_version", FORMAT_VERSION)
    if not _is_int(version) or version < 1:
        problems.append(f"format_version must be a positive integer, got {version!r}")
    elif version > FORMAT_VERSION:
        problems.append(f"format_version {version} is newer than this diga reads ({FORMAT_VERSION}); upgrade diga")
    arch = meta["architecture"]
    if not isinstance(arch, str) or not arch:
        problems.append(f"architecture must be a model name, got {arch!r}")
    n = meta["num_classes"]
    if not _is_int(n) or not 1 <= n <= MAX_CLASSES:
        problems.append(f"num_classes must be an integer 1..{MAX_CLASSES}, got {n!r}")
        n = None
    classes = meta["classes"]
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        problems.append("classes must be a list of class names")
    elif n is not None and len(classes) != n:
        problems.append(f"{len(classes)} class names for num_classes {n}")
    palette = meta["palette"]
    if not isinstance(palette, list) or not all(
            isinstance(c, list) and len(c) == 3 and all(_is_int(v) and 0 <= v <= 255 for v in c) for c in palette):
        problems.append("palette must be a list of [R, G, B] colours with values 0..255")
    elif n is not None and len(palette) < n:
        problems.append(f"the palette has {len(palette)} colours for {n} classes")
    problems += [p for p in (_triple(meta, "mean"), _triple(meta, "std", MIN_STD)) if p]
    for key in SIZE_KEYS:
        size = meta.get(key)
        if size is not None and not (isinstance(size, list) and len(size) == 2
                                     and all(_is_int(v) and 1 <= v <= MAX_SIDE for v in size)):
            problems.append(f"{key} must be null or [height, width] in 1..{MAX_SIDE}, got {size!r}")
    space = meta.get("label_space")
    if space is not None:
        if not isinstance(space, str) or space not in LABEL_SPACES:
            problems.append(f"label_space must be one of {', '.join(LABEL_SPACES)}, got {space!r}")
        elif n is not None and LABEL_SPACES[space].num_classes != n:
            problems.append(f"label_space {space} has {LABEL_SPACES[space].num_classes} classes, num_classes is {n}")
    kwargs = meta.get("model_kwargs", {})  # architecture settings only: never a file or a download
    if not (isinstance(kwargs, dict) and all(k not in ("pretrained", "num_classes") and _is_setting(v)
                                             for k, v in kwargs.items())):
        problems.append(f"model_kwargs must map architecture settings to integers 1..{MAX_KWARG}, booleans or "
                        f"names, got {kwargs!r}")
    return problems


def load_weights(path: str | Path, device: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors and validated metadata of a checkpoint; NaN or infinite weights are refused."""
    meta = read_metadata(path)
    try:
        state = load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors file: {e}") from e
    damaged = [k for k, t in state.items() if t.is_floating_point() and not all_finite(t)]
    if damaged:
        raise CheckpointError(f"{path}: {len(damaged)} tensor(s) hold NaN or infinite values (e.g. {damaged[0]}); "
                              "the weights are damaged: use an earlier checkpoint")
    return state, meta


def all_finite(t: torch.Tensor) -> bool:
    """No NaN/inf in ``t`` (any dtype, any device)."""
    if t.device.type != "cpu":
        return bool(torch.isfinite(t).all())
    # numpy: torch's threaded kernels cost ~15 ms per small tensor on a busy machine
    a = t.numpy() if t.dtype in (torch.float16, torch.float32, torch.float64) else t.float().numpy()
    return bool(np.isfinite(a).all())


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Build the checkpoint's architecture and load its weights, validating both first."""
    from .models import create, list_models

    state, meta = load_weights(path, device)
    arch = meta["architecture"]
    if arch not in list_models():
        raise CheckpointError(f"{path}: unknown architecture {arch!r} (known: {', '.join(list_models())})")
    kwargs = meta.get("model_kwargs", {})
    try:
        model = create(arch, num_classes=meta["num_classes"], **kwargs)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: cannot build {arch} with model_kwargs {kwargs}: {e}") from None
    load_state_strict(model, state, path)
    return model.to(device).eval(), meta


def load_state_strict(model: nn.Module, state: dict[str, torch.Tensor], path: str | Path) -> None:
    """``load_state_dict`` with a message that names the file and the first mismatches."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shape = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items() if k in state and state[k].shape != v.shape
    ]
    kind = [  # load_state_dict would silently cast integers into float weights
        f"{k}: file {state[k].dtype} vs model {v.dtype}"
        for k, v in expected.items() if k in state and state[k].is_floating_point() != v.is_floating_point()
    ]
    if missing or unexpected or shape or kind:
        parts = []
        if shape:
            parts.append("shape mismatches: " + "; ".join(shape[:3]))
        if kind:
            parts.append("dtype mismatches: " + "; ".join(kind[:3]))
        if missing:
            parts.append(f"{len(missing)} missing tensors (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected tensors (e.g. {unexpected[0]})")
        cause = ("is it a checkpoint of another architecture or class count?" if missing or unexpected or shape
                 else "the file is damaged")
        raise CheckpointError(f"{path} does not fit {type(model).__name__}: " + ", ".join(parts) + f" — {cause}")
    model.load_state_dict(state)

