"""TensorRT engines from the exported ONNX graph (TensorRT 10 Python API; TensorRT for RTX too).

Nothing here can run without ``tensorrt`` and a CUDA GPU; the parts that do not need them
(profile shapes, the QDQ check, the error messages) are plain Python and unit-tested on CPU.

Build: ``Builder`` -> ``create_network`` -> ``OnnxParser.parse_from_file`` -> ``BuilderConfig``
(``set_memory_pool_limit(WORKSPACE)``, FP16 flag, INT8 flag, one optimisation profile
min/opt/max, a timing cache loaded from and saved to a file) -> ``build_serialized_network``.
fp32 builds clear the TF32 flag so that "fp32" means fp32 (the parity check requires 99.9 %
argmax agreement there); use ``--half`` for speed.

INT8 is explicit quantisation: the parsed ONNX graph is the QDQ graph of
:mod:`diga.export.quantize` (calibrated there on the ``--calib`` images, symmetric int8 as
TensorRT requires), built with the INT8 flag (and FP16 for the layers left unquantised).
TensorRT 10.1 deprecates the implicit calibrators (``IInt8EntropyCalibrator2``), and the same
quantisation serves ONNX Runtime on the CPU.

TensorRT for RTX (module ``tensorrt_rtx``, or ``tensorrt_rtx_bindings``) has the same builder API
but no FP16/INT8 builder flags: there ``--half`` builds from an ONNX graph that computes in fp16
itself, and ``--int8`` from the QDQ graph alone (its Q/DQ nodes set the precision).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from diga.io import cache_dir

from .errors import ExportError
from .graph import INPUT_NAME

TRT_MODULES = ("tensorrt", "tensorrt_rtx", "tensorrt_rtx_bindings")
INSTALL_HINT = (
    "TensorRT is not installed: install TensorRT 10 with `pip install tensorrt` on a machine with an "
    "NVIDIA GPU and driver (or TensorRT for RTX: `pip install tensorrt_rtx`), and build the engine "
    "there -- engines are specific to the GPU and the TensorRT version. Without a GPU, deploy the "
    "ONNX model with ONNX Runtime (`diga export WEIGHTS --format onnx`)."
)
GPU_HINT = (
    "TensorRT needs a CUDA GPU, but torch.cuda.is_available() is False here (no NVIDIA GPU or "
    "driver, or a CPU-only PyTorch build). Build and run engines on the GPU machine "
    "(`pip install tensorrt` there)."
)


def _find_tensorrt():
    for name in TRT_MODULES:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return None


def load_tensorrt(error: type[Exception] = ExportError):
    """The TensorRT module (``tensorrt``, else TensorRT for RTX); stops clearly without it or a GPU."""
    trt = _find_tensorrt()
    problems = []
    if trt is None:
        problems.append(INSTALL_HINT)
    if not torch.cuda.is_available():
        problems.append(GPU_HINT)
    if problems:
        raise error(" ".join(problems))
    return trt


def is_rtx(trt) -> bool:
    return "rtx" in getattr(trt, "__name__", "")


def has_flag(trt, name: str) -> bool:
    return hasattr(getattr(trt, "BuilderFlag", None), name)


# --------------------------------------------------------------------------------------------
# Optimisation profile


@dataclass(frozen=True)
class ProfileShapes:
    min: tuple[int, int, int, int]
    opt: tuple[int, int, int, int]
    max: tuple[int, int, int, int]

    def as_dict(self) -> dict[str, list[int]]:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}


def profile_shapes(imgsz: Sequence[int], batch: int, dynamic: bool, stride: int,
                   max_scale: float = 2.0) -> ProfileShapes:
    """min/opt/max input shapes. Static: all (batch, 3, H, W). Dynamic: batch 1..N, sides from
    half of ``imgsz`` (at least two strides) to ``max_scale`` times it, multiples of ``stride``;
    the optimum is (N, 3, H, W)."""
    h, w = int(imgsz[0]), int(imgsz[1])
    if batch < 1 or h < 1 or w < 1:
        raise ExportError(f"invalid engine shape: batch {batch}, image size {h}x{w}")
    opt = (batch, 3, h, w)
    if not dynamic:
        return ProfileShapes(opt, opt, opt)

    def down(v: float) -> int:
        return max(2 * stride, int(v) // stride * stride)

    def up(v: float) -> int:
        return max(int(-(-int(v) // stride) * stride), stride)

    lo = (min(down(h / 2), h), min(down(w / 2), w))
    hi = (max(up(h * max_scale), h), max(up(w * max_scale), w))
    return ProfileShapes((1, 3, *lo), opt, (batch, 3, *hi))


# --------------------------------------------------------------------------------------------
# INT8: explicit quantisation


def qdq_nodes(onnx_path: str | os.PathLike) -> int:
    """How many QuantizeLinear/DequantizeLinear nodes the ONNX graph at ``onnx_path`` has."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    return sum(node.op_type in ("QuantizeLinear", "DequantizeLinear") for node in graph.node)


# --------------------------------------------------------------------------------------------
# Build


def default_timing_cache() -> Path:
    root = cache_dir()
    return root / "tensorrt.timing.cache"


def build_engine(onnx_path: str | os.PathLike, engine_path: str | os.PathLike, *, shapes: ProfileShapes,
                 half: bool = False, int8: bool = False, workspace_gb: float = 4.0,
                 timing_cache: str | os.PathLike | None = None, log: Callable[[str], None] = print) -> dict:
    """Build and write a serialized engine from ``onnx_path`` (with ``int8``: a QDQ graph); returns
    build facts for the metadata."""
    from diga.io import atomic_write_bytes

    trt = load_tensorrt(ExportError)
    engine_path = Path(engine_path)
    if int8 and qdq_nodes(onnx_path) == 0:
        raise ExportError(f"{onnx_path} has no QuantizeLinear/DequantizeLinear nodes: INT8 engines are built from "
                          "the QDQ graph of `diga export --int8 --calib DIR` (explicit quantisation)")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: always explicit batch
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise ExportError(f"TensorRT could not parse {onnx_path}: " + "; ".join(errors[:5]))
    config = builder.create_builder_config()
    if hasattr(config, "set_memory_pool_limit"):
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    precision = "fp32"
    if half or int8:
        if has_flag(trt, "FP16"):
            config.set_flag(trt.BuilderFlag.FP16)
            precision = "fp16"
        elif half and not is_rtx(trt):
            raise ExportError(f"{trt.__name__} has no FP16 builder flag; drop --half")
        else:
            precision = "fp16 (from the ONNX graph's types)"
    elif has_flag(trt, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)

    profile = builder.create_optimization_profile()
    profile.set_shape(INPUT_NAME, shapes.min, shapes.opt, shapes.max)
    config.add_optimization_profile(profile)

    if int8:
        if has_flag(trt, "INT8"):
            config.set_flag(trt.BuilderFlag.INT8)
            precision = "int8"
        else:  # TensorRT for RTX: strongly typed, the Q/DQ nodes alone select int8
            precision = "int8 (from the ONNX graph's Q/DQ nodes)"

    cache_file = Path(timing_cache) if timing_cache else default_timing_cache()
    cache = None
    if hasattr(config, "create_timing_cache"):
        blob = cache_file.read_bytes() if cache_file.is_file() else b""
        cache = config.create_timing_cache(blob)
        if not config.set_timing_cache(cache, ignore_mismatch=False):
            log(f"note: the timing cache {cache_file} does not match this GPU/TensorRT; starting a new one")
            cache = config.create_timing_cache(b"")
            config.set_timing_cache(cache, ignore_mismatch=True)
        log(f"timing cache: {cache_file} ({'reused' if blob else 'new'})")

    log(f"building the TensorRT engine ({precision}); this takes a few minutes the first time")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError("TensorRT could not build the engine; see the TensorRT messages above")
    atomic_write_bytes(engine_path, bytes(serialized))
    if cache is not None:
        atomic_write_bytes(cache_file, bytes(config.get_timing_cache().serialize()))
    return {
        "tensorrt": f"{trt.__name__} {getattr(trt, '__version__', '?')}",
        "precision": precision,
        "profile": shapes.as_dict(),
        "timing_cache": str(cache_file) if cache is not None else None,
        "gpu": torch.cuda.get_device_name(0),
    }
