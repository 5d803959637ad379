"""The built-in synthetic benchmark (data generated once and cached) and the cached reference models."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

import torch
from rich.console import Console

from ..errors import ConfigError
from ..io import cache_dir
from . import runtime
from .config import StageConfig
from .pipeline import main_rank_console, run_stage, selected_miou
from .references import KINDS, Reference
from .supervised import SupervisedTrainer

BENCHMARK_DEFAULTS = dict(n_train=400, n_val=100, size=(128, 256), seed=0, gap=0.5)


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
                "distil_resolution", "generalize", "translator_weights", "translator_steps", "translator_vgg",
                "teacher_mode", "blend_space", "augment_ops", "student_forward", "source_base_sizes",
                "target_base_sizes",
                "selftrain_source_base_sizes", "selftrain_target_base_sizes", "pseudo_size",
                "target_mix_ignore", "select_upsample", "mix_count", "centroid_labels", "centroids_per_round",
                "centroid_mean", "centroid_images",
                "selftrain_batch_size", "selftrain_scale", "selftrain_source_scale", "warmup_target_scale",
                "jitter_p", "grayscale_p", "selftrain_jitter_p", "selftrain_grayscale_p", "distil_reverse_weight",
                "warmup_lr_schedule", "drift_guard"}


def _key(cfg: StageConfig, data: str) -> str:
    """The cache key of a reference: its training settings, steps and data (train and val specs).

    Only settings that differ from StageConfig's defaults enter the key, so a setting added later
    with a default that keeps the earlier behaviour leaves every cached reference valid."""
    defaults = asdict(StageConfig())
    fields = {k: v for k, v in asdict(cfg).items() if k not in _BOOKKEEPING and v != defaults[k]}
    blob = json.dumps([fields, {"train": data, "val": cfg.val, "steps": cfg.steps}], sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:10]


def reference(kind: str, cfg: StageConfig, steps: int, console: Console | None = None) -> Reference:
    """Source-only ("source_only": cfg.source) or target-label ("oracle": cfg.target) model trained
    for ``steps`` and scored on cfg.val, trained once and cached under the data and settings."""
    ref_cfg, run_dir = _reference_run(kind, cfg, steps)
    console = main_rank_console(console)
    console.rule(f"reference: {KINDS[kind]}, {steps} steps ({run_dir})")
    result = run_stage(SupervisedTrainer, ref_cfg, run_dir, console, wait=True)  # shared by concurrent runs
    return Reference(kind, selected_miou(result.metrics), steps, result.weights)


def _reference_run(kind: str, cfg: StageConfig, steps: int) -> tuple[StageConfig, Path]:
    """The reference's training config and its cache directory (keyed by data, settings and steps)."""
    data = {"source_only": cfg.source, "oracle": cfg.target}[kind]
    # A reference has no target images to choose by: --select label-free leaves it its last step.
    select = "last" if cfg.select == "label-free" else cfg.select
    ref_cfg = cfg.replace(source=data, target=None, distil=False, mix=False, steps=steps, select=select)
    return ref_cfg, cache_dir() / "references" / f"{kind}-{_key(ref_cfg, data)}"


def reference_dir(kind: str, cfg: StageConfig, steps: int) -> Path:
    return _reference_run(kind, cfg, steps)[1]


def has_labels(spec: str, cfg: StageConfig, split: str) -> bool:
    from ..data import build_dataset

    return bool(getattr(build_dataset(spec, split=split, label_space=cfg.label_space), "has_labels", True))


def train_references(cfg: StageConfig, steps: int, console: Console | None = None) -> dict[str, Reference]:
    """The source-only reference and, when the target has labels, the oracle: any data, labelled cfg.val."""
    console = main_rank_console(console)
    if not cfg.val or not has_labels(cfg.val, cfg, "val"):
        raise ConfigError(f"--references scores each reference on target labels: give a labelled --val "
                          f"(got {cfg.val or 'none'}), or --no-references")
    kinds = ["source_only"]
    if has_labels(cfg.target, cfg, "train"):
        kinds.append("oracle")
    else:
        console.print(f"[yellow]oracle skipped: it needs target labels and {cfg.target} has none "
                      "(cityscapes:DIR, or folder:DIR?labels=LABELS_DIR)[/]")
    if len(kinds) > 1 and side_by_side(cfg):
        return train_side_by_side(kinds, cfg, steps, console)
    return {kind: reference(kind, cfg, steps, console) for kind in kinds}


def side_by_side(cfg: StageConfig) -> bool:
    """Whether to train the references at once, one process each, splitting the CPU threads.

    Two one-thread processes make 18 % more training steps a second than one two-thread process
    on a 2-core CPU (deeplabv2_light, batch 8 of 64x128: 224 ms a step on one thread, 136 ms on
    two), so on a CPU the references take ~4 min 25 s instead of 5 min 20 s of the built-in
    benchmark. Not under DDP or on a GPU, where one process already has the device to itself.
    """
    return (not runtime.is_distributed() and runtime.resolve_device(cfg.device).type == "cpu"
            and torch.get_num_threads() >= 2)


def train_side_by_side(kinds: list[str], cfg: StageConfig, steps: int, console: Console) -> dict[str, Reference]:
    """:func:`reference` for each kind in its own process with ``threads // len(kinds)`` CPU threads.

    Their progress goes to ``console.log`` in each reference's run directory (two live progress
    bars would garble one terminal); a Ctrl-C stops both at a checkpoint, as for any stage.
    """
    threads = max(1, torch.get_num_threads() // len(kinds))
    dirs = {kind: reference_dir(kind, cfg, steps) for kind in kinds}
    console.rule(f"references: {', '.join(KINDS[k] for k in kinds)}, {steps} steps each, side by side "
                 f"({threads} CPU thread{'s' if threads > 1 else ''} each)")
    for kind in kinds:
        console.print(f"{KINDS[kind]}: {dirs[kind]} (progress in console.log)")
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no fork of a threaded parent
    with ProcessPoolExecutor(len(kinds), mp_context=context) as pool:
        futures = {kind: pool.submit(_reference_process, kind, cfg, steps, threads) for kind in kinds}
        refs = {kind: future.result() for kind, future in futures.items()}
    for ref in refs.values():
        console.print(f"{ref.label}: target-val mIoU {ref.miou:.2f}" if ref.miou is not None else ref.label)
    return refs


def _reference_process(kind: str, cfg: StageConfig, steps: int, threads: int) -> Reference:
    torch.set_num_threads(threads)
    log = reference_dir(kind, cfg, steps)
    log.mkdir(parents=True, exist_ok=True)
    with open(log / "console.log", "a") as stream:
        return reference(kind, cfg, steps, Console(file=stream, width=100))
