"""How far each target condition of the synthetic benchmark is from the source domain.

For the plain target and each condition (strength 1) it generates a small benchmark (default
100 train + 50 val images a domain at 128x256, seed 0, target style at gap 0.5 like the built-in
benchmark) and reports, as the markdown table of docs/BENCHMARKS.md:

* the *statistics distance*: the Fréchet distance between Gaussians fitted to 24 per-image
  statistics of two image sets (train + val), every statistic first standardised by its mean and
  standard deviation over the source and the plain target together (so the number has no units,
  0 = the same distribution, and no statistic dominates because the source hardly varies in it),
  both to the source and to the plain target (the condition's own shift). The statistics need no
  download: mean and std of R, G, B; the colour balance mean(R)/mean(G) and mean(B)/mean(G);
  mean saturation; the 5th/50th/95th luminance percentiles; the mean luminance of the top,
  middle and bottom thirds; mean, std and the fraction above 0.1 of the luminance gradient
  magnitude, its mean at half resolution and a 4-bin gradient-orientation histogram; the mean
  absolute difference to a 3x3 box blur (fine texture and noise). Also given: the distance of
  a second source set (seed + 1), the floor of this estimate at this sample size;
* with ``--train`` (one `diga train --preset cpu` on the source, 400 steps by default) or
  ``--weights`` (a source-only checkpoint): the single-scale mIoU of that checkpoint on each
  target-val, and on the source-val for reference.

    python benchmarks/shift_conditions.py [--train | --weights W.safetensors]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from diga.data.synth import CONDITIONS, generate_benchmark

_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def image_statistics(rgb: np.ndarray) -> np.ndarray:
    """The 24 statistics of one (H, W, 3) uint8 image (see the module docstring)."""
    x = rgb.astype(np.float32) / 255.0
    luma = x @ _LUMA
    H = luma.shape[0]
    hi, lo = x.max(axis=2), x.min(axis=2)
    saturation = np.where(hi > 0, (hi - lo) / np.maximum(hi, 1e-6), 0.0)
    gy, gx = np.gradient(luma)
    mag = np.hypot(gx, gy)
    half = luma[: H // 2 * 2, : luma.shape[1] // 2 * 2]
    half = half.reshape(H // 2, 2, -1, 2).mean(axis=(1, 3))
    hy, hx = np.gradient(half)
    angle = np.mod(np.arctan2(gy, gx), np.pi)
    bins = np.minimum((angle / (np.pi / 4)).astype(int), 3)
    orient = np.bincount(bins.ravel(), weights=mag.ravel(), minlength=4) / max(mag.sum(), 1e-6)
    pad = np.pad(luma, 1, mode="edge")
    box = sum(pad[i: i + H, j: j + luma.shape[1]] for i in range(3) for j in range(3)) / 9.0
    thirds = [luma[a * H // 3: (a + 1) * H // 3].mean() for a in range(3)]
    means = x.reshape(-1, 3).mean(0)
    green = max(float(means[1]), 1e-6)
    return np.array([
        *means, *x.reshape(-1, 3).std(0), means[0] / green, means[2] / green, saturation.mean(),
        *np.percentile(luma, [5, 50, 95]), *thirds,
        mag.mean(), mag.std(), (mag > 0.1).mean(), np.hypot(hx, hy).mean(), *orient,
        np.abs(luma - box).mean(),
    ], np.float64)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to the rows of ``a`` and ``b``:
    |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2)."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = np.linalg.eigh(s_a)
    root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    cross = np.linalg.eigvalsh(root_a @ s_b @ root_a)
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a) + np.trace(s_b)
                 - 2 * np.sqrt(np.clip(cross, 0, None)).sum())


def folder_statistics(*folders: Path) -> np.ndarray:
    paths = sorted(p for f in folders for p in f.rglob("*.png"))
    return np.stack([image_statistics(np.asarray(Image.open(p).convert("RGB"))) for p in paths])


def train_source_only(source: Path, steps: int, project: Path) -> Path:
    """One `diga train --preset cpu` on the source; the path of its last checkpoint."""
    cmd = ["diga", "train", "--data", f"gta5:{source}", "--preset", "cpu", "--steps", str(steps),
           "--name", "source_only", "--project", str(project)]
    print("$", " ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, check=True)
    weights = project / "train" / "source_only" / "weights" / "last.safetensors"
    if not weights.is_file():
        sys.exit(f"no checkpoint at {weights} after training")
    return weights


def miou(weights: Path, data: str) -> float:
    """Single-scale mIoU of ``weights`` on the labelled data ``KIND:PATH`` (split val)."""
    from diga.engine.evaluation import evaluate_checkpoint

    metrics = evaluate_checkpoint(weights, data, split="val", scales=(1.0,), device="cpu", workers=0)
    return float(metrics["miou"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("runs/shift_conditions"))
    p.add_argument("--n-train", type=int, default=100)
    p.add_argument("--n-val", type=int, default=50)
    p.add_argument("--size", type=int, nargs=2, default=(128, 256))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--gap", type=float, default=0.5, help="the target style under the conditions")
    p.add_argument("--weights", type=Path, help="a source-only checkpoint to score on each")
    p.add_argument("--train", action="store_true", help="train that checkpoint here first")
    p.add_argument("--steps", type=int, default=400, help="training steps with --train")
    args = p.parse_args()
    kw = dict(n_train=args.n_train, n_val=args.n_val, size=tuple(args.size), gap=args.gap,
              progress=False)

    t0 = time.time()
    rows = {"(plain target)": ()} | {name: (name,) for name in CONDITIONS}
    roots = {label: generate_benchmark(args.out / (label.strip("()").replace(" ", "_")), seed=args.seed,
                                       conditions=conds, **kw) for label, conds in rows.items()}
    plain = roots["(plain target)"]
    floor_root = generate_benchmark(args.out / "source_floor", seed=args.seed + 1, **kw)
    source = folder_statistics(plain / "source", plain / "source_val")
    stats = {label: folder_statistics(root / "target") for label, root in roots.items()}
    both = np.concatenate([source, stats["(plain target)"]])
    mean, std = both.mean(0), both.std(0) + 1e-6

    def distance(a: np.ndarray, b: np.ndarray) -> float:
        return frechet_distance((a - mean) / std, (b - mean) / std)

    floor = distance(source, folder_statistics(floor_root / "source", floor_root / "source_val"))
    weights = args.weights
    if args.train:
        weights = train_source_only(plain / "source", args.steps, args.out / "runs")

    header = "| target | use | statistics distance to the source | to the plain target |"
    rule = "|---|---|---|---|"
    if weights:
        header += " source-only target-val mIoU |"
        rule += "---|"
    print(f"\nsource vs a second source set (seed {args.seed + 1}): {floor:.2f} (the floor)")
    if weights:
        source_val = miou(weights, f"gta5:{plain / 'source_val'}")
        print(f"source-only on source-val: {source_val:.2f} mIoU")
    print()
    print(header)
    print(rule)
    for label, root in roots.items():
        use = "—" if label not in CONDITIONS else ("held out" if CONDITIONS[label].held_out else "tuning")
        to_source, to_plain = (max(0.0, distance(a, stats[label]))  # no -0.00 from rounding
                               for a in (source, stats["(plain target)"]))
        line = f"| {label} | {use} | {to_source:.2f} | {to_plain:.2f} |"
        if weights:
            target = root / "target"
            line += f" {miou(weights, f'cityscapes:{target}'):.2f} |"
        print(line)
    print(f"\n{time.time() - t0:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
