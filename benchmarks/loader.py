"""Data-loader throughput at GTA5 resolution (1914x1052 PNG frames) vs what a training step consumes.

Writes N GTA5-sized frames of the synthetic benchmark (GTA5 layout), then measures images/s of the
real training loader (decode + resize to 720x1280 + random scale + 512x896 crop + flip) for several
worker counts. Run it on the training machine and compare with the step's images/s.

    python benchmarks/loader.py --frames 24 --workers 0 1 2
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from diga.engine.config import preset
from diga.engine.loaders import infinite_loader, train_dataset


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=24)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--batches", type=int, default=12)
    p.add_argument("--data", default=str(Path(tempfile.gettempdir()) / "diga-loader-bench"))
    args = p.parse_args()
    from diga.data.synth import generate_benchmark

    root = generate_benchmark(Path(args.data), n_train=args.frames, n_val=1, size=(1052, 1914), seed=0)
    cfg = preset("paper").replace(source=f"gta5:{root / 'source'}")
    print(f"\nloader on {torch.get_num_threads()} CPU threads; GTA5-size frames 1052x1914 -> 720x1280 -> "
          f"random scale {cfg.scale} -> crop {cfg.crop}, batch {cfg.batch_size}\n")
    print("| workers | images/s |")
    print("|---|---|")
    for workers in args.workers:
        c = cfg.replace(workers=workers)
        batches = infinite_loader(train_dataset(c.source, c), c, 0)
        next(batches)  # start-up (worker processes) excluded
        t0 = time.perf_counter()
        for _ in range(args.batches):
            next(batches)
        rate = args.batches * c.batch_size / (time.perf_counter() - t0)
        print(f"| {workers} | {rate:.1f} |")


if __name__ == "__main__":
    main()
