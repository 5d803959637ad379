"""``diga generalize``: train on the source alone (no target image), score on unseen labelled datasets."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from . import options as opt
from .errors import friendly
from .options import build_config, check_spec

console = Console()
Size = Optional[tuple[int, int]]


def register(app: typer.Typer) -> None:
    app.command()(generalize)


@friendly
def generalize(
    source: Optional[str] = opt.SOURCE,
    evals: list[str] = typer.Option([], "--eval", help=(
        "Unseen labelled dataset to score the final model on, KIND:PATH (split 'val' for cityscapes); "
        "repeat for several.")),
    config: Optional[Path] = opt.CONFIG, preset: Optional[str] = opt.PRESET, model: Optional[str] = opt.MODEL,
    steps: Optional[int] = opt.STEPS, batch_size: Optional[int] = opt.BATCH_SIZE, crop: Size = opt.CROP,
    lr: Optional[float] = opt.LR, pretrained: Optional[str] = opt.PRETRAINED, seed: Optional[int] = opt.SEED,
    backbone_layout: Optional[str] = opt.BACKBONE_LAYOUT, input_norm: Optional[str] = opt.INPUT_NORM,
    device: Optional[str] = opt.DEVICE, workers: Optional[int] = opt.WORKERS,
    source_base_size: Optional[list[str]] = opt.SOURCE_BASE_SIZE,
    val: Optional[str] = typer.Option(None, help=(
        "Labelled data scored during training, KIND:PATH; with --select best or auto the run hands on its best "
        "step on it (the authors' DG script keeps its best Cityscapes-val step: model selection on a domain "
        "it then reports as unseen).")),
    select: Optional[str] = opt.SELECT,
    bn_images: Optional[str] = typer.Option(None, help=(
        "Unlabelled images, KIND:PATH, that every step also passes through the student in train mode, without "
        "gradients, so that its BatchNorm statistics follow them (the authors' DG script does this with "
        "Cityscapes train crops; off by default: it shows the model a domain it is then scored on).")),
    name: str = opt.name_option("generalize", " (re-running it resumes, with the same settings)"),
    project: Path = opt.PROJECT,
) -> None:
    """Domain generalisation: warm-up distillation on the source alone (no target image), then mIoU per --eval set."""
    from diga.engine import runtime
    from diga.engine.generalization import RESULTS_FILE
    from diga.engine.generalization import generalize as run_generalize

    from .tables import print_dataset_table

    if not evals:
        raise typer.BadParameter("give at least one unseen labelled dataset (KIND:PATH); repeat for several",
                                 param_hint="--eval")
    evals = [check_spec(spec, "--eval") for spec in evals]
    cfg = build_config(preset, config, source=check_spec(source, "--source"), model=model, steps=steps,
                       batch_size=batch_size, crop=crop, lr=lr, pretrained=opt.pretrained_value(pretrained),
                       backbone_layout=backbone_layout, input_norm=input_norm, seed=seed, device=device, workers=workers,
                       val=check_spec(val, "--val"), select=select,
                       # no target images and no self-training: a preset's other base-size lists do not apply
                       **opt.base_size_settings({"source_base_sizes": ("--source-base-size", source_base_size)},
                                                preset, config, batch_size),
                       target_base_sizes=(), selftrain_source_base_sizes=(), selftrain_target_base_sizes=())
    if not cfg.source:
        raise typer.BadParameter("domain generalisation needs labelled source data (KIND:PATH)", param_hint="--source")
    bn_images = check_spec(bn_images, "--bn-images")
    result = run_generalize(cfg, opt.run_dir(project, "generalize", name), evals, console, bn_images=bn_images)
    if runtime.is_main():
        print_dataset_table(console, result.rows, f"mIoU on unseen datasets — {result.run_dir}")
        console.print(f"weights: {result.weights}  results: {result.run_dir / RESULTS_FILE}")
