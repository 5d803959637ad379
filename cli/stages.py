"""The DiGA stage commands: ``warmup``, ``selftrain`` and the whole pipeline, ``adapt``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from . import options as opt
from .errors import friendly
from .options import build_config, check_spec

if TYPE_CHECKING:
    from diga.engine.config import StageConfig

console = Console()
Size = Optional[tuple[int, int]]


def register(app: typer.Typer) -> None:
    app.command()(warmup)
    app.command()(selftrain)
    app.command()(adapt)


def _config(options: dict[str, Any], base_size_params: dict[str, str] | None = None, **overrides: Any) -> StageConfig:
    """The config a stage command's ``options`` (its parameters) describe: the preset or --config file,
    with every option given that is named like a setting, then ``overrides`` (options whose setting
    has another name or value type), then the base-size lists given on the command line, which win over
    a command's own value for them (``base_size_params``: parameter -> the setting it sets)."""
    from diga.engine.config import field_names

    given = {k: v for k, v in options.items() if k in field_names()}
    given.update(source=check_spec(options["source"], "--source"), target=check_spec(options["target"], "--target"),
                 val=check_spec(options["val"], "--val"))
    if "pretrained" in given:
        given["pretrained"] = opt.pretrained_value(given["pretrained"])
    given.update(overrides)
    lists = opt.base_size_settings(_base_size_options(options, base_size_params or BASE_SIZE_PARAMS),
                                   options["preset"], options["config"], options["batch_size"],
                                   options.get("selftrain_batch_size"))
    given.update({k: v for k, v in lists.items() if v is not None})
    # file options (--translator-weights, --init) are settings as plain strings, as config.yaml holds them
    given = {k: str(v) if isinstance(v, Path) else v for k, v in given.items()}
    return build_config(options["preset"], options["config"], **given)


# The per-dataset base-size parameters of the stage commands -> the setting each sets.
BASE_SIZE_PARAMS = {param: f"{param}s" for param in (
    "source_base_size", "target_base_size", "selftrain_source_base_size", "selftrain_target_base_size")}
# `diga selftrain` runs self-training alone: its --source-base-size / --target-base-size are that stage's lists.
SELFTRAIN_BASE_SIZE_PARAMS = {"source_base_size": "selftrain_source_base_sizes",
                              "target_base_size": "selftrain_target_base_sizes"}


def _base_size_options(options: dict[str, Any], params: dict[str, str]) -> dict[str, tuple[str, list[str] | None]]:
    """setting -> (option, values given) for the base-size parameters among ``options``."""
    return {setting: ("--" + param.replace("_", "-"), options[param]) for param, setting in params.items()
            if param in options}


@friendly
def warmup(
    source: Optional[str] = opt.SOURCE, target: Optional[str] = opt.TARGET, val: Optional[str] = opt.VAL,
    config: Optional[Path] = opt.CONFIG, preset: Optional[str] = opt.PRESET, model: Optional[str] = opt.MODEL,
    steps: Optional[int] = opt.STEPS, batch_size: Optional[int] = opt.BATCH_SIZE,
    accumulate: Optional[int] = opt.ACCUMULATE, crop: Size = opt.CROP, lr: Optional[float] = opt.LR,
    distil: Optional[bool] = typer.Option(None, "--distil/--no-distil", help=(
        "Symmetric distillation from the EMA teacher (default: on).")),
    mix: Optional[bool] = typer.Option(None, "--mix/--no-mix", help=(
        "Cross-domain class mixture for the second view (default: on).")),
    translator: Optional[str] = opt.TRANSLATOR, ema_max: Optional[float] = opt.EMA_MAX,
    translator_weights: Optional[Path] = opt.TRANSLATOR_WEIGHTS,
    backbone_bn_affine: Optional[str] = opt.BACKBONE_BN_AFFINE,
    base_resize: Optional[str] = opt.BASE_RESIZE, crop_fill: Optional[str] = opt.CROP_FILL,
    scale_mode: Optional[str] = opt.SCALE_MODE,
    mix_count: Optional[str] = opt.MIX_COUNT, crop_retry: Optional[int] = opt.CROP_RETRY,
    source_base_size: Optional[list[str]] = opt.SOURCE_BASE_SIZE,
    target_base_size: Optional[list[str]] = opt.TARGET_BASE_SIZE,
    distil_resolution: Optional[str] = opt.DISTIL_RESOLUTION, teacher_mode: Optional[str] = opt.TEACHER_MODE,
    blend_space: Optional[str] = opt.BLEND_SPACE, augment_ops: Optional[str] = opt.AUGMENT_OPS,
    loss_norm: Optional[str] = opt.LOSS_NORM, warmup_target_bn: Optional[bool] = opt.WARMUP_TARGET_BN,
    loss: Optional[str] = opt.LOSS, ohem_threshold: Optional[float] = opt.OHEM_THRESHOLD,
    ohem_min_kept: Optional[int] = opt.OHEM_MIN_KEPT, warmup_lr_schedule: Optional[str] = opt.WARMUP_LR_SCHEDULE,
    aux_weight: Optional[float] = opt.AUX_WEIGHT,
    head_norm: Optional[str] = opt.HEAD_NORM,
    backbone_layout: Optional[str] = opt.BACKBONE_LAYOUT, input_norm: Optional[str] = opt.INPUT_NORM,
    label_space: Optional[str] = opt.LABEL_SPACE, pretrained: Optional[str] = opt.PRETRAINED,
    amp: Optional[str] = opt.AMP, eval_every: Optional[int] = opt.EVAL_EVERY, select: Optional[str] = opt.SELECT,
    compile: Optional[bool] = opt.COMPILE, sync_bn: Optional[bool] = opt.SYNC_BN, seed: Optional[int] = opt.SEED,
    device: Optional[str] = opt.DEVICE, workers: Optional[int] = opt.WORKERS,
    name: str = opt.name_option("warmup"), project: Path = opt.PROJECT, resume: bool = opt.resume_option("warmup"),
) -> None:
    """Stage 1: warm-up by symmetric distillation with the cross-domain mixture (--no-distil --no-mix: source-only)."""
    options = dict(locals())  # the parameters, before any other local exists
    from diga.engine.pipeline import train_stage
    from diga.engine.warmup import WarmupTrainer

    # The warm-up never reads self-training's base sizes or batch size: a preset's must not block another
    # batch size (nor, with the lists cleared, disagree with the warm-up's lists).
    cfg = _config(options, selftrain_source_base_sizes=(), selftrain_target_base_sizes=(),
                  selftrain_batch_size=opt.stage_batch_size("warmup", preset, config, batch_size))
    if not cfg.source:
        raise typer.BadParameter("the warm-up needs labelled source data (KIND:PATH)", param_hint="--source")
    result = train_stage(WarmupTrainer, cfg, opt.run_dir(project, "warmup", name), resume=resume)
    print_stage_result(result)


@friendly
def selftrain(
    init: Optional[Path] = typer.Option(None, help=(
        "Warm-up checkpoint (student) to start from; needed unless --config gives it.")),
    source: Optional[str] = opt.SOURCE, target: Optional[str] = opt.TARGET, val: Optional[str] = opt.VAL,
    config: Optional[Path] = opt.CONFIG, preset: Optional[str] = opt.PRESET,
    steps: Optional[int] = typer.Option(None, min=0, help="Steps per round."),
    rounds: Optional[int] = typer.Option(None, min=1, help=(
        "Rounds, each regenerating pseudo-labels and centroids (default 1, or the --config file's).")),
    batch_size: Optional[int] = opt.BATCH_SIZE, accumulate: Optional[int] = opt.ACCUMULATE, crop: Size = opt.CROP,
    lr: Optional[float] = opt.LR, selection: Optional[str] = opt.SELECTION, threshold: Optional[float] = opt.THRESHOLD,
    centroid_update: Optional[str] = opt.CENTROID_UPDATE, centroid_min_pixels: Optional[int] = opt.CENTROID_MIN_PIXELS,
    translator: Optional[str] = opt.TRANSLATOR, ema_max: Optional[float] = opt.EMA_MAX,
    translator_weights: Optional[Path] = opt.TRANSLATOR_WEIGHTS,
    backbone_bn_affine: Optional[str] = opt.BACKBONE_BN_AFFINE,
    base_resize: Optional[str] = opt.BASE_RESIZE, crop_fill: Optional[str] = opt.CROP_FILL,
    scale_mode: Optional[str] = opt.SCALE_MODE,
    mix_count: Optional[str] = opt.MIX_COUNT, crop_retry: Optional[int] = opt.CROP_RETRY,
    source_base_size: Optional[list[str]] = opt.SELFTRAIN_SOURCE_BASE_SIZE,
    target_base_size: Optional[list[str]] = opt.SELFTRAIN_TARGET_BASE_SIZE,
    distil_resolution: Optional[str] = opt.DISTIL_RESOLUTION, teacher_mode: Optional[str] = opt.TEACHER_MODE,
    blend_space: Optional[str] = opt.BLEND_SPACE, augment_ops: Optional[str] = opt.AUGMENT_OPS,
    student_forward: Optional[str] = opt.STUDENT_FORWARD,
    target_mix_ignore: Optional[str] = opt.TARGET_MIX_IGNORE, select_upsample: Optional[str] = opt.SELECT_UPSAMPLE,
    loss_norm: Optional[str] = opt.LOSS_NORM, pseudo_size: Optional[str] = opt.PSEUDO_SIZE,
    centroid_labels: Optional[str] = opt.CENTROID_LABELS, centroids_per_round: Optional[str] = opt.CENTROIDS_PER_ROUND,
    centroid_mean: Optional[str] = opt.CENTROID_MEAN, centroid_images: Optional[str] = opt.CENTROID_IMAGES,
    loss: Optional[str] = opt.LOSS, ohem_threshold: Optional[float] = opt.OHEM_THRESHOLD,
    ohem_min_kept: Optional[int] = opt.OHEM_MIN_KEPT, aux_weight: Optional[float] = opt.AUX_WEIGHT,
    input_norm: Optional[str] = opt.INPUT_NORM,
    label_space: Optional[str] = opt.LABEL_SPACE, amp: Optional[str] = opt.AMP,
    eval_every: Optional[int] = opt.EVAL_EVERY, select: Optional[str] = opt.SELECT,
    drift_guard: Optional[float] = opt.DRIFT_GUARD,
    compile: Optional[bool] = opt.COMPILE, sync_bn: Optional[bool] = opt.SYNC_BN, seed: Optional[int] = opt.SEED,
    device: Optional[str] = opt.DEVICE, workers: Optional[int] = opt.WORKERS,
    name: str = opt.name_option("selftrain", " (re-running it resumes, with the same settings)"),
    project: Path = opt.PROJECT,
) -> None:
    """Stage 2: self-training with dynamic pseudo-label selection, from a warm-up checkpoint (resumes by itself)."""
    options = dict(locals())  # the parameters, before any other local exists
    from diga.engine.pipeline import self_train

    if rounds is None and config is None:
        rounds = 1  # one round unless asked (the rounds default of the config is adapt's)
    # --steps and --batch-size are this stage's (selftrain_steps; both batch fields, so that nothing is
    # checked against a warm-up batch that never runs). The lists self-training reads become its own
    # (given here, else the config's self-training lists, else the warm-up's it would take) and the
    # warm-up's are cleared: all are checked against the batch this stage runs with.
    batch = opt.stage_batch_size("selftrain", preset, config, selftrain_batch_size=batch_size)
    base = opt.base_config(preset, config)
    read_lists = {f"selftrain_{side}_base_sizes": getattr(base, f"selftrain_{side}_base_sizes")
                  or getattr(base, f"{side}_base_sizes") for side in ("source", "target")}
    cfg = _config({**options, "batch_size": None, "selftrain_batch_size": batch}, SELFTRAIN_BASE_SIZE_PARAMS,
                  steps=None, selftrain_steps=steps, rounds=rounds, batch_size=batch, selftrain_batch_size=batch,
                  source_base_sizes=(), target_base_sizes=(), **read_lists)
    rounds = self_train(cfg, opt.run_dir(project, "selftrain", name), console)
    if rounds.rejected:
        console.print(f"[yellow]{rounds.rejected.describe(f'self-training round {rounds.rejected.round - 1}')}[/]")
    print_stage_result(rounds.kept[-1])


@friendly
def adapt(
    source: Optional[str] = opt.SOURCE, target: Optional[str] = opt.TARGET, val: Optional[str] = opt.VAL,
    config: Optional[Path] = opt.CONFIG, preset: Optional[str] = opt.PRESET,
    rounds: Optional[int] = typer.Option(None, min=0, help="Self-training rounds (default 2)."),
    name: Optional[str] = typer.Option(None, help=(
        "Run name: runs/adapt/NAME (default: synthetic for the built-in benchmark, else exp; re-running it "
        "resumes, with the same settings).")),
    model: Optional[str] = opt.MODEL, steps: Optional[int] = typer.Option(None, min=0, help="Warm-up steps."),
    selftrain_steps: Optional[int] = typer.Option(None, min=0, help="Steps per self-training round."),
    batch_size: Optional[int] = opt.BATCH_SIZE, selftrain_batch_size: Optional[int] = opt.SELFTRAIN_BATCH_SIZE,
    accumulate: Optional[int] = opt.ACCUMULATE, crop: Size = opt.CROP,
    lr: Optional[float] = opt.LR, selection: Optional[str] = opt.SELECTION, threshold: Optional[float] = opt.THRESHOLD,
    centroid_update: Optional[str] = opt.CENTROID_UPDATE, centroid_min_pixels: Optional[int] = opt.CENTROID_MIN_PIXELS,
    translator: Optional[str] = opt.TRANSLATOR, ema_max: Optional[float] = opt.EMA_MAX,
    translator_weights: Optional[Path] = opt.TRANSLATOR_WEIGHTS,
    translator_steps: Optional[int] = opt.TRANSLATOR_STEPS, translator_vgg: Optional[str] = opt.TRANSLATOR_VGG,
    backbone_bn_affine: Optional[str] = opt.BACKBONE_BN_AFFINE,
    base_resize: Optional[str] = opt.BASE_RESIZE, crop_fill: Optional[str] = opt.CROP_FILL,
    scale_mode: Optional[str] = opt.SCALE_MODE,
    mix_count: Optional[str] = opt.MIX_COUNT, crop_retry: Optional[int] = opt.CROP_RETRY,
    source_base_size: Optional[list[str]] = opt.SOURCE_BASE_SIZE,
    target_base_size: Optional[list[str]] = opt.TARGET_BASE_SIZE,
    selftrain_source_base_size: Optional[list[str]] = opt.ADAPT_SELFTRAIN_SOURCE_BASE_SIZE,
    selftrain_target_base_size: Optional[list[str]] = opt.ADAPT_SELFTRAIN_TARGET_BASE_SIZE,
    distil_resolution: Optional[str] = opt.DISTIL_RESOLUTION, teacher_mode: Optional[str] = opt.TEACHER_MODE,
    blend_space: Optional[str] = opt.BLEND_SPACE, augment_ops: Optional[str] = opt.AUGMENT_OPS,
    student_forward: Optional[str] = opt.STUDENT_FORWARD,
    target_mix_ignore: Optional[str] = opt.TARGET_MIX_IGNORE, select_upsample: Optional[str] = opt.SELECT_UPSAMPLE,
    pseudo_size: Optional[str] = opt.PSEUDO_SIZE,
    centroid_labels: Optional[str] = opt.CENTROID_LABELS, centroids_per_round: Optional[str] = opt.CENTROIDS_PER_ROUND,
    centroid_mean: Optional[str] = opt.CENTROID_MEAN, centroid_images: Optional[str] = opt.CENTROID_IMAGES,
    loss_norm: Optional[str] = opt.LOSS_NORM, warmup_target_bn: Optional[bool] = opt.WARMUP_TARGET_BN,
    loss: Optional[str] = opt.LOSS, ohem_threshold: Optional[float] = opt.OHEM_THRESHOLD,
    ohem_min_kept: Optional[int] = opt.OHEM_MIN_KEPT, warmup_lr_schedule: Optional[str] = opt.WARMUP_LR_SCHEDULE,
    aux_weight: Optional[float] = opt.AUX_WEIGHT,
    head_norm: Optional[str] = opt.HEAD_NORM,
    backbone_layout: Optional[str] = opt.BACKBONE_LAYOUT, input_norm: Optional[str] = opt.INPUT_NORM,
    label_space: Optional[str] = opt.LABEL_SPACE, pretrained: Optional[str] = opt.PRETRAINED, amp: Optional[str] = opt.AMP,
    eval_every: Optional[int] = opt.EVAL_EVERY, select: Optional[str] = opt.SELECT,
    drift_guard: Optional[float] = opt.DRIFT_GUARD,
    compile: Optional[bool] = opt.COMPILE, sync_bn: Optional[bool] = opt.SYNC_BN, seed: Optional[int] = opt.SEED,
    device: Optional[str] = opt.DEVICE, workers: Optional[int] = opt.WORKERS, project: Path = opt.PROJECT,
    references: Optional[bool] = typer.Option(None, "--references/--no-references", help=(
        "Also train (once, cached) a source-only reference on --source and an oracle on the target's own labels "
        "(skipped when the target has none), scored on the labelled --val, and report the gap closed (default: "
        "on for the built-in benchmark, off otherwise).")),
    reference_steps: str = typer.Option("same", help=(
        "Training steps of each reference: same (as many as the whole pipeline: warm-up + rounds x "
        "self-training, so that the gap closed compares equal training), stage (as many as the warm-up) "
        "or a number.")),
) -> None:
    """The whole DiGA pipeline: warm-up -> pseudo-labels -> centroids -> self-training x rounds -> evaluation.

    With no --source/--target (and no --config) it runs the built-in synthetic benchmark (generated once, cached).
    """
    options = dict(locals())  # the parameters, before any other local exists
    from diga.engine import benchmark, runtime
    from diga.engine.pipeline import adapt as run_adapt
    from diga.engine.pipeline import adapt_config, check_same_settings
    from diga.engine.references import parse_reference_steps
    from diga.engine.references import reference_steps as reference_steps_of
    from diga.engine.rundir import run_lock

    parse_reference_steps(reference_steps)  # a mistyped value fails before any training
    runtime.init_distributed_from_env()
    builtin = source is None and target is None and config is None
    if builtin:
        bench = benchmark.synthetic_benchmark()
        source, target, val = bench["source"], bench["target"], val or bench["val"]
    elif config is None and (source is None or target is None):
        raise typer.BadParameter("give both --source and --target, or neither for the built-in benchmark")
    gpu_speedups = {}
    if builtin and preset is None:
        preset, amp, gpu_speedups = builtin_benchmark_settings(device, amp)
    cfg = _config({**options, "source": source, "target": target, "val": val, "preset": preset, "amp": amp},
                  **gpu_speedups)
    run_dir = opt.run_dir(project, "adapt", name or ("synthetic" if builtin else "exp"))
    cfg = adapt_config(cfg, run_dir)
    with run_lock(run_dir):  # taken before the references: a refused run should cost nothing
        check_same_settings(run_dir, cfg)
        refs = {}
        if builtin if references is None else references:
            refs = benchmark.train_references(cfg, reference_steps_of(cfg, reference_steps), console)
        before = refs["source_only"].weights if "source_only" in refs else None
        result = run_adapt(cfg, run_dir, references=refs, before=before)
    if runtime.is_main():
        _print_table(result)


def builtin_benchmark_settings(device: str | None, amp: str | None) -> tuple[str, str | None, dict]:
    """(preset, amp, extra overrides) for the built-in benchmark when no --preset is given.

    Its images are 128x256, so the cpu preset is the one sized for them whatever the device (the
    gpu preset's 512x896 crops of upscaled images would cost an hour and show nothing new). On a
    GPU the run keeps the fast path: bf16 autocast (unless --amp says otherwise) and channels_last.
    """
    from diga.engine import runtime

    if runtime.resolve_device(device or "auto").type == "cuda":
        return "cpu", amp or "auto", {"channels_last": True}
    return "cpu", amp, {}


def print_stage_result(result) -> None:
    """The final target-val mIoU of a stage (student, teacher) and the weights it hands on."""
    final = result.metrics.get("final", {})
    for role in ("student", "teacher"):
        if final.get(role):
            console.print(f"target-val mIoU ({role}): [bold]{final[role]['miou']:.2f}[/]")
    console.print(f"weights: {result.weights}")


def _print_table(result) -> None:
    from diga.engine.labelfree import describe
    from diga.engine.references import describe_gap

    table = Table(title=f"target-val mIoU — {result.run_dir}")
    table.add_column("stage")
    table.add_column("mIoU", justify="right")
    table.add_column("label-free (target training images)")
    for stage, miou in result.rows:
        table.add_row(stage, "— (no target labels)" if miou is None else f"{miou:.2f}",
                      describe(result.signals[stage]) if stage in result.signals else "")
    console.print(table)
    gap = describe_gap(result.gap_closed)
    if gap:
        console.print(gap)
    if result.drift_guard:
        console.print(f"[yellow]{result.drift_guard}[/]")
    console.print(f"final model: [bold]{result.final_weights}[/]  report: {result.run_dir / 'report.md'}")
