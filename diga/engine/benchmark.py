"""The built-in synthetic benchmark: data generated once and cached, reference models cached."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path

from rich.console import Console

from . import runtime
from .config import StageConfig
from .pipeline import main_rank_console, run_stage, selected_miou
from .supervised import SupervisedTrainer

BENCHMARK_DEFAULTS = dict(n_train=400, n_val=100, size=(128, 256), seed=0, gap=0.5)


def cache_dir() -> Path:
    return Path(os.environ.get("DIGA_CACHE", "~/.cache/diga")).expanduser()


def synthetic_benchmark(root: Path | None = None, **params) -> dict[str, str]:
    """Generate (once) the two-domain benchmark; return dataset specs for every role.

    ``params`` override BENCHMARK_DEFAULTS (n_train, n_val, size, seed, gap).
    """
    from ..data.synth import generate_benchmark

    p = {**BENCHMARK_DEFAULTS, **params}
    size = tuple(p["size"])
    root = root or cache_dir() / f"synth-v2-{size[0]}x{size[1]}-n{p['n_train']}-{p['n_val']}-g{p['gap']}-s{p['seed']}"
    if runtime.is_main():  # one writer; the other ranks wait for the finished files
        generate_benchmark(root, n_train=p["n_train"], n_val=p["n_val"], size=size, seed=p["seed"], gap=p["gap"])
    runtime.barrier()
    return {"root": str(root), "source": f"gta5:{root / 'source'}", "source_val": f"gta5:{root / 'source_val'}",
            "target": f"cityscapes:{root / 'target'}", "val": f"cityscapes:{root / 'target'}"}


_BOOKKEEPING = {"source", "target", "val", "source_val", "init", "pseudo_labels", "centroids", "device",
                "workers", "log_every", "eval_every", "ckpt_every", "vis_every", "rounds", "selftrain_steps",
                "distil", "mix", "translator", "selection", "compile",
                # settings of the DiGA stages that plain supervised training never reads
                "fda_beta", "color_space", "distil_weight", "blend_beta", "selftrain_distil_weight",
                "selftrain_blend_beta", "ema_max", "threshold",
                "centroid_momentum", "select"}


def _key(cfg: StageConfig, bench: dict[str, str]) -> str:
    fields = {k: v for k, v in asdict(cfg).items() if k not in _BOOKKEEPING}
    blob = json.dumps([fields, bench["root"]], sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:10]


def reference(kind: str, cfg: StageConfig, bench: dict[str, str], console: Console | None = None) -> tuple[float | None, Path]:
    """Source-only ("source_only") or target-label ("oracle") model, trained once and cached."""
    data = {"source_only": bench["source"], "oracle": bench["target"]}[kind]
    ref_cfg = cfg.replace(source=data, target=None, val=bench["val"], distil=False, mix=False)
    run_dir = cache_dir() / "references" / f"{kind}-{_key(cfg, bench)}"
    console = main_rank_console(console)
    console.rule(f"reference: {kind.replace('_', '-')} ({run_dir})")
    result = run_stage(SupervisedTrainer, ref_cfg, run_dir, console)
    return selected_miou(result.metrics), result.weights
