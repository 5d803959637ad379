"""The built-in synthetic benchmark (data generated once and cached) and the cached reference models."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path

from rich.console import Console

from ..errors import ConfigError
from . import runtime
from .config import StageConfig
from .pipeline import main_rank_console, run_stage, selected_miou
from .references import KINDS, Reference
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
                "centroid_momentum", "select", "warmup_target_bn", "centroid_update", "centroid_min_pixels",
                "distil_resolution"}


def _key(cfg: StageConfig, data: str) -> str:
    """The cache key of a reference: its training settings, steps and data (train and val specs)."""
    fields = {k: v for k, v in asdict(cfg).items() if k not in _BOOKKEEPING}
    blob = json.dumps([fields, {"train": data, "val": cfg.val, "steps": cfg.steps}], sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:10]


def reference(kind: str, cfg: StageConfig, steps: int, console: Console | None = None) -> Reference:
    """Source-only ("source_only": cfg.source) or target-label ("oracle": cfg.target) model trained
    for ``steps`` and scored on cfg.val, trained once and cached under the data and settings."""
    data = {"source_only": cfg.source, "oracle": cfg.target}[kind]
    ref_cfg = cfg.replace(source=data, target=None, distil=False, mix=False, steps=steps)
    run_dir = cache_dir() / "references" / f"{kind}-{_key(ref_cfg, data)}"
    console = main_rank_console(console)
    console.rule(f"reference: {KINDS[kind]}, {steps} steps ({run_dir})")
    result = run_stage(SupervisedTrainer, ref_cfg, run_dir, console, wait=True)  # shared by concurrent runs
    return Reference(kind, selected_miou(result.metrics), steps, result.weights)


def has_labels(spec: str, cfg: StageConfig, split: str) -> bool:
    from ..data import build_dataset

    return bool(getattr(build_dataset(spec, split=split, label_space=cfg.label_space), "has_labels", True))


def train_references(cfg: StageConfig, steps: int, console: Console | None = None) -> dict[str, Reference]:
    """The source-only reference and, when the target has labels, the oracle: any data, labelled cfg.val."""
    console = main_rank_console(console)
    if not cfg.val or not has_labels(cfg.val, cfg, "val"):
        raise ConfigError(f"--references scores each reference on target labels: give a labelled --val "
                          f"(got {cfg.val or 'none'}), or --no-references")
    refs = {"source_only": reference("source_only", cfg, steps, console)}
    if has_labels(cfg.target, cfg, "train"):
        refs["oracle"] = reference("oracle", cfg, steps, console)
    else:
        console.print(f"[yellow]oracle skipped: it needs target labels and {cfg.target} has none "
                      "(cityscapes:DIR, or folder:DIR?labels=LABELS_DIR)[/]")
    return refs
