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
import re
from pathlib import Path
from typing import Any

from .errors import PredictorError
from .formats import ModelFormat, format_of, known_suffixes

META_KEY = "diga"
NO_META_HINT = "export it with `diga export`"


def sidecar(path: str | os.PathLike) -> Path:
    """``model.engine`` -> ``model.engine.json`` (never ``model.json``: the checkpoint's sidecar)."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def dumps(meta: dict[str, Any]) -> str:
    return json.dumps(meta, sort_keys=True)


def loads(text: str, source: str | os.PathLike, output_channels: int | None = None) -> dict[str, Any]:
    """Parse and validate (:func:`validate_export_metadata`) the diga metadata of an exported model."""
    try:
        meta = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise PredictorError(f"{source}: its diga metadata is not valid JSON ({e}); {NO_META_HINT}") from None
    if not isinstance(meta, dict) or "classes" not in meta or "export" not in meta:
        raise PredictorError(f"{source}: its diga metadata lacks classes/export information; {NO_META_HINT}")
    return validate_export_metadata(meta, source, output_channels)


def validate_export_metadata(meta: dict[str, Any], source: str | os.PathLike,
                             output_channels: int | None = None) -> dict[str, Any]:
    """The one check of an exported model's metadata: the checkpoint part
    (:func:`diga.checkpoint.validate_metadata`), the ``export`` section, and -- when the caller read
    it from the graph itself -- that the logits have one channel per class listed."""
    from diga.checkpoint import CheckpointError, validate_metadata

    try:
        validate_metadata(meta, source)
    except CheckpointError as e:
        raise PredictorError(str(e)) from None
    problems = _export_problems(meta["export"])
    if problems:
        raise PredictorError(f"{source}: invalid diga metadata: " + "; ".join(problems))
    check_output_channels(meta, output_channels, source)
    return meta


def check_output_channels(meta: dict[str, Any], output_channels: int | None, source: str | os.PathLike) -> None:
    """A logits output must have one channel per class the (validated) metadata lists."""
    output = meta["export"].get("output", {}).get("name", "logits")
    if output_channels is not None and output == "logits" and output_channels != meta["num_classes"]:
        raise PredictorError(f"{source}: the model outputs {output_channels} channels but its diga metadata lists "
                             f"{meta['num_classes']} classes; the metadata belongs to another model ({NO_META_HINT})")


def _export_problems(exp: Any) -> list[str]:
    from diga.checkpoint import MAX_SIDE

    from .formats import EXPORT_FORMATS
    from .graph import MAX_BATCH, OUTPUTS

    if not isinstance(exp, dict):
        return [f"export must be an object, got {exp!r}"]

    def count(v: Any, high: int) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= high

    problems = []
    if exp.get("format") not in EXPORT_FORMATS:
        problems.append(f"export.format must be one of {', '.join(EXPORT_FORMATS)}, got {exp.get('format')!r}")
    output = exp.get("output", {})
    if not isinstance(output, dict) or output.get("name", "logits") not in OUTPUTS:
        problems.append(f"export.output.name must be one of {', '.join(OUTPUTS)}, got {output!r}")
    if not isinstance(exp.get("dynamic", True), bool):
        problems.append(f"export.dynamic must be true or false, got {exp['dynamic']!r}")
    imgsz = exp.get("imgsz")
    if imgsz is not None and not (isinstance(imgsz, list) and len(imgsz) == 2 and all(count(v, MAX_SIDE) for v in imgsz)):
        problems.append(f"export.imgsz must be [height, width] in 1..{MAX_SIDE}, got {imgsz!r}")
    if exp.get("batch") is not None and not count(exp["batch"], MAX_BATCH):
        problems.append(f"export.batch must be an integer 1..{MAX_BATCH}, got {exp['batch']!r}")
    if not count(exp.get("output_stride", 8), 64):
        problems.append(f"export.output_stride must be an integer 1..64, got {exp['output_stride']!r}")
    device = exp.get("device", "cpu")
    if not (isinstance(device, str) and re.fullmatch(r"cpu|cuda(:\d+)?", device)):
        problems.append(f"export.device must be cpu or cuda[:N], got {device!r}")
    return problems


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
    outputs = model.graph.output
    shape = ([d.dim_value if d.HasField("dim_value") else d.dim_param for d in outputs[0].type.tensor_type.shape.dim]
             if outputs else [])
    return loads(props[META_KEY], path, channels_of(shape))


def channels_of(shape: Any) -> int | None:
    """The channel count of an (N, C, H, W) output shape read from a graph, or None when the output is
    not 4-D (labels) or its channel dimension is symbolic."""
    if isinstance(shape, (list, tuple)) and len(shape) == 4 and isinstance(shape[1], int) and shape[1] > 0:
        return shape[1]
    return None


def read_sidecar(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    side = sidecar(path)
    if not side.is_file():
        raise PredictorError(f"{path} has no diga metadata (expected the sidecar {side.name} beside it); "
                             f"{NO_META_HINT}")
    try:
        text = side.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise PredictorError(f"{side}: cannot read the diga metadata of {path.name} ({e}); {NO_META_HINT}") from None
    return loads(text, side)


def read_export_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """Metadata of any diga model file (checkpoint, .onnx, .engine/.plan, .pt2)."""
    path = Path(path)
    fmt = model_format(path)
    if fmt.metadata == "checkpoint":
        from diga.checkpoint import read_metadata

        return read_metadata(path)
    if fmt.metadata == "onnx":
        return read_onnx_metadata(path)
    if not path.is_file():  # the third kind: a JSON sidecar beside the file
        raise PredictorError(f"model file not found: {path}")
    return read_sidecar(path)


def model_format(path: str | Path) -> ModelFormat:
    """The row of the formats table whose suffix ``path`` has, or a PredictorError naming the known ones."""
    fmt = format_of(path)
    if fmt is None:
        suffix = Path(path).suffix.lower()
        raise PredictorError(f"{path}: unknown model format {suffix or '(no extension)'!r}; expected one of "
                             f"{known_suffixes()}")
    return fmt
