"""Inference backends behind :class:`~diga.export.Predictor`: PyTorch, ONNX Runtime, TensorRT, AOTInductor.

Every backend takes the *same* prepared input -- a normalised float32 (N, 3, H, W) tensor on
``backend.device`` -- and returns a tensor: ``logits`` (N, C, H, W) at the input resolution or
``labels`` (N, H, W). Shape limits are exposed as ``fixed_size`` / ``fixed_batch`` (static
exports) and ``size_range`` (a TensorRT optimisation profile).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import PredictorError
from .formats import BACKENDS, known_suffixes
from .graph import INPUT_NAME, DeployModule, output_stride
from .metadata import (
    META_KEY,
    NO_META_HINT,
    channels_of,
    check_output_channels,
    loads,
    model_format,
    read_sidecar,
    sidecar,
)


def default_device(device: str | torch.device | None = None) -> torch.device:
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise PredictorError(f"device {device} requested but CUDA is not available here; use device='cpu'")
    return device


def checkpoint_export_meta(meta: dict[str, Any], model: torch.nn.Module) -> dict[str, Any]:
    """Checkpoint metadata + the ``export`` section a live PyTorch model implies (dynamic, logits)."""
    meta = copy.deepcopy(meta)
    meta["export"] = {
        "format": "checkpoint", "dynamic": True, "output_stride": output_stride(model),
        "input": {"name": INPUT_NAME, "dtype": "float32", "layout": "NCHW", "normalized": True},
        "output": {"name": "logits", "dtype": "float32"},
    }
    return meta


class Backend:
    name = "?"
    device = torch.device("cpu")
    output = "logits"
    fixed_size: tuple[int, int] | None = None
    fixed_batch: int | None = None
    size_range: tuple[tuple[int, int], tuple[int, int]] | None = None
    meta: dict[str, Any]

    def run(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @property
    def stride(self) -> int:
        return int(self.meta.get("export", {}).get("output_stride", 8))

    def _shapes_from_meta(self) -> None:
        exp = self.meta.get("export", {})
        self.output = exp.get("output", {}).get("name", "logits")
        if not exp.get("dynamic", True):
            if exp.get("imgsz"):
                self.fixed_size = tuple(int(v) for v in exp["imgsz"])  # type: ignore[assignment]
            if exp.get("batch"):
                self.fixed_batch = int(exp["batch"])


class TorchBackend(Backend):
    """A diga checkpoint in eager PyTorch (optionally under autocast)."""

    name = "torch"

    def __init__(self, model: torch.nn.Module, meta: dict[str, Any], device: torch.device,
                 amp_dtype: torch.dtype | None = None) -> None:
        self.device = device
        self.module = DeployModule(model.to(device).eval(), "logits").eval()
        self.meta = meta if "export" in meta else checkpoint_export_meta(meta, model)
        self.amp_dtype = amp_dtype

    @classmethod
    def load(cls, path: Path, device: torch.device, amp_dtype: torch.dtype | None = None) -> TorchBackend:
        from diga.checkpoint import load_model

        model, meta = load_model(path, device)  # CheckpointError (a ValueError) names the file
        return cls(model, meta, device, amp_dtype)

    @torch.inference_mode()
    def run(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                            enabled=self.amp_dtype is not None):
            return self.module(x).float()


class OnnxBackend(Backend):
    """ONNX Runtime with the best available providers (TensorRT -> CUDA -> CPU)."""

    name = "onnx"

    def __init__(self, path: Path, device: torch.device, providers: list[str] | None = None) -> None:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            raise PredictorError("ONNX Runtime is not installed: pip install onnxruntime "
                                 "(or onnxruntime-gpu on a CUDA machine)") from None
        from .onnx_export import ort_providers, session

        self.providers = providers or ort_providers(str(device))
        try:
            self.session = session(str(path), self.providers)
        except Exception as e:  # InvalidProtobuf, Fail, ...
            raise PredictorError(f"{path} is not a loadable ONNX model: {str(e).strip().splitlines()[0]}") from None
        props = self.session.get_modelmeta().custom_metadata_map
        if META_KEY not in props:
            raise PredictorError(f"{path} has no diga metadata; {NO_META_HINT}")
        self.meta = loads(props[META_KEY], path, channels_of(self.session.get_outputs()[0].shape))
        self._shapes_from_meta()
        inputs = self.session.get_inputs()
        self.input_name = inputs[0].name
        shape = inputs[0].shape
        if all(isinstance(d, int) for d in shape):  # a static graph, whatever the metadata says
            self.fixed_batch, self.fixed_size = int(shape[0]), (int(shape[2]), int(shape[3]))
        self.output_name = self.session.get_outputs()[0].name
        self.providers = self.session.get_providers()
        self.device = torch.device("cpu")  # inputs go to ORT as host arrays

    def run(self, x: torch.Tensor) -> torch.Tensor:
        out = self.session.run([self.output_name], {self.input_name: x.detach().cpu().numpy()})[0]
        return torch.from_numpy(np.ascontiguousarray(out))


class PT2Backend(Backend):
    """An AOTInductor package (``torch._inductor.aoti_load_package``)."""

    name = "pt2"

    def __init__(self, path: Path, device: torch.device | None = None) -> None:
        meta = None
        if sidecar(path).is_file():
            meta = read_sidecar(path)
        try:
            self.runner = torch._inductor.aoti_load_package(str(path))
        except Exception as e:
            raise PredictorError(f"{path} is not a loadable AOTInductor package for this machine/torch "
                                 f"{torch.__version__}: {str(e).strip().splitlines()[0]}") from None
        if meta is None:
            try:
                packaged = self.runner.get_metadata()
            except Exception:  # pragma: no cover - older torch
                packaged = {}
            if META_KEY not in packaged:
                raise PredictorError(f"{path} has no diga metadata; {NO_META_HINT}")
            meta = loads(packaged[META_KEY], path)
        self.meta = meta
        self._shapes_from_meta()
        compiled_for = torch.device(self.meta["export"].get("device", "cpu"))
        if compiled_for.type == "cuda" and not torch.cuda.is_available():
            raise PredictorError(f"{path} was compiled for CUDA, which is not available here; export a CPU "
                                 "package on this machine (diga export ... --format pt2)")
        self.device = compiled_for  # a package runs where it was compiled for

    @torch.inference_mode()
    def run(self, x: torch.Tensor) -> torch.Tensor:
        out = self.runner(x.to(self.device))
        return out[0] if isinstance(out, (list, tuple)) else out


_TRT_TORCH_DTYPES = {"FLOAT": torch.float32, "HALF": torch.float16, "BF16": torch.bfloat16, "INT32": torch.int32,
                     "INT64": torch.int64, "INT8": torch.int8, "UINT8": torch.uint8, "BOOL": torch.bool}


class TensorRTBackend(Backend):
    """A serialized TensorRT engine run with the TensorRT 10 tensor API: ``set_input_shape``,
    ``set_tensor_address`` on torch CUDA tensors, ``execute_async_v3`` on torch's stream."""

    name = "tensorrt"

    def __init__(self, path: Path, device: torch.device) -> None:
        from .tensorrt import load_tensorrt

        self.meta = read_sidecar(path)  # before TensorRT: a missing sidecar is the clearer error
        trt = load_tensorrt(PredictorError)
        self.trt = trt
        self.device = device if device.type == "cuda" else torch.device("cuda")
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        with torch.cuda.device(self.device):
            self.engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
            if self.engine is None:
                raise PredictorError(_engine_mismatch(path, self.meta, trt, self.device))
            self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if n not in self.inputs]
        if len(self.inputs) != 1 or not self.outputs:
            raise PredictorError(f"{path}: expected one input and an output, got inputs {self.inputs}, "
                                 f"outputs {self.outputs}")
        self.input_name, self.output_name = self.inputs[0], self.outputs[0]
        shape = [int(d) if d >= 0 else "dynamic" for d in self.engine.get_tensor_shape(self.output_name)]
        check_output_channels(self.meta, channels_of(shape), path)
        self._shapes_from_meta()
        lo, _, hi = (tuple(s) for s in self.engine.get_tensor_profile_shape(self.input_name, 0))
        if tuple(lo) == tuple(hi):
            self.fixed_batch, self.fixed_size = int(lo[0]), (int(lo[2]), int(lo[3]))
        else:
            self.fixed_size = self.fixed_batch = None
            self.size_range = ((int(lo[2]), int(lo[3])), (int(hi[2]), int(hi[3])))
            self.max_batch = int(hi[0])

    def _dtype(self, name: str) -> torch.dtype:
        dt = self.engine.get_tensor_dtype(name)
        key = getattr(dt, "name", str(dt).split(".")[-1])
        if key not in _TRT_TORCH_DTYPES:
            raise PredictorError(f"unsupported TensorRT tensor type {dt} for {name}")
        return _TRT_TORCH_DTYPES[key]

    def run(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, self._dtype(self.input_name)).contiguous()
        if not self.context.set_input_shape(self.input_name, tuple(x.shape)):
            raise PredictorError(f"input shape {tuple(x.shape)} is outside the engine's optimisation profile "
                                 f"{self.meta['export'].get('profile')}")
        self.context.set_tensor_address(self.input_name, int(x.data_ptr()))
        outputs = {}
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            outputs[name] = torch.empty(shape, dtype=self._dtype(name), device=self.device)
            self.context.set_tensor_address(name, int(outputs[name].data_ptr()))
        stream = torch.cuda.current_stream(self.device)
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise PredictorError("TensorRT execution failed (see the TensorRT log)")
        stream.synchronize()
        return outputs[self.output_name]


def _engine_mismatch(path: Path, meta: dict[str, Any], trt: Any, device: torch.device) -> str:
    """Why an engine does not load: it was built for another GPU model or TensorRT version (named when
    its metadata records them), and how to rebuild it here."""
    exp = meta.get("export", {})
    built = f"{exp.get('gpu', 'an unrecorded GPU')} with {exp.get('tensorrt', 'an unrecorded TensorRT')}"
    here = f"{torch.cuda.get_device_name(device)} with {trt.__name__} {getattr(trt, '__version__', '?')}"
    source = exp.get("checkpoint") or "CHECKPOINT.safetensors"
    return (f"TensorRT could not deserialize {path}: it was built on {built}, this machine has {here}; an engine "
            f"only runs on the GPU model and TensorRT version it was built with: rebuild it here with "
            f"`diga export {source} --format tensorrt`")


def _load_torch(path: Path, device: torch.device) -> Backend:
    return TorchBackend.load(path, device)


# One loader per row of diga.export.formats.MODEL_FORMATS.
LOADERS = {"torch": _load_torch, "onnx": OnnxBackend, "tensorrt": TensorRTBackend, "pt2": PT2Backend}


def open_backend(path: str | Path, backend: str = "auto", device: str | torch.device | None = None) -> Backend:
    """The backend for ``path`` (chosen by extension with ``backend='auto'``)."""
    path = Path(path)
    if backend not in ("auto", *BACKENDS):
        raise PredictorError(f"unknown backend {backend!r}; choose auto, {', '.join(BACKENDS)}")
    fmt = model_format(path)
    kind = fmt.argument
    if path.is_dir():
        raise PredictorError(f"{path} is a folder; expected a model file ({known_suffixes()})")
    if not path.is_file():
        raise PredictorError(f"model file not found: {path}")
    if path.stat().st_size == 0:
        raise PredictorError(f"{path} is empty (0 bytes): an interrupted copy or export? Export it again")
    if backend != "auto" and backend != kind:
        hint = (f"export it first: diga export {path} --format {backend}" if kind == "torch"
                else f"use backend='{kind}' or 'auto'")
        raise PredictorError(f"backend {backend!r} cannot run {path.name} (a {kind} model); {hint}")
    dev = default_device(device)
    if not fmt.cpu and dev.type == "cpu" and device not in (None, "auto"):
        raise PredictorError(f"{path.name}: a {fmt.name} runs on a CUDA GPU only, not on device {str(device)!r}; "
                             "leave the device unset or pass a CUDA device")
    return LOADERS[kind](path, dev)
