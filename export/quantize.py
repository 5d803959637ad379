"""INT8: a statically quantised (QDQ) copy of the exported fp32 ONNX graph, calibrated on
target-domain frames. The one place for INT8 in the project.

``diga export --format onnx --int8 --calib DIR`` runs the result with ONNX Runtime on the CPU;
``--format tensorrt --int8 --calib DIR`` hands TensorRT a QDQ graph made here (explicit
quantisation; TensorRT 10 deprecates its implicit calibrators).

Calibration images: the image files under DIR (the project's decoder,
:func:`diga.export.images.read_rgb`), at most ``--calib-images`` of them (default
:data:`DEFAULT_CALIB_IMAGES`) spread evenly over the sorted list -- consecutive video frames are
near duplicates -- and pre-processed exactly as the Predictor does it
(:func:`diga.export.graph.prepare`: resize to the export size, RGB / 255, ``(x - mean) / std``).
Normalisation is outside the exported graph, so the calibrator sees the very tensors inference
sees. Calibrate on frames of the deployment camera: ranges taken on other data clip or waste the
8 bits on the real one.

What is quantised, and how. Measured with ``benchmarks/int8.py`` on the built-in benchmark
(``deeplabv2_light`` trained 300 steps on the synthetic target, fp32 target-val mIoU 16.86 over
100 images, 128x256; calibration on 100 target *train* frames; docs/BENCHMARKS.md, "INT8 on the
CPU"). No variant moved the mIoU by more than 0.02, so the choices follow the share of pixels
whose label equals the fp32 model's (all 100 images; the least-agreeing image in brackets) and
the speed:

* activation ranges: **Percentile** (99.999 %) calibration, :data:`DEFAULT_METHOD`: 99.65 %
  (98.93 %), against MinMax 99.60 % (98.24 %) and Entropy 99.61 % (98.51 %); it costs ~1.7x
  the calibration time of MinMax (histograms), nothing at inference;
* weights: int8, symmetric, **per output channel** (per-tensor: 99.50 %);
* activations (``cpu``): **uint8 with a zero point**. ONNX Runtime then folds every ReLU into the
  quantisation range and runs the whole backbone as QLinearConv/QLinearAdd (1.7x fp32 ORT at
  batch 1, 2.8x at batch 4); with symmetric int8 activations the ReLUs stay float between Q/DQ
  pairs, most convolutions are not fused and INT8 is only 1.1x fp32;
* activations (``tensorrt``): int8, symmetric (zero point 0) and float biases -- TensorRT's Q/DQ
  rules; the same calibration and the same fp32 layers otherwise (99.45 % on the CPU);
* kept in fp32 (:data:`KEEP_FP32_OPS`, :data:`KEEP_FP32_LAYERS`): the final bilinear ``Resize``
  of the logits and the 1x1 **classifier** convolution in front of it, whose outputs decide the
  argmax. Quantising both: 98.09 % (96.30 %); the classifier alone: 99.13 % (97.83 %); no
  measurable speed difference;
* conv biases: int32 for ONNX Runtime (its default; float biases give the same fused graph), float
  for TensorRT, which folds them itself (Q/DQ graphs for TensorRT quantise weights and
  activations only);
* ``quant_pre_process`` (shape inference, ORT's fusions): no effect on the graphs ``diga export``
  writes (batch norms are already folded), kept for graphs that arrive unfused.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ExportError, PredictorError

DEFAULT_CALIB_IMAGES = 100
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
DEFAULT_METHOD = "percentile"
KEEP_FP32_OPS: tuple[str, ...] = ("Resize",)
KEEP_FP32_LAYERS: tuple[str, ...] = ("head.classifier.",)  # matched against a node's weight name
TARGETS = ("cpu", "tensorrt")
# images (at 128x256) whose activations ORT's calibrator holds at once; larger inputs hold fewer
_CHUNK_PIXELS = 8 * 128 * 256


@dataclass(frozen=True)
class QuantSettings:
    """How a graph is quantised; the defaults are the measured choice for ONNX Runtime on a CPU."""

    method: str = DEFAULT_METHOD
    per_channel: bool = True
    symmetric_activations: bool = False  # False: uint8 with a zero point; True: int8, zero point 0
    quantize_bias: bool = True
    keep_fp32_ops: tuple[str, ...] = KEEP_FP32_OPS
    keep_fp32_layers: tuple[str, ...] = KEEP_FP32_LAYERS
    op_types: tuple[str, ...] | None = None  # None: every op type ONNX Runtime can quantise
    dedicated_qdq_pairs: bool = False
    preprocess: bool = True  # onnxruntime.quantization.quant_pre_process (shape inference, fusions)


def settings_for(target: str, method: str | None = None) -> QuantSettings:
    """The settings for ``target`` (``cpu``: ONNX Runtime; ``tensorrt``), with another calibration
    ``method`` if given."""
    if target not in TARGETS:
        raise ExportError(f"unknown INT8 target {target!r}; expected one of {', '.join(TARGETS)}")
    settings = QuantSettings()
    if target == "tensorrt":  # TensorRT's Q/DQ rules: int8 with zero point 0, float biases, a pair per consumer
        settings = replace(settings, symmetric_activations=True, quantize_bias=False, dedicated_qdq_pairs=True)
    if method is not None:
        settings = replace(settings, method=check_method(method))
    return settings


def check_method(method: str) -> str:
    method = str(method).lower()
    if method not in CALIBRATION_METHODS:
        raise ExportError(f"--calib-method must be one of {', '.join(CALIBRATION_METHODS)}, got {method!r}")
    return method


# --------------------------------------------------------------------------------------------
# Calibration images


def calibration_files(folder: str | os.PathLike | None, limit: int = DEFAULT_CALIB_IMAGES) -> list[Path]:
    """Up to ``limit`` image files of ``folder``, spread evenly over its sorted file list."""
    from .images import list_images

    if folder is None:
        raise ExportError("--int8 needs --calib DIR: a folder of target-domain images (frames of the "
                          "deployment camera; a hundred or so is enough)")
    if limit < 1:
        raise ExportError(f"--calib-images must be >= 1, got {limit}")
    folder = Path(folder)
    if not folder.is_dir():
        raise ExportError(f"--calib {folder}: not a folder (expected a folder of target-domain images)")
    try:
        files = list_images([folder], "--calib")
    except PredictorError as e:
        raise ExportError(str(e)) from None
    if len(files) <= limit:
        return files
    return [files[int(i * len(files) / limit)] for i in range(limit)]


class CalibrationImages:
    """An ONNX Runtime ``CalibrationDataReader`` over a folder of images: ``{"images": (B, 3, H, W)}``
    float32 batches, prepared as the Predictor prepares them; a short last batch is filled up with
    images from the start (fixed-batch graphs need full batches).

    Unreadable files are skipped with a warning; a folder without a readable image is an
    :class:`ExportError` naming it.
    """

    def __init__(self, folder: str | os.PathLike | None, size: Sequence[int], mean: Sequence[float],
                 std: Sequence[float], batch_size: int = 1, limit: int = DEFAULT_CALIB_IMAGES,
                 input_name: str = "images", warn: Callable[[str], None] | None = None) -> None:
        from .images import read_rgb

        candidates = calibration_files(folder, limit)
        self.folder = Path(folder)  # type: ignore[arg-type]
        self.files: list[Path] = []
        problems = []
        for f in candidates:
            try:
                read_rgb(f)
            except PredictorError as e:
                problems.append(str(e))
                continue
            self.files.append(f)
        if not self.files:
            raise ExportError(f"--calib {self.folder}: none of its {len(candidates)} image file(s) could be read "
                              f"(first: {problems[0]})")
        if problems and warn is not None:
            warn(f"--calib {self.folder}: skipped {len(problems)} unreadable image(s), first: {problems[0]}")
        self.size = (int(size[0]), int(size[1]))
        self.mean, self.std = list(mean), list(std)
        self.batch_size = int(batch_size)
        self.input_name = input_name
        self.batches_fed = 0
        self.set_range(0, len(self))

    def __len__(self) -> int:
        return -(-len(self.files) // self.batch_size)

    def batch(self, k: int) -> np.ndarray:
        """Batch ``k`` as a normalised (B, 3, H, W) float32 array."""
        from .graph import prepare
        from .images import read_rgb

        n = len(self.files)
        idx = [(k * self.batch_size + i) % n for i in range(self.batch_size)]
        return prepare([read_rgb(self.files[i]) for i in idx], self.size, self.mean, self.std).numpy()

    # the CalibrationDataReader protocol (set_range: ORT's chunked calibration, CalibStridedMinMax)
    def set_range(self, start_index: int, end_index: int) -> None:
        self._next, self._end = int(start_index), min(int(end_index), len(self))

    def rewind(self) -> None:
        self.set_range(0, len(self))

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= self._end:
            return None
        x = self.batch(self._next)
        self._next += 1
        self.batches_fed += 1
        return {self.input_name: x}

    def chunk(self) -> int:
        """Batches per calibration chunk: a divisor of ``len(self)`` (ORT requires it) that keeps
        about :data:`_CHUNK_PIXELS` of input in flight."""
        most = max(1, _CHUNK_PIXELS // (self.batch_size * self.size[0] * self.size[1]))
        return max(d for d in range(1, min(most, len(self)) + 1) if len(self) % d == 0)


# --------------------------------------------------------------------------------------------
# Quantisation


@contextlib.contextmanager
def _quiet():
    """ORT's quantiser prints and logs progress and advice; keep the CLI output readable."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


def kept_fp32(model, settings: QuantSettings) -> list[str]:
    """Names of the nodes of ``model`` (an ``onnx.ModelProto``) that stay in fp32."""
    initializers = {t.name for t in model.graph.initializer}
    kept = []
    for node in model.graph.node:
        weights = [name for name in node.input[1:] if name in initializers]
        if node.op_type in settings.keep_fp32_ops or any(
                pattern in name for name in weights for pattern in settings.keep_fp32_layers):
            kept.append(node.name)
    return kept


def _preprocess(model, tmp: Path, warn: Callable[[str], None]):
    """``quant_pre_process`` (symbolic shape inference + ORT's basic fusions), or ``model`` as it is
    when that fails -- quantisation works without it, only with fewer fusions."""
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out = tmp / "preprocessed.onnx"
    try:
        with _quiet():
            quant_pre_process(model, str(out))
        return onnx.load(str(out))
    except Exception as e:  # the shape inferencers raise many types
        warn(f"INT8 pre-processing (quant_pre_process) failed, quantising the graph as exported: "
             f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}")
        return model


def quantize_onnx(model, images: CalibrationImages, settings: QuantSettings | None = None,
                  warn: Callable[[str], None] = print) -> tuple[Any, dict[str, Any]]:
    """Quantise ``model`` (an fp32 ``onnx.ModelProto``); returns the QDQ ``ModelProto`` and the facts
    for the export metadata (``export.quantization``)."""
    import onnx
    import onnxruntime
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    settings = settings or QuantSettings()
    method = check_method(settings.method)
    ort_method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                  "percentile": CalibrationMethod.Percentile}[method]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="diga-int8-") as d:
        tmp = Path(d)
        if settings.preprocess:
            model = _preprocess(model, tmp, warn)
        exclude = kept_fp32(model, settings)
        source = tmp / "fp32.onnx"
        onnx.save_model(model, str(source))
        out = tmp / "int8.onnx"
        extra = {
            "ActivationSymmetric": settings.symmetric_activations,
            "WeightSymmetric": True,
            "QuantizeBias": settings.quantize_bias,
            "DedicatedQDQPair": settings.dedicated_qdq_pairs,
            "CalibStridedMinMax": images.chunk(),  # bounded memory: ranges merged chunk by chunk
        }
        images.rewind()
        try:
            with _quiet():
                quantize_static(
                    str(source), str(out), images, quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=list(settings.op_types) if settings.op_types else None,
                    per_channel=settings.per_channel, reduce_range=False,
                    activation_type=QuantType.QInt8 if settings.symmetric_activations else QuantType.QUInt8,
                    weight_type=QuantType.QInt8, nodes_to_exclude=exclude, calibrate_method=ort_method,
                    extra_options=extra)
        except ExportError:
            raise
        except Exception as e:
            raise ExportError(f"INT8 quantisation failed: {type(e).__name__}: "
                              f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}") from e
        quantized = onnx.load(str(out))
    facts = {
        "tool": f"onnxruntime {onnxruntime.__version__} quantize_static, QDQ",
        "calibration_method": method,
        "calibration_images": len(images.files),
        "calibration_folder": str(images.folder),
        "calibration_size": list(images.size),
        "weights": "int8 symmetric " + ("per-channel" if settings.per_channel else "per-tensor"),
        "activations": "int8 symmetric" if settings.symmetric_activations else "uint8 asymmetric",
        "bias": "int32" if settings.quantize_bias else "fp32",
        "fp32_nodes": exclude,
        "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(settings).items()},
        "seconds": round(time.perf_counter() - t0, 1),
    }
    return quantized, facts
