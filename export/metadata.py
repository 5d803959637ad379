"""The ``diga`` metadata of exported models: checkpoint metadata + an ``export`` section.

Where it lives: ONNX ``metadata_props`` key ``diga`` (JSON); TensorRT engines: a JSON sidecar
``<engine>.json`` (e.g. ``model.engine.json``); ``.pt2`` packages: AOTInductor package metadata
key ``diga`` plus the same ``<package>.json`` sidecar.

The checkpoint part carries the training scale (``train_size``, ``crop``) that the inference modes
use; ``export.mode`` is the mode the model runs in by default (``diga export --mode``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .errors import PredictorError
from .formats import format_of, known_suffixes

META_KEY = "diga"
NO_META_HINT = "export it with `diga export`"


def sidecar(path: str | os.PathLike) -> Path:
    """``model.engine`` -> ``model.engine.json`` (never ``model.json``: the checkpoint's sidecar)."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def dumps(meta: dict[str, Any]) -> str:
    return json.dumps(meta, sort_keys=True)


def loads(text: str, source: str | os.PathLike) -> dict[str, Any]:
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as e:
        raise PredictorError(f"{source}: its diga metadata is not valid JSON ({e}); {NO_META_HINT}") from None
    if not isinstance(meta, dict) or "classes" not in meta or "export" not in meta:
        raise PredictorError(f"{source}: its diga metadata lacks classes/export information; {NO_META_HINT}")
    return meta


def default_mode(meta: dict[str, Any]) -> str:
    """The inference mode (:mod:`diga.inference`) a model runs in unless told otherwise: the one its
    export recorded (``export.mode``), else ``auto``."""
    return str(meta.get("export", {}).get("mode") or "auto")


def read_onnx_metadata(path: str | os.PathLike) -> dict[str, Any]:
    import onnx

    path = Path(path)
    if not path.is_file():
        raise PredictorError(f"ONNX model not found: {path}")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf DecodeError and friends
        raise PredictorError(f"{path} is not a readable ONNX model: {e}") from None
    props = {p.key: p.value for p in model.metadata_props}
    if META_KEY not in props:
        raise PredictorError(f"{path} has no diga metadata; {NO_META_HINT}")
    return loads(props[META_KEY], path)


def read_sidecar(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    side = sidecar(path)
    if not side.is_file():
        raise PredictorError(f"{path} has no diga metadata (expected the sidecar {side.name} beside it); "
                             f"{NO_META_HINT}")
    return loads(side.read_text(encoding="utf-8"), side)


def read_export_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """Metadata of any diga model file (checkpoint, .onnx, .engine/.plan, .pt2)."""
    path = Path(path)
    fmt = format_of(path)
    if fmt is not None and fmt.metadata == "checkpoint":
        from diga.checkpoint import read_metadata

        return read_metadata(path)
    if fmt is not None and fmt.metadata == "onnx":
        return read_onnx_metadata(path)
    if fmt is not None and fmt.metadata == "sidecar":
        if not path.is_file():
            raise PredictorError(f"model file not found: {path}")
        return read_sidecar(path)
    suffix = path.suffix.lower()
    raise PredictorError(f"{path}: unknown model format {suffix or '(no extension)'!r}; expected one of "
                         f"{known_suffixes()}")
