"""The one table of model formats: what ``diga export`` writes, which backend opens a file, which
options each format takes, where it runs.

Export, backend selection (by suffix), the benchmark, the demo's model lookup and the CLI
choices all read :data:`MODEL_FORMATS`; a new format is one row here plus its exporter and
backend. Importing this module is cheap (no torch), so the CLI can build its help from it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ModelFormat:
    """One row of the table."""

    name: str  # for people: "TensorRT engine"
    argument: str  # the --format / --backend value
    suffix: str  # what `diga export` writes
    also_opens: tuple[str, ...]  # further suffixes its backend loads (other tools' names for the same file)
    cpu: bool  # runs on a machine without a CUDA GPU
    gpu: bool  # runs on a CUDA GPU
    exported: bool  # False for the checkpoint itself: nothing to export
    options: tuple[str, ...]  # export options it takes besides the common ones (COMMON_OPTIONS)
    metadata: str  # where its diga metadata lives: "checkpoint" (safetensors header), "onnx" (metadata_props),
    #                "sidecar" (<file>.json beside it)

    @property
    def suffixes(self) -> tuple[str, ...]:
        return (self.suffix, *self.also_opens)


# Options every export takes (CLI flag names).
COMMON_OPTIONS = ("imgsz", "batch", "dynamic", "output", "out", "check", "check-images")
# INT8 post-training quantisation (diga.export.quantize): a row that lists "int8" takes all of them.
INT8_OPTIONS = ("int8", "calib", "calib-images", "calib-method")
INT8_TAG = ".int8"  # final.safetensors -> final.int8.onnx, beside the fp32 final.onnx

MODEL_FORMATS: tuple[ModelFormat, ...] = (
    ModelFormat("diga checkpoint (PyTorch)", "torch", ".safetensors", (), cpu=True, gpu=True, exported=False,
                options=(), metadata="checkpoint"),
    ModelFormat("ONNX", "onnx", ".onnx", (), cpu=True, gpu=True, exported=True,
                options=("half", *INT8_OPTIONS, "opset", "exporter"), metadata="onnx"),
    ModelFormat("TensorRT engine", "tensorrt", ".engine", (".plan", ".trt"), cpu=False, gpu=True, exported=True,
                options=("half", *INT8_OPTIONS, "opset", "exporter", "workspace", "timing-cache"),
                metadata="sidecar"),
    ModelFormat("AOTInductor package", "pt2", ".pt2", (), cpu=True, gpu=True, exported=True,
                options=("half",), metadata="sidecar"),
)

BACKENDS: tuple[str, ...] = tuple(f.argument for f in MODEL_FORMATS)
EXPORT_FORMATS: tuple[str, ...] = tuple(f.argument for f in MODEL_FORMATS if f.exported)
CHECKPOINT_SUFFIX = next(f.suffix for f in MODEL_FORMATS if not f.exported)
_BY_SUFFIX = {s: f for f in MODEL_FORMATS for s in f.suffixes}
_BY_ARGUMENT = {f.argument: f for f in MODEL_FORMATS}


def format_named(argument: str) -> ModelFormat | None:
    """The row for a --format / --backend value, or None."""
    return _BY_ARGUMENT.get(argument)


def format_of(path: str | os.PathLike) -> ModelFormat | None:
    """The row whose suffixes include ``path``'s (case-insensitive), or None."""
    return _BY_SUFFIX.get(Path(path).suffix.lower())


def export_path(weights: str | os.PathLike, argument: str, int8: bool = False) -> Path:
    """Where ``diga export WEIGHTS --format ARGUMENT`` writes by default: the checkpoint's name with
    the format's suffix (``final.safetensors`` -> ``final.onnx``; with ``--int8`` ``final.int8.onnx``)."""
    fmt = format_named(argument)
    if fmt is None or not fmt.exported:
        raise ValueError(f"{argument!r} is not an export format; choose one of: {', '.join(EXPORT_FORMATS)}")
    if int8 and "int8" not in fmt.options:
        raise ValueError(f"--format {argument} has no INT8 variant; formats with --int8: {', '.join(int8_formats())}")
    return Path(weights).with_suffix((INT8_TAG if int8 else "") + fmt.suffix)


def int8_formats() -> tuple[str, ...]:
    """The export formats whose row takes ``--int8``."""
    return tuple(f.argument for f in MODEL_FORMATS if "int8" in f.options)


def known_suffixes() -> str:
    """The suffixes a model file may have, for error messages: ``.safetensors, .onnx, .engine/.plan/.trt, .pt2``."""
    return ", ".join("/".join(f.suffixes) for f in MODEL_FORMATS)


def choices(items: tuple[str, ...]) -> str:
    """``a, b or c`` for help texts."""
    return f"{', '.join(items[:-1])} or {items[-1]}" if len(items) > 1 else "".join(items)
