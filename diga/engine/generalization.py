"""Domain generalisation: the warm-up trained on the labelled source alone, scored on unseen datasets.

``generalize = warm-up without any target image -> evaluate on every unseen dataset``. The trainer
is the warm-up's (``WarmupTrainer``); ``generalize`` in the config removes the target domain: no
translator, no cross-domain mixture, and the second view of the symmetric distillation is the
photometrically augmented source (the authors' ``domain_generalization/train_DiGA_DG.py``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from ..errors import ConfigError
from ..io import atomic_write_text
from . import runtime
from .config import StageConfig
from .evaluation import evaluate_datasets
from .pipeline import check_same_settings, main_rank_console, run_stage
from .rundir import run_lock
from .warmup import WarmupTrainer

# What makes a warm-up config a domain-generalisation one: with no target images there is no
# translator and no mixture (the authors' DG script).
GENERALIZE_SETTINGS: dict[str, Any] = {"generalize": True, "mix": False, "translator": "none"}
RESULTS_FILE = "results.json"


@dataclass
class GeneralizeResult:
    run_dir: Path
    weights: Path
    rows: list[dict[str, Any]]  # one per unseen dataset, as evaluate_datasets returns them


def generalization_config(cfg: StageConfig, bn_images: str | None = None) -> StageConfig:
    """``cfg`` as a domain-generalisation run: a config that names target images is refused.

    ``bn_images`` (KIND:PATH): unlabelled images that every step also passes through the student in
    train mode, without gradients, so that its BatchNorm statistics follow them (the warm-up's target
    BatchNorm pass). The authors' DG script does this with Cityscapes train crops, one of the domains
    it then reports as unseen; their numbers rest on it, a true generalisation run leaves it out.
    """
    if bn_images:
        bn = {"target": bn_images, "warmup_target_bn": True}
    elif cfg.generalize and cfg.target:
        bn = {}  # a generalisation run's own config.yaml: its target names its BatchNorm images, if anything
    else:
        bn = {"warmup_target_bn": False}  # an adaptation config's target images are refused
    return cfg.replace(**GENERALIZE_SETTINGS, **bn).validate()


def generalize(cfg: StageConfig, run_dir: str | Path, evals: Sequence[str],
               console: Console | None = None, bn_images: str | None = None) -> GeneralizeResult:
    """Train on ``cfg.source`` alone into ``run_dir`` (resumed, or reused once finished), then score
    the handed-on model on every labelled dataset of ``evals``; the rows also go to results.json.
    ``bn_images``: see ``generalization_config``; with labelled ``cfg.val`` and ``select`` best or auto
    the stage hands on its best step on it (the authors' DG script: its best Cityscapes-val step)."""
    cfg = generalization_config(cfg, bn_images)
    if not cfg.source:
        raise ConfigError("domain generalisation trains on labelled source data: --source KIND:PATH")
    if not evals:
        raise ConfigError("give at least one unseen labelled dataset to score the model on: --eval KIND:PATH")
    run_dir = Path(run_dir)
    console = main_rank_console(console)
    with run_lock(run_dir, console):
        check_same_settings(run_dir, cfg)  # before any training: a run continues only with its own settings
        stage = run_stage(WarmupTrainer, cfg, run_dir, console)
        # "auto" as `diga evaluate`: unseen datasets come at any size, whole or in windows by the training scale
        rows = evaluate_datasets(stage.weights, list(evals), scales=cfg.eval_scales, device=cfg.device, mode="auto",
                                 amp=cfg.amp, log=lambda message: console.print(message, highlight=False, markup=False))
        if runtime.is_main():
            atomic_write_text(run_dir / RESULTS_FILE, json.dumps(
                {"weights": str(stage.weights), "source": cfg.source, "bn_images": bn_images,
                 "selected": stage.metrics.get("selected"), "rows": rows}, indent=2) + "\n")
    return GeneralizeResult(run_dir, stage.weights, rows)


__all__ = ["GENERALIZE_SETTINGS", "RESULTS_FILE", "GeneralizeResult", "generalization_config", "generalize"]
