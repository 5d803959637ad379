"""ONNX export: ``torch.onnx.export(dynamo=True)`` first, the TorchScript exporter as fallback.

With torch 2.14 the dynamo exporter (``torch.export`` + onnxscript) handles every registered
DeepLab-V2 model, static or with dynamic batch/height/width (``dynamic_shapes``); the
TorchScript exporter (``dynamo=False`` + ``dynamic_axes``) is kept as a fallback because it is
deprecated but still works, and is selectable with ``exporter="torchscript"``.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections.abc import Callable

import torch

from .errors import ExportError
from .graph import INPUT_NAME
from .metadata import META_KEY, dumps

EXPORTERS = ("auto", "dynamo", "torchscript")


def _dynamic_dims(output: str) -> tuple[dict[int, str], dict[int, str]]:
    inp = {0: "batch", 2: "height", 3: "width"}
    out = {0: "batch", 2: "height", 3: "width"} if output == "logits" else {0: "batch", 1: "height", 2: "width"}
    return inp, out


@contextlib.contextmanager
def _quiet():
    """The exporters print progress, warnings, tracebacks of their fallbacks and -- the TorchScript
    one, from C++ straight to file descriptor 1 -- a whole graph when they fail; keep all of it out of
    the CLI output (what went wrong is in the exception, which the caller words)."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()), _silenced_fds():
        warnings.simplefilter("ignore")
        yield


@contextlib.contextmanager
def _silenced_fds():
    """Point file descriptors 1 and 2 at a scratch file for the duration (C/C++ output included)."""
    import ctypes
    import sys
    import tempfile

    try:
        flush_c = ctypes.CDLL(None).fflush
    except (OSError, AttributeError):  # no C library to flush (Windows): Python's streams only
        def flush_c(_):
            return 0
    with tempfile.TemporaryFile() as sink:
        for stream in (sys.__stdout__, sys.__stderr__):
            if stream is not None:
                stream.flush()
        try:
            saved = [os.dup(1), os.dup(2)]
        except OSError:  # no such descriptors (a detached process): nothing to silence
            yield
            return
        flush_c(None)
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            flush_c(None)  # C stdio buffers filled meanwhile go to the sink, not to the terminal
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def _dynamo(module, example, output, dynamic, opset):
    import onnx  # noqa: F401  (fail early with a clear ImportError)

    inp, _ = _dynamic_dims(output)
    kwargs = dict(dynamo=True, input_names=[INPUT_NAME], output_names=[output], external_data=False,
                  verbose=False, optimize=True)
    if dynamic:
        kwargs["dynamic_shapes"] = {"images": inp}
    if opset is not None:
        kwargs["opset_version"] = opset
    with _quiet():
        program = torch.onnx.export(module, (example,), None, **kwargs)
    return program.model_proto


def _torchscript(module, example, output, dynamic, opset):
    import onnx

    inp, out = _dynamic_dims(output)
    buf = io.BytesIO()
    with _quiet():
        torch.onnx.export(module, (example,), buf, dynamo=False, input_names=[INPUT_NAME],
                          output_names=[output], dynamic_axes={INPUT_NAME: inp, output: out} if dynamic else None,
                          opset_version=opset or 17, do_constant_folding=True)
    return onnx.load_from_string(buf.getvalue())


def to_onnx(module: torch.nn.Module, example: torch.Tensor, *, output: str, dynamic: bool,
            opset: int | None = None, exporter: str = "auto",
            warn: Callable[[str], None] = print):
    """Export ``module`` (a :class:`~diga.export.graph.DeployModule`) to an ``onnx.ModelProto``.

    Returns ``(proto, exporter_description)``.
    """
    if exporter not in EXPORTERS:
        raise ExportError(f"exporter must be one of {', '.join(EXPORTERS)}, got {exporter!r}")
    module = module.eval()
    errors = []
    if exporter in ("auto", "dynamo"):
        try:
            with torch.no_grad():
                proto = _dynamo(module, example, output, dynamic, opset)
            if opset is not None and opset_of(proto) != opset:
                # the dynamo exporter builds opset 18+ and converts down; when the onnx version
                # converter cannot (e.g. ReduceMean axes for 17) it keeps its own opset silently
                raise ExportError(f"it produced opset {opset_of(proto)} instead of the requested {opset}")
            return proto, f"torch.onnx.export(dynamo=True) torch {torch.__version__}"
        except Exception as e:  # the exporter raises many types; report and fall back
            reason = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
            errors.append(f"dynamo exporter: {reason}")
            if exporter == "dynamo":
                raise ExportError(f"ONNX export with dynamo=True failed: {reason}") from e
            warn(f"the dynamo ONNX exporter failed ({reason}); falling back to the TorchScript exporter")
    try:
        with torch.no_grad():
            proto = _torchscript(module, example, output, dynamic, opset)
        return proto, f"torch.onnx.export(dynamo=False, TorchScript) torch {torch.__version__}"
    except Exception as e:
        reason = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
        errors.append(f"TorchScript exporter: {reason}")
        hint = (f" (--opset {opset} may be too old for this model: leave --opset unset or use 17 or newer)"
                if opset is not None and opset < 17 else "")
        raise ExportError("ONNX export failed: " + "; ".join(errors) + hint) from e


def finalize(proto, meta: dict) -> None:
    """Embed ``meta`` as ``metadata_props['diga']`` and validate with ``onnx.checker``."""
    import onnx

    for i in reversed(range(len(proto.metadata_props))):
        if proto.metadata_props[i].key == META_KEY:
            del proto.metadata_props[i]
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_KEY, dumps(meta)
    proto.producer_name = proto.producer_name or "diga"
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as e:
        raise ExportError(f"the exported ONNX graph is invalid (onnx.checker): {e}") from e


def opset_of(proto) -> int | None:
    for imp in proto.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    return None


def ort_providers(device: str | None = None) -> list[str]:
    """ONNX Runtime providers in order of preference: TensorRT -> CUDA -> CPU (available ones)."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device is not None and str(device).startswith("cpu"):
        return ["CPUExecutionProvider"]
    order = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    chosen = [p for p in order if p in available]
    if "CUDAExecutionProvider" in chosen and not torch.cuda.is_available():
        chosen = [p for p in chosen if p == "CPUExecutionProvider"]  # GPU build without a usable GPU
    return chosen or ["CPUExecutionProvider"]


def session(model: bytes | str, providers: list[str] | None = None, threads: int | None = None,
            optimization: str | None = None):
    """An ONNX Runtime session with as many intra-op threads as torch uses; ``optimization``: a graph
    optimisation level other than ONNX Runtime's default (``ORT_ENABLE_ALL``), by its name.

    Its worker threads do not spin-wait between calls (``session.intra_op.allow_spinning`` 0): alone,
    a session is as fast either way (on a 2-core Intel Xeon, the built-in model at batch 1: fp32 14.1
    vs 14.5 ms, INT8 5.75 vs 5.74 ms), but spinning threads of one session take the cores from
    another in the same process, as in ``diga benchmark``'s alternating timings or the demo's two
    models: INT8 alternated with fp32 took 9.8 ms with spinning, 6.0 ms without."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # errors only: ORT warns about every unused initializer otherwise
    opts.intra_op_num_threads = threads or torch.get_num_threads()  # share the cores like torch does
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if optimization is not None:
        opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, optimization)
    return ort.InferenceSession(model, sess_options=opts, providers=providers or ["CPUExecutionProvider"])
