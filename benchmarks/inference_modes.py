"""Inference modes at any resolution: mIoU and latency of ``whole``, ``resize`` and ``slide`` on the
target-val images upscaled on the fly.

Each image (and its labels, nearest neighbour) is resized by every ``--factors`` entry (per side:
1 = the training scale, 2 = four times the pixels, ...; images bilinear, antialiased when
shrinking), then segmented by :class:`diga.export.Predictor` (the deployment path, one image per
call) in each mode and scored on the resized labels (one confusion matrix per factor and mode,
the ``diga evaluate`` protocol, single scale). ``auto`` is reported by which mode it picked.
Besides the wall-clock median, "network Mpx" is the number of pixels the network processes per
image (slide: all windows), the cost of a mode on any machine. The markdown table is what
docs/BENCHMARKS.md shows.

    python benchmarks/inference_modes.py --weights runs/train/m/weights/best.safetensors \\
        --data /tmp/ss/target [--factors 0.5 1 2 4] [--max-images 100] [--threads 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from diga.inference import MODES, auto_mode, slide_windows

DEFAULT_FACTORS = (0.5, 1.0, 2.0, 4.0)


def scaled(image: np.ndarray, label: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) uint8 image and (H, W) labels resized by ``factor`` per side."""
    if factor == 1:
        return image, label
    h, w = label.shape
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    im = Image.fromarray(image).resize(size, Image.BILINEAR, reducing_gap=None)
    lab = Image.fromarray(label).resize(size, Image.NEAREST)
    return np.asarray(im), np.asarray(lab)


def network_pixels(predictor, size) -> int:
    """Pixels the network processes for one image of ``size`` (slide: every window): the cost of a
    mode independent of the machine's load."""
    plan = predictor.plan(*size)
    if plan.mode == "slide":
        return len(slide_windows(size, plan.window, plan.stride)) * plan.window[0] * plan.window[1]
    return plan.input_size[0] * plan.input_size[1]


def measure(weights: Path, data: str, factors: list[float], max_images: int, modes: list[str] | None = None,
            log=print, on_row=None) -> list[dict]:
    """One row per factor and mode: mIoU, pixel accuracy, median ms/image (``on_row`` sees each one)."""
    from diga.data import build_dataset
    from diga.evaluate import ConfusionMatrix
    from diga.export import Predictor

    predictors = {mode: Predictor.load(weights, device="cpu", mode=mode, batch_size=1) for mode in modes or MODES}
    first = next(iter(predictors.values()))
    dataset = build_dataset(data, split="val", label_space=first.meta.get("label_space", "cityscapes19"))
    n = min(len(dataset), max_images)
    samples = [dataset[i] for i in range(n)]
    samples = [(im.permute(1, 2, 0).numpy(), lab.numpy().astype(np.uint8)) for im, lab in samples]
    rows = []
    for factor in factors:
        pairs = [scaled(im, lab, factor) for im, lab in samples]
        size = pairs[0][1].shape
        picked = auto_mode(size, first.training_scale)
        for mode, predictor in predictors.items():
            cm = ConfusionMatrix(predictor.num_classes)
            times = []
            predictor.predict([pairs[0][0]])  # warm-up (allocations, first-call costs)
            for image, label in pairs:
                t = time.perf_counter()
                (pred,) = predictor.predict([image])
                times.append((time.perf_counter() - t) * 1e3)
                cm.update(torch.from_numpy(pred.labels.astype(np.int64)), torch.from_numpy(label.astype(np.int64)))
            metrics = cm.compute()
            row = {"factor": factor, "size": list(size), "mode": mode, "auto": mode == picked,
                   "miou": metrics.miou, "pixel_accuracy": metrics.pixel_accuracy,
                   "ms_per_image": round(float(np.median(times)), 1), "images": n, "plan": pred.mode,
                   "network_pixels": network_pixels(predictor, size)}
            rows.append(row)
            if on_row is not None:
                on_row(rows)
            log(f"x{factor:g} {size[0]}x{size[1]} {mode:6s} mIoU {row['miou']:6.2f}  {row['ms_per_image']:8.1f} ms"
                + ("  <- auto" if row["auto"] else ""))
    return rows


def markdown(rows: list[dict], weights: Path, scale, threads: int) -> str:
    lines = [f"Model: `{weights}` (training scale {scale.size[0]}x{scale.size[1]}, crop "
             f"{scale.crop[0]}x{scale.crop[1]}); CPU, {threads} threads, {platform.processor() or platform.machine()}, "
             f"torch {torch.__version__}, {rows[0]['images']} images per row, median ms/image of the whole "
             "Predictor call (pre-processing, model, post-processing).", "",
             "| factor | image | mode | mIoU | pixel acc. | network Mpx | ms/image |",
             "|---|---|---|---:|---:|---:|---:|"]
    for r in rows:
        mode = f"**{r['mode']}** (auto)" if r["auto"] else r["mode"]
        lines.append(f"| x{r['factor']:g} | {r['size'][0]}x{r['size'][1]} | {mode} | {r['miou']:.2f} | "
                     f"{r['pixel_accuracy']:.2f} | {r['network_pixels'] / 1e6:.3f} | {r['ms_per_image']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", type=Path, required=True, help="A diga checkpoint (.safetensors).")
    ap.add_argument("--data", required=True, help="Labelled target images: KIND:PATH or a Cityscapes-layout folder.")
    ap.add_argument("--factors", type=float, nargs="+", default=list(DEFAULT_FACTORS),
                    help="Per-side resize factors of the val images.")
    ap.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    ap.add_argument("--max-images", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads.")
    ap.add_argument("--json", type=Path, default=None, help="Write the rows here.")
    args = ap.parse_args(argv)
    if any(f <= 0 for f in args.factors) or args.max_images < 1 or args.threads < 1:
        ap.error("--factors must be positive, --max-images and --threads at least 1")
    data = args.data if ":" in args.data else f"cityscapes:{args.data}"
    torch.set_num_threads(args.threads)
    from diga.export import Predictor

    scale = Predictor.load(args.weights, device="cpu").training_scale

    def save(rows: list[dict]) -> None:  # after every row: a long run that is stopped keeps what it measured
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(rows, indent=2) + "\n")

    rows = measure(args.weights, data, args.factors, args.max_images, args.modes, on_row=save)
    print()
    print(markdown(rows, args.weights, scale, args.threads))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
