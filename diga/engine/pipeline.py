"""``adapt = warmup -> pseudo_labels -> centroids -> self_train x rounds -> evaluate``.

Every stage writes its own sub-directory and a ``summary.json`` when it finishes; re-running the
same command skips finished stages and resumes an interrupted one from its last checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from ..checkpoint import load_weights, save_weights
from ..io import atomic_write_text
from . import runtime
from .config import StageConfig
from .pseudolabels import compute_centroids, generate_pseudo_labels
from .selftrain import SelfTrainer
from .trainer import StageResult, Trainer, completed_summary
from .warmup import WarmupTrainer


def run_stage(trainer_cls: type[Trainer], cfg: StageConfig, run_dir: Path, console: Console | None = None) -> StageResult:
    """Run a stage, or return its result at once if it already finished (resuming otherwise)."""
    summary = completed_summary(run_dir)
    if summary is not None:
        teacher = summary.get("teacher_weights")
        return StageResult(Path(run_dir), Path(summary["weights"]), Path(teacher) if teacher else None, summary)
    return trainer_cls(cfg, run_dir, resume=True, console=console).run()


def selected_miou(summary: dict[str, Any]) -> float | None:
    """Target-val mIoU of the model a stage handed on (None without target labels)."""
    if summary.get("selected") == "best" and summary.get("best", {}).get("step", -1) >= 0:
        return summary["best"]["miou"]
    return summary.get("final", {}).get("student", {}).get("miou")


def warmup_config(cfg: StageConfig) -> StageConfig:
    return cfg.replace(distil_weight=0.5, blend_beta=0.4)


def selftrain_config(cfg: StageConfig, init: Path, manifest: Path, centroids: Path) -> StageConfig:
    return cfg.replace(distil_weight=0.25, blend_beta=0.3, init=str(init), pseudo_labels=str(manifest),
                       centroids=str(centroids), steps=cfg.selftrain_steps or cfg.steps)


@dataclass
class AdaptResult:
    run_dir: Path
    final_weights: Path
    rows: list[tuple[str, float | None]] = field(default_factory=list)


def main_rank_console(console: Console | None) -> Console:
    """``console`` (or a new stderr console) on rank 0; a silent one on the other DDP ranks."""
    if not runtime.is_main():
        return Console(stderr=True, quiet=True)
    return console or Console(stderr=True)


def adapt(cfg: StageConfig, run_dir: str | Path, references: dict[str, float | None] | None = None,
          before: Path | None = None, console: Console | None = None) -> AdaptResult:
    """The whole DiGA pipeline into ``run_dir``; returns the final weights and the mIoU table."""
    run_dir = Path(run_dir)
    console = main_rank_console(console)
    if not cfg.source or not cfg.target:
        raise ValueError("diga adapt needs --source KIND:PATH and --target KIND:PATH")
    if runtime.is_main():
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "config.yaml", cfg.to_yaml())
    rows: list[tuple[str, float | None]] = []
    console.rule("stage 1: warm-up (symmetric distillation + cross-domain mixture)")
    stage = run_stage(WarmupTrainer, warmup_config(cfg), run_dir / "warmup", console)
    rows.append(("warm-up", selected_miou(stage.metrics)))
    current = stage.weights
    for r in range(1, cfg.rounds + 1):
        round_dir = run_dir / f"round{r}"
        console.rule(f"round {r}: pseudo-labels and centroids from {current.name}")
        manifest = generate_pseudo_labels(current, cfg.target, round_dir / "pseudo", cfg)
        centroids = compute_centroids(current, manifest, round_dir / "centroids.safetensors", cfg)
        console.rule(f"stage 2, round {r}: self-training with {cfg.selection} pseudo-label selection")
        stage = run_stage(SelfTrainer, selftrain_config(cfg, current, manifest, centroids),
                          round_dir / "selftrain", console)
        rows.append((f"self-training round {r} ({cfg.selection})", selected_miou(stage.metrics)))
        current = stage.weights
    final = run_dir / "final.safetensors"
    if runtime.is_main():
        _write_final(current, final, before, run_dir)
    runtime.barrier()
    refs = references or {}
    table = ([("source-only", refs.get("source_only"))] if "source_only" in refs else []) + rows
    if "oracle" in refs:
        table.append(("oracle (target labels)", refs["oracle"]))
    if runtime.is_main():
        atomic_write_text(run_dir / "results.json", json.dumps(
            {"rows": [{"stage": k, "target_val_miou": v} for k, v in table],
             "final_weights": str(final), "protocol": _protocol(cfg)}, indent=2) + "\n")
        try:
            from .report import write_report

            write_report(run_dir, table, cfg, before=run_dir / "before.safetensors")
        except Exception as e:  # a report must never cost the user the trained model
            console.print(f"[yellow]report not written: {e}[/]")
    runtime.barrier()
    return AdaptResult(run_dir, final, table)


def _protocol(cfg: StageConfig) -> str:
    return (f"{cfg.label_space}, mIoU over the target-val confusion matrix, scales "
            f"{list(cfg.eval_scales)} max-fused, model handed on per stage: {cfg.select}")


def _write_final(weights: Path, final: Path, before: Path | None, run_dir: Path) -> None:
    state, meta = load_weights(weights)
    before_path = run_dir / "before.safetensors"
    source = before if before is not None and Path(before).exists() else run_dir / "warmup" / "weights" / "last.safetensors"
    if Path(source).exists() and not before_path.exists():
        shutil.copyfile(source, before_path)
        shutil.copyfile(Path(source).with_suffix(".json"), before_path.with_suffix(".json"))
    meta = {**meta, "stage": "final", "before_adaptation": before_path.name, "from": os.path.relpath(weights, run_dir)}
    save_weights(final, state, meta)
