"""Checkpoints: safetensors weights + a JSON sidecar. Loading never unpickles.

The metadata (architecture, classes, palette, normalisation, input size, training summary) is
stored twice: inside the safetensors header (so one file is self-describing) and in
``<name>.json`` beside it (so people and other tools can read it without parsing weights).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import nn

from .classes import get_label_space
from .data.transforms import IMAGENET_MEAN, IMAGENET_STD
from .errors import DigaError
from .io import atomic_write, atomic_write_text

FORMAT = "diga-checkpoint"
FORMAT_VERSION = 1
REQUIRED_KEYS = ("format", "architecture", "num_classes", "classes", "palette", "mean", "std")


class CheckpointError(DigaError, ValueError):
    pass


def model_metadata(
    architecture: str, label_space: str, input_size: tuple[int, int] | None = None, **extra: Any
) -> dict[str, Any]:
    """The metadata every diga checkpoint carries."""
    space = get_label_space(label_space)
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "architecture": architecture,
        "label_space": space.name,
        "num_classes": space.num_classes,
        "classes": list(space.classes),
        "palette": [list(c) for c in space.palette],
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
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
    """Metadata from the safetensors header (the sidecar is only a convenience copy)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors file: {e}") from e
    if "diga" not in header:
        raise CheckpointError(f"{path} has no diga metadata; was it written by diga?")
    meta = json.loads(header["diga"])
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: metadata lacks {missing or ['format']}")
    return meta


def load_weights(path: str | Path, device: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    meta = read_metadata(path)
    return load_file(str(path), device=str(device)), meta


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Build the checkpoint's architecture and load its weights, validating both first."""
    from .models import create, list_models

    state, meta = load_weights(path, device)
    arch = meta["architecture"]
    if arch not in list_models():
        raise CheckpointError(f"{path}: unknown architecture {arch!r} (known: {', '.join(list_models())})")
    model = create(arch, num_classes=int(meta["num_classes"]), **meta.get("model_kwargs", {}))
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
    if missing or unexpected or shape:
        parts = []
        if shape:
            parts.append("shape mismatches: " + "; ".join(shape[:3]))
        if missing:
            parts.append(f"{len(missing)} missing tensors (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected tensors (e.g. {unexpected[0]})")
        raise CheckpointError(
            f"{path} does not fit {type(model).__name__}: " + ", ".join(parts)
            + " — is it a checkpoint of another architecture or class count?"
        )
    model.load_state_dict(state)

