"""``diga benchmark``: latency, throughput, memory and agreement with PyTorch fp32, per backend and
precision (an INT8 row beside a backend's fp32 one when asked for with ``int8``/``calib``, or when
``MODEL.int8.onnx`` lies beside the checkpoint)."""

from __future__ import annotations

import os
import resource
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .backends import TorchBackend, default_device, open_backend
from .errors import PredictorError
from .formats import BACKENDS, choices, export_path, format_of, int8_formats
from .graph import prepare
from .predictor import Predictor


def _proc_status(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


class MemoryMeter:
    """Peak memory over a block: CUDA max allocated (torch's allocator), else the process's peak
    RSS growth (Linux VmHWM, reset through /proc/self/clear_refs; else ru_maxrss)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.kind = "cuda max allocated" if device.type == "cuda" else "RSS delta"

    def __enter__(self) -> MemoryMeter:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
        else:
            try:
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")  # reset the peak RSS (VmHWM) to the current RSS
                self.hwm = True
            except OSError:
                self.hwm = False
            self.base = _proc_status("VmRSS") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device) - self.base
        else:
            peak = _proc_status("VmHWM") if self.hwm else None
            if peak is None:
                peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            self.peak = max(0, peak - self.base)


def time_fn(fn: Callable[[], Any], sync: Callable[[], None], warmup: int, iters: int) -> list[float]:
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t) * 1e3)
    return times


def default_backends() -> list[str]:
    names = ["torch", "onnx"]
    from .tensorrt import _find_tensorrt

    if torch.cuda.is_available() and _find_tensorrt() is not None:
        names.append("tensorrt")
    return names


def labelled_dataset(data: str, label_space: str):
    """A labelled dataset for ``--data``; refuses one without labels."""
    from diga.data import build_dataset

    dataset = build_dataset(data, split="val", label_space=label_space)  # the split matters for Cityscapes only
    if not getattr(dataset, "has_labels", True) or len(dataset) == 0:
        raise PredictorError(f"--data {data}: needs labelled images (found {len(dataset)} images"
                             f"{'' if getattr(dataset, 'has_labels', True) else ', no labels'})")
    return dataset


def predictor_miou(predictor: Predictor, dataset, max_images: int, chunk: int = 8) -> float:
    """mIoU of the whole Predictor pipeline (resize, run, resize back) over the first
    ``max_images`` of a labelled dataset, read a chunk at a time."""
    from diga.evaluate import ConfusionMatrix

    cm = ConfusionMatrix(predictor.num_classes)
    n = min(len(dataset), max_images)
    for start in range(0, n, chunk):
        pairs = [dataset[i] for i in range(start, min(start + chunk, n))]
        images = [image.permute(1, 2, 0).contiguous().numpy() for image, _ in pairs]
        for prediction, (_, label) in zip(predictor.predict(images), pairs):
            cm.update(torch.from_numpy(prediction.labels.astype(np.int64)), label)
    return cm.compute().miou


def _jobs(path: Path, kind: str, meta: dict[str, Any], backends: Sequence[str], int8: bool,
          log: Callable[[str], None]) -> list[tuple[str, str, Path | None]]:
    """(backend, precision, model file or None to export) for each row."""
    if kind != "torch":
        return [(kind, meta.get("export", {}).get("precision", "fp32"), path)]
    jobs: list[tuple[str, str, Path | None]] = []
    for name in backends:
        jobs.append((name, "fp32", path if name == "torch" else None))
        if name not in int8_formats():
            continue
        present = export_path(path, name, int8=True)
        if int8:
            jobs.append((name, "int8", None))
        elif name == "onnx" and present.is_file():
            log(f"INT8 row: {present} (beside the checkpoint)")
            jobs.append((name, "int8", present))
    return jobs


def _fits(model_path: Path, size: Sequence[int], batch: int) -> None:
    """A fixed-shape model file must have the benchmark's input shape."""
    from .metadata import read_export_metadata

    exp = read_export_metadata(model_path).get("export", {})
    if not exp.get("dynamic", True) and (list(exp.get("imgsz", size)) != list(size) or exp.get("batch", batch) != batch):
        raise PredictorError(f"{model_path.name} takes batch {exp.get('batch')} at {exp['imgsz'][0]}x{exp['imgsz'][1]}, "
                             f"the benchmark batch {batch} at {size[0]}x{size[1]}: pass --batch/--imgsz to match it or "
                             "re-export it")


def benchmark(path: str | os.PathLike, backends: Sequence[str] | None = None, imgsz: Sequence[int] | None = None,
              batch: int = 1, warmup: int = 3, iters: int = 20, device: str | None = None,
              workdir: str | os.PathLike | None = None, data: str | None = None, max_images: int = 100,
              int8: bool = False, calib: str | os.PathLike | None = None, calib_images: int | None = None,
              log: Callable[[str], None] = print, mode: str | None = None) -> list[dict[str, Any]]:
    """One row per backend and precision. A checkpoint is exported (fixed shape ``imgsz`` x
    ``batch``) into ``workdir`` (a temp dir by default) for each non-torch backend, and with
    ``int8`` also INT8-quantised, calibrated on the images in ``calib`` (at most
    ``calib_images``), for each backend that takes ``--int8``; without ``int8`` an existing
    ``MODEL.int8.onnx`` beside the checkpoint gets its row. Agreement is the % of pixels whose
    argmax matches the PyTorch fp32 model (needs a checkpoint). With ``data`` (a labelled
    ``KIND:PATH``), each row's mIoU over up to ``max_images`` of its images, through the same
    Predictor pre- and post-processing, in the inference ``mode`` (default: the model's)."""
    from .exporter import DEFAULT_IMGSZ, export_model
    from .images import check_images
    from .metadata import read_export_metadata
    from .quantize import DEFAULT_CALIB_IMAGES

    path = Path(path)
    fmt = format_of(path)
    kind = fmt.argument if fmt is not None else None
    if kind is None or not path.is_file():
        raise PredictorError(f"{path}: expected an existing .safetensors checkpoint or exported model")
    if batch < 1 or iters < 1 or warmup < 0:
        raise PredictorError("--batch and --iters must be >= 1, --warmup >= 0")
    meta = read_export_metadata(path)
    dev = default_device(device)
    if kind == "torch":
        backends = list(backends) if backends else default_backends()
    else:
        backends = list(backends) if backends else [kind]
        if backends != [kind]:
            raise PredictorError(f"{path.name} is a {kind} model: only --backends {kind} applies (pass a checkpoint "
                                 "to compare backends)")
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        raise PredictorError(f"unknown backend(s) {', '.join(unknown)}; choose from {', '.join(BACKENDS)}")
    if int8 and calib is None:
        raise PredictorError("--int8 needs --calib DIR: target-domain frames to calibrate on (not the --data images "
                             "you score)")
    if not int8 and (calib is not None or calib_images is not None):
        raise PredictorError("--calib and --calib-images calibrate the INT8 rows: add --int8")
    if int8 and (kind != "torch" or not set(backends) & set(int8_formats())):
        raise PredictorError("--int8 quantises a checkpoint for " + choices(tuple(f"--backends {f}" for f in
                             int8_formats())) + f"; got {path.name} with --backends {','.join(backends)}")
    if int8:  # a bad --calib folder fails now, not after the fp32 rows
        from .quantize import calibration_files

        calibration_files(calib, calib_images or DEFAULT_CALIB_IMAGES)
    exp = meta.get("export", {})
    size = tuple(int(v) for v in (imgsz or (exp.get("imgsz") if not exp.get("dynamic", True) else None)
                                  or meta.get("input_size") or DEFAULT_IMGSZ))
    images, source = check_images(None, batch, size)
    log(f"benchmark inputs: batch {batch} of {source}")
    scored = labelled_dataset(data, meta.get("label_space", "cityscapes19")) if data else None

    reference = None
    if kind == "torch":
        ref_backend = TorchBackend.load(path, dev)
        reference = ref_backend.run(prepare(images, size, meta["mean"], meta["std"], dev)).argmax(1).cpu()
        del ref_backend

    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="diga-bench-")
        workdir = tmp.name
    workdir = Path(workdir)
    rows = []
    try:
        for name, precision, model_path in _jobs(path, kind, meta, backends, int8, log):
            row: dict[str, Any] = {"backend": name, "precision": precision, "status": "ok", "imgsz": list(size),
                                   "batch": batch, "device": str(dev)}
            try:
                if model_path is None:
                    quantised = precision == "int8"
                    model_path = export_path(workdir / path.name, name, int8=quantised)
                    t = time.perf_counter()
                    export_model(path, name, out=model_path, imgsz=size, batch=batch, dynamic=False, check=False,
                                 int8=quantised, calib=calib if quantised else None,
                                 calib_images=(calib_images or DEFAULT_CALIB_IMAGES) if quantised
                                 else DEFAULT_CALIB_IMAGES, log=lambda m: None, warn=log)
                    row["export_s"] = round(time.perf_counter() - t, 1)
                elif model_path != path:
                    _fits(model_path, size, batch)
                row["file_mb"] = round(model_path.stat().st_size / 2**20, 1)
                with MemoryMeter(dev) as mem:
                    backend = open_backend(model_path, name, dev)
                    x = prepare(images, size, meta["mean"], meta["std"], backend.device)
                    out = backend.run(x)
                    times = time_fn(lambda: backend.run(x), backend.synchronize, warmup, iters)
                row["device"] = str(backend.device)
                if hasattr(backend, "providers"):
                    row["providers"] = list(backend.providers)
                lat = np.asarray(times)
                row.update(p50_ms=round(float(np.percentile(lat, 50)), 2),
                           p90_ms=round(float(np.percentile(lat, 90)), 2),
                           images_per_s=round(batch * 1e3 / float(lat.mean()), 2),
                           peak_mem_mb=round(mem.peak / 2**20, 1), memory=mem.kind)
                if reference is not None:
                    pred = out.argmax(1) if out.dim() == 4 else out.long()
                    row["agreement"] = round(100.0 * float((pred.cpu() == reference).float().mean()), 3)
                else:
                    row["agreement"] = None
                if scored is not None:
                    predictor = Predictor(backend, batch, mode)
                    row["mode"] = predictor.mode
                    row["miou"] = predictor_miou(predictor, scored, max_images)
                    row["miou_images"] = min(len(scored), max_images)
                backend = out = None  # release the session/engine before the next backend
            except Exception as e:  # one failing backend must not hide the others
                row["status"] = f"error: {str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}"
            rows.append(row)
            log(f"{name} {precision}: {row['status']}")
    finally:
        if tmp is not None:
            tmp.cleanup()
    return rows
