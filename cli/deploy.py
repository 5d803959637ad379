"""Deployment commands: ``diga export``, ``diga predict``, ``diga benchmark`` (library: diga.export)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from diga.progress import progress_bar

from .errors import err_console, friendly
from .options import check_mode_option, check_spec

console = Console()
Size = Optional[tuple[int, int]]
MODE_HELP = ("Inference mode: whole, resize (to the training scale), slide (windows of the training crop) or auto "
             "(by image size vs training scale; default unless the export recorded another).")
PREDICT_FORMATS = ("diga", "cityscapes")


def register(app: typer.Typer) -> None:
    app.command("export")(export_cmd)
    app.command("predict")(predict_cmd)
    app.command("benchmark")(benchmark_cmd)


@friendly
def export_cmd(
    weights: Path = typer.Argument(..., help="A diga checkpoint (.safetensors)."),
    format: str = typer.Option("onnx", "--format", "-f", help="onnx, tensorrt or pt2."),
    half: bool = typer.Option(False, help="FP16 (TensorRT, ONNX) / bf16 (pt2, CUDA only)."),
    int8: bool = typer.Option(False, help="INT8 (onnx: QDQ graph for ONNX Runtime, MODEL.int8.onnx; tensorrt: built "
                              "from one), calibrated on --calib images."),
    calib: Optional[Path] = typer.Option(None, help="Folder of target-domain images for INT8 calibration."),
    calib_images: int = typer.Option(100, min=1, help="Calibrate on at most this many --calib images "
                                     "(spread over the folder)."),
    calib_method: Optional[str] = typer.Option(None, help="INT8 activation ranges: percentile (default), minmax or "
                                               "entropy."),
    dynamic: bool = typer.Option(False, help="Dynamic batch, height and width."),
    imgsz: Size = typer.Option(None, help="Input height and width (default: the checkpoint's input size)."),
    batch: int = typer.Option(1, min=1, help="Batch size (the maximum batch with --dynamic)."),
    opset: Optional[int] = typer.Option(None, min=7, help="ONNX opset (default: the exporter's)."),
    output: str = typer.Option("logits", help="logits (N,C,H,W float) or labels (in-graph argmax, N,H,W)."),
    out: Optional[Path] = typer.Option(None, help="Output file (default: WEIGHTS with the format's suffix)."),
    check: bool = typer.Option(True, help="Parity check against PyTorch fp32 after the export."),
    check_images: Optional[Path] = typer.Option(None, help="Target images for the parity check "
                                                "(default: synthetic target-style scenes)."),
    exporter: str = typer.Option("auto", help="ONNX exporter: auto (dynamo, then TorchScript), dynamo, torchscript."),
    workspace: float = typer.Option(4.0, min=0.1, help="TensorRT workspace limit in GiB."),
    mode: str = typer.Option("auto", help="The inference mode the exported model runs in by default "
                             "(recorded in its metadata): auto, whole, resize or slide."),
) -> None:
    """Export a checkpoint to ONNX, a TensorRT engine or an AOTInductor .pt2, checked against PyTorch."""
    from diga.export import export_model

    result = export_model(
        weights, format, out=out, imgsz=imgsz, batch=batch, dynamic=dynamic, half=half, int8=int8,
        calib=calib, calib_images=calib_images, calib_method=calib_method, opset=opset, output=output, check=check,
        check_images=check_images, exporter=exporter, workspace_gb=workspace, mode=check_mode_option(mode),
        log=lambda m: console.print(m, markup=False, highlight=False, soft_wrap=True),
        warn=lambda m: err_console.print(f"[yellow]warning:[/] {m}", highlight=False, soft_wrap=True),
    )
    console.print(f"[green]exported[/] {result.path} ({result.format}, {result.seconds:.1f} s)")


@friendly
def predict_cmd(
    images: list[Path] = typer.Argument(..., help="Image files and/or folders of images, and/or video files."),
    model: Path = typer.Option(..., "--model", "--weights", help="Checkpoint, .onnx, .engine or .pt2."),
    backend: str = typer.Option("auto", help="auto, torch, onnx, tensorrt or pt2."),
    out: Path = typer.Option(..., help="Output folder."),
    batch: int = typer.Option(4, min=1, help="Images per batch."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N."),
    alpha: float = typer.Option(0.5, min=0.0, max=1.0, help="Mask weight of the overlay."),
    frames: bool = typer.Option(False, "--frames", help="Videos: also write each frame's label PNG "
                                "(<stem>_frames/<stem>_t<seconds>_labels.png; with --format cityscapes "
                                "<stem>_t<seconds>.png in labelIds)."),
    mode: Optional[str] = typer.Option(None, help=MODE_HELP),
    format: str = typer.Option("diga", "--format", help="diga: <stem>_labels.png (trainIds), _color.png, "
                               "_overlay.jpg; cityscapes: <stem>.png in Cityscapes labelIds only (for the "
                               "official evaluation scripts)."),
) -> None:
    """Segment images: writes <stem>_labels.png (trainIds), <stem>_color.png and <stem>_overlay.jpg
    (--format cityscapes: <stem>.png in labelIds); a video gives <stem>_overlay.mp4."""
    from PIL import Image

    from diga.classes import get_label_space
    from diga.export import Predictor, PredictorError
    from diga.export.images import OutputNamer, list_images, read_rgb
    from diga.export.video import is_video, predict_videos
    from diga.io import ensure_output_dir

    if format not in PREDICT_FORMATS:
        raise typer.BadParameter(f"{format!r} is not one of {', '.join(PREDICT_FORMATS)}", param_hint="--format")
    files = list_images(images, "images", out_dir=out,
                        note=lambda m: console.print(m, markup=False, highlight=False, soft_wrap=True))
    videos = [f for f in files if is_video(f)]  # a video: <stem>_overlay.mp4, streamed frame by frame
    files = [f for f in files if not is_video(f)]
    predictor = Predictor.load(model, backend=backend, device=None if device == "auto" else device,
                               batch_size=batch, mode=check_mode_option(mode))
    label_ids = (get_label_space(predictor.meta.get("label_space", "cityscapes19")).to_cityscapes_label_ids()
                 if format == "cityscapes" else None)
    modes_shown: set[str] = set()
    console.print(f"{predictor!r}: {len(files)} image(s)" + (f", {len(videos)} video(s)" if videos else "")
                  + f" -> {out}", highlight=False, soft_wrap=True)
    ensure_output_dir(out, "--out")
    namer = OutputNamer(out)
    video_failures = predict_videos(
        predictor, videos, out, namer=namer, alpha=alpha, frames=frames, label_ids=label_ids, console=console,
        log=lambda m: console.print(m, markup=False, highlight=False, soft_wrap=True),
        warn=lambda m: err_console.print(f"[red]error:[/] {m}", highlight=False, soft_wrap=True))
    if not files:
        raise typer.Exit(1 if video_failures else 0)
    failed: list[str] = []
    done = 0
    with progress_bar(console, rate=True) as progress:
        task = progress.add_task("predicting", total=len(files))
        for start in range(0, len(files), batch):
            chunk, arrays = [], []
            for f in files[start:start + batch]:
                try:
                    arrays.append(read_rgb(f))
                    chunk.append(f)
                except PredictorError as e:
                    failed.append(str(e))
                    progress.console.print(f"[red]skipped:[/] {e}", highlight=False, soft_wrap=True)
                    progress.advance(task)
            if not arrays:
                continue
            for f, pred in zip(chunk, predictor.predict(arrays)):
                if pred.mode.split()[0] not in modes_shown:  # once per mode, e.g. "mode: resize (image ...)"
                    modes_shown.add(pred.mode.split()[0])
                    progress.console.print(f"mode: {pred.mode}", highlight=False, markup=False, soft_wrap=True)
                stem = namer.stem(f)
                if label_ids is not None:
                    Image.fromarray(label_ids[pred.labels], mode="L").save(namer.path(stem, ".png"))
                    done += 1
                    progress.advance(task)
                    continue
                Image.fromarray(pred.labels, mode="L").save(namer.path(stem, "_labels.png"))
                Image.fromarray(pred.color).save(namer.path(stem, "_color.png"))
                Image.fromarray(pred.overlay(alpha)).save(namer.path(stem, "_overlay.jpg"), quality=90)
                done += 1
                progress.advance(task)
    console.print(f"{done} image(s) segmented into {out}")
    if failed:
        err_console.print(f"[red]error:[/] {len(failed)} of {len(files)} image(s) could not be read:", highlight=False, soft_wrap=True)
        for msg in failed:
            err_console.print(f"  {msg}", highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(1)
    if video_failures:
        raise typer.Exit(1)


@friendly
def benchmark_cmd(
    path: Path = typer.Argument(..., help="A checkpoint (exported to each backend) or an exported model."),
    backends: Optional[str] = typer.Option(None, help="Comma-separated: torch,onnx,tensorrt,pt2 "
                                           "(default: torch, onnx, and tensorrt where available)."),
    imgsz: Size = typer.Option(None, help="Input height and width (default: the model's input size)."),
    batch: int = typer.Option(1, min=1, help="Images per timed run."),
    warmup: int = typer.Option(3, min=0, help="Untimed runs first (allocations, autotuning)."),
    iters: int = typer.Option(20, min=1, help="Timed runs per backend."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N."),
    data: Optional[str] = typer.Option(None, help="Labelled images, KIND:PATH: also report each backend's mIoU."),
    max_images: int = typer.Option(100, min=1, help="Images of --data to score."),
    int8: bool = typer.Option(False, help="Also an INT8 row per backend that takes --int8 (needs --calib); "
                              "without it, MODEL.int8.onnx beside the checkpoint gets a row."),
    calib: Optional[Path] = typer.Option(None, help="Target-domain images to calibrate the INT8 rows on."),
    calib_images: Optional[int] = typer.Option(None, min=1, help="At most this many --calib images (default 100)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the rows as JSON here."),
    mode: Optional[str] = typer.Option(None, help="Inference mode of the --data mIoU. " + MODE_HELP),
) -> None:
    """Latency p50/p90, images/s, peak memory, agreement with PyTorch fp32 (and mIoU on --data), per backend."""
    from diga.export.bench import benchmark
    from diga.io import atomic_write_text, check_output_file

    if json_out:
        check_output_file(json_out, "--json")  # before the benchmark, not after it
    names = [b.strip() for b in backends.split(",") if b.strip()] if backends else None
    rows = benchmark(path, names, imgsz=imgsz, batch=batch, warmup=warmup, iters=iters,
                     device=None if device == "auto" else device, data=check_spec(data, "--data"),
                     max_images=max_images, int8=int8, calib=calib, calib_images=calib_images,
                     mode=check_mode_option(mode),
                     log=lambda m: console.print(m, markup=False, highlight=False, soft_wrap=True))
    table = Table(title=f"{path.name}: batch {batch}, {rows[0]['imgsz'][0]}x{rows[0]['imgsz'][1]}" if rows else "")
    columns = ["backend", "precision", "status", "device", "file MB", "p50 ms", "p90 ms", "img/s", "peak MB",
               "agree %"]
    if data:
        columns.append("mIoU")
    for col in columns:
        table.add_column(col, justify="left" if col in ("backend", "precision", "status", "device") else "right")

    def fmt(v):
        return "—" if v is None else str(v)

    for r in rows:
        table.add_row(r["backend"], r.get("precision", ""), r["status"], r.get("device", ""), fmt(r.get("file_mb")),
                      fmt(r.get("p50_ms")), fmt(r.get("p90_ms")), fmt(r.get("images_per_s")), fmt(r.get("peak_mem_mb")),
                      fmt(r.get("agreement")), *([fmt(r.get("miou"))] if data else []))
    console.print(table)
    if json_out:
        atomic_write_text(json_out, json.dumps(rows, indent=2) + "\n")
        console.print(f"written {json_out}")
    if rows and all(r["status"] != "ok" for r in rows):
        raise typer.Exit(1)
