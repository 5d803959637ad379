"""TensorRT engines from the exported ONNX graph (TensorRT 10 Python API; TensorRT for RTX too).

Nothing here can run without ``tensorrt`` and a CUDA GPU; the parts that do not need them
(profile shapes, calibration batches, the calibrator's batch feeding, the error messages) are
plain Python and unit-tested on CPU.

Build: ``Builder`` -> ``create_network`` -> ``OnnxParser.parse_from_file`` -> ``BuilderConfig``
(``set_memory_pool_limit(WORKSPACE)``, FP16 flag, INT8 flag + ``IInt8EntropyCalibrator2`` fed from
target-domain images, one optimisation profile min/opt/max, a timing cache loaded from and saved
to a file) -> ``build_serialized_network``. fp32 builds clear the TF32 flag so that "fp32" means
fp32 (the parity check requires 99.9 % argmax agreement there); use ``--half`` for speed.

TensorRT for RTX (module ``tensorrt_rtx``, or ``tensorrt_rtx_bindings``) has the same builder API
but no FP16/INT8 builder flags and no implicit INT8 calibration: there ``--half`` builds from an
ONNX graph that computes in fp16 itself, and ``--int8`` stops with a clear message.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

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
# INT8 calibration


class CalibrationData:
    """Normalised (batch, 3, H, W) float32 batches of target-domain images from ``folder``.

    Images are pre-processed exactly as at inference (:func:`diga.export.graph.prepare`); the
    last batch is filled up with images from the start so every batch is full.
    """

    def __init__(self, folder: str | os.PathLike | None, batch_size: int, size: Sequence[int],
                 mean: Sequence[float], std: Sequence[float], limit: int = 500) -> None:
        from .images import list_images

        if folder is None:
            raise ExportError("--int8 needs --calib DIR: a folder of target-domain images (a few hundred "
                              "frames of the deployment camera). Calibrating on other data loses several "
                              "mIoU.")
        folder = Path(folder)
        if not folder.is_dir():
            raise ExportError(f"--calib {folder}: not a folder of images")
        try:
            self.files = list_images([folder], "calibration images")[:limit]
        except ValueError as e:
            raise ExportError(str(e)) from None
        self.batch_size = int(batch_size)
        self.size = (int(size[0]), int(size[1]))
        self.mean, self.std = list(mean), list(std)

    def __len__(self) -> int:
        return -(-len(self.files) // self.batch_size)

    def __iter__(self) -> Iterator[np.ndarray]:
        from .graph import prepare
        from .images import read_rgb

        n = len(self.files)
        for start in range(0, n, self.batch_size):
            idx = [(start + i) % n for i in range(self.batch_size)]
            images = [read_rgb(self.files[i]) for i in idx]
            yield prepare(images, self.size, self.mean, self.std).numpy()


def _to_cuda(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(arr).cuda()


def make_calibrator(trt, data: CalibrationData, cache_path: str | os.PathLike,
                    to_device: Callable[[np.ndarray], torch.Tensor] | None = None):
    """An ``IInt8EntropyCalibrator2`` feeding ``data``; the calibration cache is read/written at
    ``cache_path`` (delete it to recalibrate with other images)."""
    base = getattr(trt, "IInt8EntropyCalibrator2", None)
    if base is None:
        raise ExportError(
            f"{getattr(trt, '__name__', 'this TensorRT')} has no IInt8EntropyCalibrator2 (TensorRT for RTX "
            "has no implicit INT8 calibration): quantise the ONNX model explicitly (Q/DQ nodes, e.g. with "
            "NVIDIA ModelOpt) or build with TensorRT 10 (`pip install tensorrt`)."
        )
    cache_path = Path(cache_path)
    to_device = to_device or _to_cuda

    class EntropyCalibrator(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            base.__init__(self)
            self._batches = iter(data)
            self._current = None  # keep the device buffer alive until the next batch
            self.batches_fed = 0

        def get_batch_size(self) -> int:
            return data.batch_size

        def get_batch(self, names, *args):
            try:
                arr = next(self._batches)
            except StopIteration:
                return None
            self._current = to_device(np.ascontiguousarray(arr, dtype=np.float32))
            self.batches_fed += 1
            return [int(self._current.data_ptr())]

        def read_calibration_cache(self, *args):
            return cache_path.read_bytes() if cache_path.is_file() else None

        def write_calibration_cache(self, cache) -> None:
            from diga.io import atomic_write_bytes

            atomic_write_bytes(cache_path, bytes(cache))

    return EntropyCalibrator()


# --------------------------------------------------------------------------------------------
# Build


def default_timing_cache() -> Path:
    root = Path(os.environ.get("DIGA_CACHE", "~/.cache/diga")).expanduser()
    return root / "tensorrt.timing.cache"


def build_engine(onnx_path: str | os.PathLike, engine_path: str | os.PathLike, *, shapes: ProfileShapes,
                 half: bool = False, int8: bool = False, calibration: CalibrationData | None = None,
                 workspace_gb: float = 4.0, timing_cache: str | os.PathLike | None = None,
                 log: Callable[[str], None] = print) -> dict:
    """Build and write a serialized engine; returns build facts for the metadata."""
    from diga.io import atomic_write_bytes

    trt = load_tensorrt(ExportError)
    engine_path = Path(engine_path)
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

    calibrator = None
    if int8:
        if not has_flag(trt, "INT8"):
            raise ExportError(f"{trt.__name__} has no INT8 builder flag (TensorRT for RTX): quantise the ONNX "
                              "model explicitly, or build with TensorRT 10 (`pip install tensorrt`)")
        if calibration is None:
            raise ExportError("--int8 needs --calib DIR with target-domain images")
        calibrator = make_calibrator(trt, calibration, engine_path.with_name(engine_path.name + ".calib"))
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = calibrator
        if hasattr(config, "set_calibration_profile"):
            config.set_calibration_profile(profile)
        precision = "int8"

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
        "calibration": None if calibrator is None else {
            "images": len(calibration.files), "batches": calibrator.batches_fed,
            "folder": str(calibration.files[0].parent) if calibration.files else None},
        "gpu": torch.cuda.get_device_name(0),
    }
