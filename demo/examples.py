"""Example images for the demo: target-domain ("camera" style) street scenes of the built-in
synthetic benchmark, generated once into ``$DIGA_CACHE/demo_examples`` (default
``~/.cache/diga/demo_examples``) and reused afterwards. No network is involved."""

from __future__ import annotations

import logging
from pathlib import Path

from diga.io import cache_dir

log = logging.getLogger(__name__)

DEFAULT_SIZE = (128, 256)  # the built-in benchmark's image size (what `diga adapt` trains on)


def examples_dir() -> Path:
    return cache_dir() / "demo_examples"


def ensure_examples(n: int = 4, size: tuple[int, int] = DEFAULT_SIZE, seed: int = 0,
                    root: Path | None = None) -> list[Path]:
    """Paths of ``n`` target-domain validation images, generating them on the first call.

    The images are the first ``n`` target-val images of the benchmark with this ``seed`` and
    ``size`` (image k depends only on the seed, the size and k). Returns ``[]`` (and logs why)
    if they cannot be generated: the demo then runs without examples."""
    if n <= 0:
        return []
    h, w = int(size[0]), int(size[1])
    from diga.engine.benchmark import BENCHMARK_DEFAULTS

    gap = BENCHMARK_DEFAULTS["gap"]  # the same target style as the built-in benchmark
    bench = (root or examples_dir()) / f"synth-v2-{h}x{w}-n{n}-g{gap}-s{seed}"
    try:
        from diga.data.synth import generate_benchmark

        generate_benchmark(bench, n_train=0, n_val=n, size=(h, w), seed=seed, progress=False, gap=gap)
    except Exception as e:  # noqa: BLE001 - examples are a convenience, never a reason to fail
        log.warning("demo examples not available (%s: %s)", type(e).__name__, e)
        return []
    return sorted((bench / "target" / "leftImg8bit" / "val").glob("*/*_leftImg8bit.png"))[:n]
