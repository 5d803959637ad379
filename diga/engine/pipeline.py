"""``adapt = warmup -> pseudo_labels -> centroids -> self_train x rounds -> evaluate``.

Every stage writes its own sub-directory and a ``summary.json`` when it finishes; re-running the
same command skips finished stages and resumes an interrupted one from its last checkpoint. A run
directory keeps the settings it was started with in ``config.yaml``; continuing it with other
settings is refused (a run that mixes two configurations describes neither).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from ..checkpoint import load_weights, save_weights
from ..errors import ConfigError
from ..io import atomic_write_text
from . import runtime
from .config import StageConfig, changed_settings
from .labelfree import handed_on_point, handed_on_signals
from .pseudolabels import compute_centroids, generate_pseudo_labels
from .references import Reference, gap_summary
from .rundir import run_lock
from .selftrain import SelfTrainer
from .trainer import CONFIG_FILE, SUMMARY_FILE, StageResult, Trainer, checkpoint_file, completed_summary
from .translator import TRANSLATOR_FILE, TranslatorConfig, train_translator
from .warmup import WarmupTrainer


def run_stage(trainer_cls: type[Trainer], cfg: StageConfig, run_dir: Path, console: Console | None = None,
              wait: bool = False) -> StageResult:
    """Run a stage, or return its result at once if it already finished (resuming otherwise).

    ``wait``: if another process is running this very stage, wait for it instead of refusing.
    """
    with run_lock(run_dir, console, wait=wait):
        summary = completed_summary(run_dir)
        if summary is not None:
            teacher = summary.get("teacher_weights")
            return StageResult(Path(run_dir), Path(summary["weights"]), Path(teacher) if teacher else None, summary)
        return trainer_cls(cfg, run_dir, resume=True, console=console).run()


def train_stage(trainer_cls: type[Trainer], cfg: StageConfig, run_dir: str | Path, resume: bool = False,
                console: Console | None = None) -> StageResult:
    """One stage as a command runs it: a new run, or with ``resume`` the continuation of ``run_dir``."""
    if resume:
        check_resume(run_dir, cfg)
    with run_lock(run_dir, console):
        return trainer_cls(cfg, run_dir, resume=resume, console=console).run()


def selected_miou(summary: dict[str, Any]) -> float | None:
    """Target-val mIoU of the model a stage handed on (None without target labels)."""
    chosen = handed_on_point(summary)
    if chosen:
        return chosen["miou"]
    return summary.get("final", {}).get("student", {}).get("miou")


def check_same_settings(run_dir: str | Path, cfg: StageConfig) -> None:
    """Refuse to continue ``run_dir`` with settings other than those saved in its config.yaml."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.exists():
        return
    # A setting missing from the file did not exist when the run started: the run used what the
    # code did then, which the file cannot tell, so only the recorded settings are compared.
    saved = StageConfig.load(path)
    recorded = set(yaml.safe_load(path.read_text()) or {})
    changes = [change for change in changed_settings(saved, cfg) if change[0] in recorded]
    if changes:
        listed = "; ".join(f"{name}: saved {saved!r}, now {new!r}" for name, saved, new in changes)
        raise ConfigError(
            f"{run_dir} was started with other settings, and a run continues only with its own: {listed}. "
            f"Continue it with --config {path} (or the same options as before), or choose another --name "
            "for a new run."
        )


def check_resume(run_dir: str | Path, cfg: StageConfig) -> None:
    """What ``--resume`` needs: a checkpoint in ``run_dir``, taken with the settings of ``cfg``."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise ConfigError(f"--resume: there is no run {run_dir} to resume; run without --resume to start it")
    if not checkpoint_file(run_dir).exists():
        raise ConfigError(
            f"--resume: {run_dir} has no checkpoint to resume from (the run stopped before its first one, "
            f"taken every ckpt_every={cfg.ckpt_every} steps); run without --resume to start it again from step 0"
        )
    check_same_settings(run_dir, cfg)


def start_run(run_dir: str | Path, cfg: StageConfig) -> None:
    """Check the settings of an existing ``run_dir``, then save ``cfg`` as its config.yaml."""
    check_same_settings(run_dir, cfg)
    if runtime.is_main():
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(run_dir) / CONFIG_FILE, cfg.to_yaml())


def warmup_config(cfg: StageConfig) -> StageConfig:
    """The warm-up reads the config as it is (distil_weight and blend_beta are the warm-up's)."""
    return cfg


def selftrain_config(cfg: StageConfig, init: Path, manifest: Path, centroids: Path) -> StageConfig:
    """The config of one self-training round: its inputs, and the self-training values of the
    settings the stages set apart (steps, batch size, lambda, beta, jitter and grayscale probabilities,
    rescale range, per-dataset base sizes; steps, batch size, rescale range and base sizes left unset
    take the warm-up's). The labelled crops' own range, selftrain_source_scale, stays as it is:
    SelfTrainer reads it (None: this stage's scale)."""
    return cfg.replace(distil_weight=cfg.selftrain_distil_weight, blend_beta=cfg.selftrain_blend_beta,
                       jitter_p=cfg.selftrain_jitter_p, grayscale_p=cfg.selftrain_grayscale_p,
                       init=str(init), pseudo_labels=str(manifest), centroids=str(centroids),
                       steps=cfg.selftrain_steps or cfg.steps,
                       batch_size=cfg.selftrain_batch_size or cfg.batch_size,
                       scale=cfg.selftrain_scale or cfg.scale,
                       source_base_sizes=cfg.selftrain_source_base_sizes or cfg.source_base_sizes,
                       target_base_sizes=cfg.selftrain_target_base_sizes or cfg.target_base_sizes)


CENTROIDS_FILE = "centroids.safetensors"


def kept_centroids(cfg: StageConfig, r: int, run_dir: Path) -> Path | None:
    """The centroids self-training round ``r`` reuses, or None when it computes its own from its starting
    model. With centroids_per_round keep, every round after the first reuses the first round's file,
    computed from the warm-up model. No copy is made: the round's selftrain/config.yaml names that one
    file, and a resumed run finds it where round 1 left it."""
    if cfg.centroids_per_round == "keep" and r > 1:
        return run_dir / "round1" / CENTROIDS_FILE
    return None


@dataclass(frozen=True)
class GuardRejection:
    """A self-training round the drift guard rejected: the class drift of the model it started from and
    of the model it ended with (``cfg.drift_guard``)."""
    round: int
    drift_before: float
    drift_after: float
    limit: float

    def describe(self, handed_on: str) -> str:
        return (f"drift guard: self-training round {self.round} raised the class drift on the target from "
                f"{self.drift_before:.3f} to {self.drift_after:.3f} (more than +{self.limit:g}), so the rounds "
                f"stopped there and the model handed on is the one before it: {handed_on}")


def guard_rejects(cfg: StageConfig, r: int, before: dict[str, float] | None,
                  after: dict[str, float]) -> GuardRejection | None:
    """The drift guard's verdict on round ``r`` (None: kept, the guard off, or a drift missing)."""
    if not cfg.drift_guard or not before or "class_drift" not in before or "class_drift" not in after:
        return None
    rise = after["class_drift"] - before["class_drift"]
    return GuardRejection(r, before["class_drift"], after["class_drift"], cfg.drift_guard) if rise > cfg.drift_guard else None


@dataclass
class Rounds:
    """The self-training rounds that ran, the label-free signals of the model each handed on (read once,
    for the guard and the tables), and the drift guard's rejection of the last one if it made one."""
    results: list[StageResult]
    signals: list[dict[str, float]] = field(default_factory=list)
    rejected: GuardRejection | None = None

    @property
    def kept(self) -> list[StageResult]:
        return self.results[:-1] if self.rejected else self.results


def self_training_rounds(cfg: StageConfig, init: Path, run_dir: Path, console: Console,
                         init_signals: dict[str, float] | None = None) -> Rounds:
    """``cfg.rounds`` x (pseudo-labels -> centroids -> self-training), each round from the last one's model
    (the centroids of a round computed from that model too, unless :func:`kept_centroids` gives them).

    With ``cfg.drift_guard`` a round that raises the class drift of the model it started from
    (``init_signals`` for the first) by more than the guard ends the rounds (:func:`guard_rejects`)."""
    results: list[StageResult] = []
    signals: list[dict[str, float]] = []
    current, before = Path(init), init_signals
    for r in range(1, cfg.rounds + 1):
        round_dir = run_dir / f"round{r}"
        kept = kept_centroids(cfg, r, run_dir)
        console.rule(f"round {r}: pseudo-labels from {current.name}, "
                     + ("the centroids of round 1" if kept else f"centroids from {current.name}"))
        manifest = generate_pseudo_labels(current, cfg.target, round_dir / "pseudo", cfg)
        centroids = kept or compute_centroids(current, manifest, round_dir / CENTROIDS_FILE, cfg)
        console.rule(f"stage 2, round {r}: self-training with {cfg.selection} pseudo-label selection")
        stage = run_stage(SelfTrainer, selftrain_config(cfg, current, manifest, centroids),
                          round_dir / "selftrain", console)
        current = stage.weights
        runtime.barrier()  # the main rank logged the signals read here
        after = handed_on_signals(stage.run_dir, stage.metrics)
        results.append(stage)
        signals.append(after)
        rejected = guard_rejects(cfg, r, before, after)
        if rejected:
            return Rounds(results, signals, rejected)
        before = after
    return Rounds(results, signals)


def self_train(cfg: StageConfig, run_dir: str | Path, console: Console | None = None) -> Rounds:
    """Self-training alone, from the warm-up checkpoint ``cfg.init``: one result per round. (The drift
    guard judges from round 2 on: the signals of the checkpoint it starts from are not known here.)"""
    run_dir = Path(run_dir)
    console = main_rank_console(console)
    if not cfg.init:
        raise ConfigError("self-training needs a warm-up checkpoint to start from: --init PATH")
    if not Path(cfg.init).is_file():
        raise ConfigError(f"--init {cfg.init} does not exist (expected a warm-up checkpoint, .safetensors)")
    if not cfg.target:
        raise ConfigError("self-training needs target images: --target KIND:PATH")
    if cfg.rounds < 1:
        raise ConfigError(f"self-training needs at least one round (got rounds={cfg.rounds})")
    with run_lock(run_dir, console):
        start_run(run_dir, cfg)
        return self_training_rounds(cfg, Path(cfg.init), run_dir, console)


@dataclass
class AdaptResult:
    run_dir: Path
    final_weights: Path
    rows: list[tuple[str, float | None]] = field(default_factory=list)
    signals: dict[str, dict[str, float]] = field(default_factory=dict)  # label-free, per pipeline row
    gap_closed: dict | None = None  # references.gap_summary
    final_stage: str = ""  # the row whose model final_weights is (not the last one when the drift guard rejected it)
    drift_guard: str | None = None  # the guard's verdict when it rejected a round


def main_rank_console(console: Console | None) -> Console:
    """``console`` (or a new stderr console) on rank 0; a silent one on the other DDP ranks."""
    if not runtime.is_main():
        return Console(stderr=True, quiet=True)
    return console or Console(stderr=True)


def own_translator_file(run_dir: str | Path) -> Path:
    """Where stage 0 of ``diga adapt`` in ``run_dir`` writes its translator."""
    return Path(run_dir) / "translator" / "weights" / TRANSLATOR_FILE


def adapt_config(cfg: StageConfig, run_dir: str | Path) -> StageConfig:
    """``cfg`` as ``diga adapt`` runs it in ``run_dir``: ``--translator learned`` without a weights file
    means the run trains its own translator first (stage 0), into ``run_dir/translator``."""
    if cfg.translator != "learned" or cfg.translator_weights:
        return cfg
    return cfg.replace(translator_weights=str(own_translator_file(run_dir)))


def train_run_translator(cfg: StageConfig, run_dir: Path, console: Console) -> None:
    """Stage 0 of ``diga adapt``: the authors' learned translator on the run's source and target
    images, at the run's crop and base size; resumes a stopped one, skips a finished one."""
    translator_dir = own_translator_file(run_dir).parent.parent
    if (translator_dir / SUMMARY_FILE).exists():
        return
    if runtime.is_distributed():
        raise ConfigError("stage 0 (the learned translator) trains in one process: run `diga translator --source "
                          "... --target ...` first, then give its file with --translator-weights under torchrun")
    console.rule("stage 0: source -> target translator")
    tcfg = TranslatorConfig(source=cfg.source, target=cfg.target, label_space=cfg.label_space,
                            steps=cfg.translator_steps, crop=cfg.crop, base_size=cfg.base_size,
                            vgg=cfg.translator_vgg, seed=cfg.seed, device=cfg.device, workers=cfg.workers,
                            log_every=cfg.log_every)
    train_translator(tcfg, translator_dir, resume=checkpoint_file(translator_dir).exists(), console=console,
                     resume_hint="re-run the same diga adapt command")


def adapt(cfg: StageConfig, run_dir: str | Path, references: dict[str, Reference] | None = None,
          before: Path | None = None, console: Console | None = None) -> AdaptResult:
    """The whole DiGA pipeline into ``run_dir``; returns the final weights and the mIoU table."""
    run_dir = Path(run_dir)
    console = main_rank_console(console)
    if not cfg.source or not cfg.target:
        raise ConfigError("diga adapt needs --source KIND:PATH and --target KIND:PATH")
    with run_lock(run_dir, console):
        return _adapt(cfg, run_dir, references, before, console)


def _adapt(cfg: StageConfig, run_dir: Path, references: dict[str, Reference] | None, before: Path | None,
           console: Console) -> AdaptResult:
    cfg = adapt_config(cfg, run_dir)
    start_run(run_dir, cfg)
    if cfg.translator == "learned" and Path(cfg.translator_weights) == own_translator_file(run_dir):
        train_run_translator(cfg, run_dir, console)
    console.rule("stage 1: warm-up (symmetric distillation + cross-domain mixture)")
    stage = run_stage(WarmupTrainer, warmup_config(cfg), run_dir / "warmup", console)
    rows: list[tuple[str, float | None]] = [("warm-up", selected_miou(stage.metrics))]
    runtime.barrier()  # every rank reads the warm-up's signals, which the main rank logged
    warmup_signals = handed_on_signals(stage.run_dir, stage.metrics)
    rounds = self_training_rounds(cfg, stage.weights, run_dir, console, init_signals=warmup_signals)
    rows += [(f"self-training round {r} ({cfg.selection})", selected_miou(s.metrics))
             for r, s in enumerate(rounds.results, 1)]
    signals = dict(zip((name for name, _ in rows), [warmup_signals, *rounds.signals]))
    handed_on = [stage, *rounds.kept]
    final_row = rows[len(handed_on) - 1]
    guard = rounds.rejected.describe(final_row[0]) if rounds.rejected else None
    if guard:
        console.print(f"[yellow]{guard}[/]")
    current = handed_on[-1].weights
    final = run_dir / "final.safetensors"
    if runtime.is_main():
        _write_final(current, final, before, run_dir)
    runtime.barrier()
    refs = references or {}
    table = [(refs[k].label, refs[k].miou) for k in ("source_only",) if k in refs] + rows
    table += [(refs[k].label, refs[k].miou) for k in ("oracle",) if k in refs]
    gap = gap_summary(final_row[1], refs, cfg)
    if runtime.is_main():
        atomic_write_text(run_dir / "results.json", json.dumps(
            {"rows": [{"stage": k, "target_val_miou": v, "label_free": signals.get(k)} for k, v in table],
             "final_stage": final_row[0], "drift_guard": guard,
             "gap_closed": gap, "final_weights": str(final), "protocol": _protocol(cfg)}, indent=2) + "\n")
        try:
            from .report import write_report

            write_report(run_dir, table, cfg, before=run_dir / "before.safetensors", signals=signals, gap=gap,
                         notes=[guard] if guard else [])
        except Exception as e:  # a report must never cost the user the trained model
            console.print(f"[yellow]report not written: {e}[/]")
    runtime.barrier()
    return AdaptResult(run_dir, final, table, signals, gap, final_row[0], guard)


def _protocol(cfg: StageConfig) -> str:
    return (f"{cfg.label_space}, mIoU over the target-val confusion matrix, scales "
            f"{list(cfg.eval_scales)} max-fused, model handed on per stage: {_handed_on(cfg)}")


def _handed_on(cfg: StageConfig) -> str:
    if cfg.select != "auto":
        return cfg.select
    return "best (auto, labelled --val data)" if cfg.val else "last (auto, no --val)"


def _write_final(weights: Path, final: Path, before: Path | None, run_dir: Path) -> None:
    state, meta = load_weights(weights)
    before_path = run_dir / "before.safetensors"
    source = before if before is not None and Path(before).exists() else run_dir / "warmup" / "weights" / "last.safetensors"
    if Path(source).exists() and not before_path.exists():
        shutil.copyfile(source, before_path)
        shutil.copyfile(Path(source).with_suffix(".json"), before_path.with_suffix(".json"))
    meta = {**meta, "stage": "final", "before_adaptation": before_path.name, "from": os.path.relpath(weights, run_dir)}
    save_weights(final, state, meta)
