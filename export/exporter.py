"""``export_model``: a diga checkpoint -> ONNX / TensorRT engine / AOTInductor .pt2, each verified
against the PyTorch fp32 model on target-style images before it is kept. INT8 (``int8=True``)
quantises the ONNX graph with :mod:`diga.export.quantize`, calibrated on ``calib`` images."""

from __future__ import annotations

import copy
import datetime as _dt
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from diga.checkpoint import MAX_SIDE
from diga.inference import check_mode

from .errors import ExportError
from .formats import CHECKPOINT_SUFFIX, EXPORT_FORMATS, ModelFormat, choices, export_path, format_named
from .graph import INPUT_NAME, MAX_BATCH, OUTPUTS, DeployModule, output_stride, round_to_stride
from .metadata import dumps, sidecar
from .parity import ParityReport, check_batches, compare, enforce
from .quantize import DEFAULT_CALIB_IMAGES

FORMATS = EXPORT_FORMATS  # the public name of the export formats (rows of diga.export.formats)
DEFAULT_IMGSZ = (512, 1024)
DEFAULT_WORKSPACE_GB = 4.0


@dataclass
class ExportResult:
    path: Path
    format: str
    meta: dict[str, Any]
    parity: ParityReport | None
    seconds: float
    files: list[Path] = field(default_factory=list)


def _pair(value, what: str) -> tuple[int, int] | None:
    if value is None:
        return None
    value = tuple(int(v) for v in value)
    if len(value) != 2 or min(value) < 1 or max(value) > MAX_SIDE:
        raise ExportError(f"{what} must be two integers 1..{MAX_SIDE} (height width), got {value}")
    return value  # type: ignore[return-value]


def _check_options(fmt: ModelFormat, given: dict[str, bool]) -> None:
    """Refuse an option the format does not take (its row's ``options``), naming the formats that do."""
    for option, used in given.items():
        if used and option not in fmt.options:
            takers = tuple(f"--format {name}" for name in FORMATS if option in format_named(name).options)
            own = ", ".join(f"--{o}" for o in fmt.options) or "none"
            raise ExportError(f"--{option} is only supported with {choices(takers)} "
                              f"(--format {fmt.argument} takes: {own})")


def export_model(
    weights: str | os.PathLike, format: str = "onnx", *, out: str | os.PathLike | None = None,
    imgsz: Sequence[int] | None = None, batch: int = 1, dynamic: bool = False, half: bool = False,
    int8: bool = False, calib: str | os.PathLike | None = None, opset: int | None = None,
    output: str = "logits", check: bool = True, check_images: str | os.PathLike | None = None,
    n_check: int = 4, exporter: str = "auto", workspace_gb: float = DEFAULT_WORKSPACE_GB,
    timing_cache: str | os.PathLike | None = None, calib_images: int = DEFAULT_CALIB_IMAGES,
    calib_method: str | None = None,
    log: Callable[[str], None] = print, warn: Callable[[str], None] | None = None, mode: str = "auto",
) -> ExportResult:
    """Export ``weights`` (a diga .safetensors checkpoint); see ``diga export --help``.

    ``int8=True`` writes a statically quantised QDQ graph (``MODEL.int8.onnx``; for TensorRT an
    engine built from one) calibrated on up to ``calib_images`` images of the folder ``calib``
    with ``calib_method`` (default: :data:`diga.export.quantize.DEFAULT_METHOD`); its parity check
    runs on those target-domain images unless ``check_images`` is given."""
    from diga.checkpoint import CheckpointError, load_model

    warn = warn or (lambda m: log(f"warning: {m}"))
    t0 = time.perf_counter()
    format = format.lower()
    if format not in FORMATS:
        raise ExportError(f"unknown export format {format!r}; choose one of: {', '.join(FORMATS)}")
    _check_options(format_named(format), {
        "half": half, "int8": int8, "calib": calib is not None, "opset": opset is not None,
        "exporter": exporter != "auto", "workspace": workspace_gb != DEFAULT_WORKSPACE_GB,
        "timing-cache": timing_cache is not None, "calib-images": calib_images != DEFAULT_CALIB_IMAGES,
        "calib-method": calib_method is not None})
    if output not in OUTPUTS:
        raise ExportError(f"--output must be one of {', '.join(OUTPUTS)}, got {output!r}")
    try:
        check_mode(mode, "--mode")
    except ValueError as e:
        raise ExportError(str(e)) from None
    if not 1 <= batch <= MAX_BATCH:
        raise ExportError(f"--batch must be 1..{MAX_BATCH}, got {batch}")
    if int8 and calib is None:
        raise ExportError("--int8 needs --calib DIR: a folder of target-domain images (a hundred or so frames "
                          "of the deployment camera); INT8 without target-domain calibration loses several mIoU")
    if not int8 and (calib is not None or calib_images != DEFAULT_CALIB_IMAGES or calib_method is not None):
        raise ExportError("--calib, --calib-images and --calib-method calibrate an INT8 export: add --int8")
    if int8 and half:
        raise ExportError("--int8 and --half exclude each other: choose one precision")
    if check and n_check < 1:
        raise ExportError(f"the parity check needs at least one image, got n_check={n_check}")
    if check_images is not None and not Path(check_images).is_dir():
        raise ExportError(f"--check-images {check_images}: not a folder")
    weights = Path(weights)
    if not weights.is_file():
        raise ExportError(f"checkpoint not found: {weights}")
    if weights.suffix.lower() != CHECKPOINT_SUFFIX:
        raise ExportError(f"{weights}: expected a diga checkpoint ({CHECKPOINT_SUFFIX}) to export")
    trt = None
    if format == "tensorrt":  # fail before spending minutes on the ONNX graph
        from .tensorrt import load_tensorrt

        trt = load_tensorrt(ExportError)
    if format == "pt2" and half and not torch.cuda.is_available():
        raise ExportError("--half with --format pt2 needs a CUDA GPU (bf16/fp16 AOTInductor kernels); "
                          "export fp32 on CPU (drop --half)")

    try:
        model, meta = load_model(weights, "cpu")
    except CheckpointError as e:
        raise ExportError(str(e)) from None
    stride = output_stride(model)
    imgsz = _pair(imgsz, "--imgsz") or _pair(meta.get("input_size"), "input_size") or DEFAULT_IMGSZ
    if dynamic and min(imgsz) < 2 * stride:
        raise ExportError(f"--imgsz {imgsz[0]} {imgsz[1]} is too small for a dynamic export (at least "
                          f"{2 * stride} per side)")
    calibration = None
    if int8:  # a bad --calib folder fails before the export, not after it
        from .quantize import CalibrationImages, check_method

        if calib_method is not None:
            check_method(calib_method)
        calibration = CalibrationImages(calib, imgsz, meta["mean"], meta["std"], batch_size=1 if dynamic else batch,
                                        limit=calib_images, input_name=INPUT_NAME, warn=warn)
        if check_images is None:
            check_images = calib
    out = Path(out) if out is not None else export_path(weights, format, int8=int8)
    _prepare_output(out, format_named(format), log)

    precision = "int8" if int8 else ("fp32" if not half else "fp16")
    if format == "pt2" and half:
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    second = round_to_stride((imgsz[0] * 3 / 4, imgsz[1] * 3 / 4), stride)
    check_sizes = [imgsz, second] if dynamic and second != tuple(imgsz) else [imgsz]
    export_meta: dict[str, Any] = {
        "format": format, "dynamic": dynamic, "imgsz": list(imgsz), "batch": batch, "output_stride": stride,
        "precision": precision, "half": half, "int8": int8, "mode": mode,
        "input": {"name": INPUT_NAME, "dtype": "float32", "layout": "NCHW", "normalized": True,
                  "shape": ["batch" if dynamic else batch, 3, "height" if dynamic else imgsz[0],
                            "width" if dynamic else imgsz[1]]},
        "output": {"name": output, "dtype": "float32" if output == "logits" else "uint8",
                   "resolution": "input (upsampled in-graph, bilinear, align_corners=False)",
                   "layout": "NCHW" if output == "logits" else "NHW"},
        "preprocessing": {
            "color": "RGB", "scale": "1/255", "mean": meta["mean"], "std": meta["std"],
            "normalized_in_graph": False,
            "resize": (f"fixed {imgsz[0]}x{imgsz[1]}" if not dynamic else
                       f"own size rounded to a multiple of {stride}"),
            "interpolation": "bilinear, align_corners=False, antialias when shrinking",
        },
        "postprocessing": "logits resized bilinearly to the image size, then argmax; labels: nearest",
        "checkpoint": weights.name, "torch": torch.__version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    full_meta = copy.deepcopy(meta)
    full_meta["export"] = export_meta
    # a dynamic export is checked at two sizes (and batches of up to 2); a static one at its shape
    check_batch = batch if not dynamic else max(1, min(2, n_check // len(check_sizes)))
    if check:
        from .images import check_images as _check_images

        images, source = _check_images(check_images, n_check, imgsz)
        log(f"parity check images: {source}")
    kw = dict(model=model, full_meta=full_meta, imgsz=imgsz, batch=batch, dynamic=dynamic, half=half,
              output=output, opset=opset, exporter=exporter, out=out, log=log, warn=warn, check=check,
              check_fn=(lambda dev: check_batches(images, check_sizes, check_batch, meta["mean"], meta["std"],
                                                  dev)) if check else None,
              source=source if check else None, precision=precision)
    if format == "onnx":
        parity, files = _export_onnx(calibration=calibration, calib_method=calib_method, **kw)
    elif format == "pt2":
        parity, files = _export_pt2(**kw)
    else:
        parity, files = _export_tensorrt(trt=trt, calibration=calibration, calib_method=calib_method,
                                         workspace_gb=workspace_gb, timing_cache=timing_cache, stride=stride, **kw)
    return ExportResult(path=out, format=format, meta=full_meta, parity=parity,
                        seconds=time.perf_counter() - t0, files=files)


def _prepare_output(out: Path, fmt: ModelFormat, log: Callable[[str], None]) -> None:
    """A writable place for ``out``, named so that its format is recognised (backends are chosen by
    suffix), cleared of the temp files an export killed there left behind."""
    from diga.io import check_output_file, remove_stale_temps

    if out.suffix.lower() not in fmt.suffixes:
        raise ExportError(f"--out {out}: --format {fmt.argument} files are recognised by their suffix "
                          f"({' or '.join(fmt.suffixes)}); name it e.g. {out.with_suffix(fmt.suffix).name}")
    check_output_file(out, "output file (--out)")
    removed = remove_stale_temps(out.parent, of=[out, sidecar(out), out.with_suffix(".trt.onnx")])
    if removed:
        log(f"removed {removed} temp file(s) that an interrupted export of {out.name} left in {out.parent}")


def _fp32_reference(model: torch.nn.Module, device: str | torch.device = "cpu") -> Callable:
    ref = DeployModule(copy.deepcopy(model).float().to(device).eval(), "logits").eval()

    @torch.inference_mode()
    def run(x: torch.Tensor) -> torch.Tensor:
        # a true fp32 reference: no TF32 convolutions/matmuls on Ampere+ GPUs
        saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        try:
            return ref(x.to(device))
        finally:
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved

    return run


def _export_onnx(*, model, full_meta, imgsz, batch, dynamic, half, output, opset, exporter, out, log, warn,
                 check, check_fn, source, precision, label_dtype=torch.uint8, parity_backend=True,
                 calibration=None, calib_method=None, int8_target="cpu"):
    import onnx

    from diga.io import atomic_write

    from .onnx_export import finalize, opset_of, session, to_onnx

    reference = _fp32_reference(model) if check and parity_backend else None
    net = copy.deepcopy(model).eval()
    if half:
        net = net.half()
    module = DeployModule(net, output, compute_dtype=torch.float16 if half else None, label_dtype=label_dtype)
    example = torch.randn(max(batch, 2) if dynamic else batch, 3, *imgsz)
    t = time.perf_counter()
    proto, used = to_onnx(module, example, output=output, dynamic=dynamic, opset=opset, exporter=exporter,
                          warn=warn)
    meta_export = full_meta["export"]
    meta_export.update(exporter=used, opset=opset_of(proto))
    if output == "labels":
        meta_export["output"]["dtype"] = str(label_dtype).replace("torch.", "")
    log(f"ONNX graph exported with {used}, opset {meta_export['opset']} in {time.perf_counter() - t:.1f} s")
    if calibration is not None:
        from .quantize import quantize_onnx, settings_for

        settings = settings_for(int8_target, calib_method)
        log(f"INT8: calibrating on {len(calibration.files)} image(s) of {calibration.folder} ({settings.method})")
        proto, facts = quantize_onnx(proto, calibration, settings, warn=warn)
        meta_export["quantization"] = facts
        log(f"INT8 QDQ graph in {facts['seconds']} s; kept in fp32: {', '.join(facts['fp32_nodes']) or 'nothing'}")
    parity = None
    if check and parity_backend:
        sess = session(proto.SerializeToString(), ["CPUExecutionProvider"])

        def candidate(x: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(sess.run(None, {INPUT_NAME: x.numpy()})[0])

        parity = compare(reference, candidate, check_fn("cpu"), backend="ONNX Runtime (CPU)",
                         precision=precision, source=source)
        log(parity.summary())
        meta_export["parity"] = parity.as_dict()
        enforce(parity, out, warn)
    finalize(proto, full_meta)
    atomic_write(out, lambda tmp: onnx.save_model(proto, str(tmp)))
    log(f"written {out} ({out.stat().st_size / 2**20:.1f} MiB)")
    return parity, [out]


def _export_pt2(*, model, full_meta, imgsz, batch, dynamic, half, output, opset, exporter, out, log, warn,
                check, check_fn, source, precision):
    from diga.io import atomic_write_text, temp_beside

    from .backends import PT2Backend

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision) if half else None
    net = copy.deepcopy(model).to(device).eval()
    if dtype is not None:
        net = net.to(dtype)
    module = DeployModule(net, output, compute_dtype=dtype).eval()
    example = torch.randn(max(batch, 2) if dynamic else batch, 3, *imgsz, device=device)
    dims = None
    if dynamic:
        D = torch.export.Dim.DYNAMIC
        dims = {"images": {0: D, 2: D, 3: D}}
    meta_export = full_meta["export"]
    meta_export.update(device=str(device), exporter=f"torch.export + AOTInductor, torch {torch.__version__}")
    if output == "labels":
        meta_export["output"]["dtype"] = "uint8"
    t = time.perf_counter()
    try:
        with torch.no_grad():
            program = torch.export.export(module, (example,), dynamic_shapes=dims)
    except Exception as e:
        raise ExportError(f"torch.export failed: {type(e).__name__}: {str(e).strip().splitlines()[0]}") from e
    log(f"torch.export: {time.perf_counter() - t:.1f} s; compiling with AOTInductor on {device} "
        "(needs a C++ compiler; about a minute on 2 CPU cores)")
    tmp = temp_beside(out, ".pt2")
    t = time.perf_counter()
    try:
        torch._inductor.aoti_compile_and_package(
            program, package_path=str(tmp),
            inductor_configs={"aot_inductor.metadata": {"diga": dumps(full_meta)}})
    except Exception as e:
        tmp.unlink(missing_ok=True)
        raise ExportError(f"AOTInductor compilation failed: {type(e).__name__}: "
                          f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}") from e
    meta_export["compile_seconds"] = round(time.perf_counter() - t, 1)
    log(f"AOTInductor compile: {meta_export['compile_seconds']} s")
    parity = None
    try:
        if check:
            atomic_write_text(sidecar(tmp), dumps(full_meta))
            backend = PT2Backend(tmp)
            parity = compare(_fp32_reference(model, device), backend.run, check_fn(device),
                             backend=f"AOTInductor ({device})", precision=precision, source=source)
            log(parity.summary())
            meta_export["parity"] = parity.as_dict()
            enforce(parity, out, warn)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
        sidecar(tmp).unlink(missing_ok=True)
    atomic_write_text(sidecar(out), dumps(full_meta) + "\n")
    log(f"written {out} ({out.stat().st_size / 2**20:.1f} MiB) and {sidecar(out).name}")
    return parity, [out, sidecar(out)]


def _export_tensorrt(*, trt, calibration, calib_method, workspace_gb, timing_cache, stride, model, full_meta,
                     imgsz, batch, dynamic, half, output, opset, exporter, out, log, warn, check, check_fn, source,
                     precision):
    from diga.io import atomic_write_text

    from .backends import TensorRTBackend
    from .tensorrt import build_engine, has_flag, profile_shapes

    shapes = profile_shapes(imgsz, batch, dynamic, stride)
    int8 = calibration is not None
    # TensorRT for RTX has no FP16 builder flag: the ONNX graph itself computes in fp16 there.
    onnx_half = half and not has_flag(trt, "FP16")
    # INT8 is explicit: TensorRT parses the QDQ graph of diga.export.quantize (no implicit calibrator)
    onnx_path = out.with_suffix(".trt.onnx")
    onnx_meta = copy.deepcopy(full_meta)
    onnx_meta["export"].update(format="onnx", precision="int8" if int8 else ("fp16" if onnx_half else "fp32"),
                               half=onnx_half, int8=int8, purpose=f"TensorRT build input for {out.name}")
    _export_onnx(model=model, full_meta=onnx_meta, imgsz=imgsz, batch=batch, dynamic=dynamic, half=onnx_half,
                 output=output, opset=opset, exporter=exporter, out=onnx_path, log=log, warn=warn, check=False,
                 check_fn=None, source=None, precision=precision, label_dtype=torch.int32,
                 parity_backend=False, calibration=calibration, calib_method=calib_method,
                 int8_target="tensorrt")
    info = build_engine(onnx_path, out, shapes=shapes, half=half, int8=int8, workspace_gb=workspace_gb,
                        timing_cache=timing_cache, log=log)
    meta_export = full_meta["export"]
    meta_export.update(exporter=onnx_meta["export"]["exporter"], opset=onnx_meta["export"].get("opset"),
                       onnx=onnx_path.name, **info)
    if int8:
        meta_export["quantization"] = onnx_meta["export"]["quantization"]
    if output == "labels":
        meta_export["output"]["dtype"] = "int32"
    if dynamic:
        meta_export["preprocessing"]["resize"] += (f", scaled into the profile {shapes.min[2]}x{shapes.min[3]}.."
                                                   f"{shapes.max[2]}x{shapes.max[3]}")
    atomic_write_text(sidecar(out), dumps(full_meta) + "\n")
    parity = None
    if check:
        device = torch.device("cuda")
        backend = TensorRTBackend(out, device)
        parity = compare(_fp32_reference(model, device), backend.run, check_fn(device),
                         backend=f"TensorRT ({info['tensorrt']})", precision=precision, source=source)
        log(parity.summary())
        meta_export["parity"] = parity.as_dict()
        try:
            enforce(parity, out, warn)
        except ExportError:
            out.unlink(missing_ok=True)
            sidecar(out).unlink(missing_ok=True)
            raise
        atomic_write_text(sidecar(out), dumps(full_meta) + "\n")
    log(f"written {out} ({out.stat().st_size / 2**20:.1f} MiB), {sidecar(out).name} and {onnx_path.name}")
    return parity, [out, sidecar(out), onnx_path]
