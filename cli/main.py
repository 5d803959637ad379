"""The ``diga`` command line: each command parses options, calls one library function, prints."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from . import options as opt
from .errors import friendly, set_debug
from .options import build_config, check_spec

app = typer.Typer(
    help="DiGA domain adaptation for semantic segmentation: adapt, evaluate, export, serve.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Datasets: generate the built-in synthetic benchmark.", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console()

Size = Optional[tuple[int, int]]


@app.callback()
def global_options(
    debug: bool = typer.Option(False, "--debug", help="Show the full traceback of any error (or set DIGA_DEBUG=1)."),
) -> None:
    """DiGA domain adaptation for semantic segmentation: adapt, evaluate, export, serve."""
    set_debug(debug)


@data_app.command("synth")
@friendly
def data_synth(
    out: Path = typer.Option(Path("data/synth"), help="Output folder."),
    n_train: int = typer.Option(400, min=1, help="Images per domain for training."),
    n_val: int = typer.Option(100, min=1, help="Validation images per domain."),
    size: tuple[int, int] = typer.Option((128, 256), help="Image height and width."),
    seed: int = typer.Option(0, help="Random seed (same seed, same files)."),
    gap: float = typer.Option(0.5, min=0.0, max=1.0, help=(
        "Target style between the flat source style (0) and the full textured, hazy camera style (1); 0.5 is "
        "the built-in benchmark's, so the defaults write the benchmark `diga adapt` runs without data.")),
    condition: list[str] = typer.Option([], "--condition", help=(
        "Shift the target domain: NAME[:STRENGTH] with NAME one of camera, texture, fog, rain, night, color "
        "and STRENGTH in (0, 1] (default 1); repeat to combine (applied in that fixed order).")),
) -> None:
    """Generate the synthetic two-domain street benchmark (source: GTA5 layout, target: Cityscapes layout)."""
    from diga.data.synth import generate_benchmark, parse_conditions
    from diga.errors import ConfigError
    from diga.io import ensure_output_dir

    try:
        conditions = parse_conditions(condition)
    except ConfigError as e:
        raise typer.BadParameter(str(e), param_hint="--condition") from None
    ensure_output_dir(out, "--out")
    root = generate_benchmark(out, n_train=n_train, n_val=n_val, size=size, seed=seed, gap=gap,
                              conditions=conditions)
    console.print(f"benchmark in [bold]{root}[/]: source={root / 'source'} (gta5), "
                  f"source_val={root / 'source_val'} (gta5), target={root / 'target'} (cityscapes)")


@app.command()
@friendly
def train(
    data: Optional[str] = typer.Option(None, help=(
        "Labelled training data, KIND:PATH (gta5, synthia, cityscapes, folder); needed unless --config gives it.")),
    val: Optional[str] = typer.Option(None, help="Labelled validation data, KIND:PATH (split 'val' for cityscapes)."),
    config: Optional[Path] = opt.CONFIG, preset: Optional[str] = opt.PRESET, model: Optional[str] = opt.MODEL,
    steps: Optional[int] = opt.STEPS, batch_size: Optional[int] = opt.BATCH_SIZE,
    accumulate: Optional[int] = opt.ACCUMULATE, crop: Size = opt.CROP, lr: Optional[float] = opt.LR,
    label_space: Optional[str] = opt.LABEL_SPACE, pretrained: Optional[str] = opt.PRETRAINED,
    head_norm: Optional[str] = opt.HEAD_NORM, loss: Optional[str] = opt.LOSS,
    ohem_threshold: Optional[float] = opt.OHEM_THRESHOLD, ohem_min_kept: Optional[int] = opt.OHEM_MIN_KEPT,
    backbone_layout: Optional[str] = opt.BACKBONE_LAYOUT, input_norm: Optional[str] = opt.INPUT_NORM,
    amp: Optional[str] = opt.AMP, eval_every: Optional[int] = opt.EVAL_EVERY, select: Optional[str] = opt.SELECT,
    compile: Optional[bool] = opt.COMPILE, sync_bn: Optional[bool] = opt.SYNC_BN, seed: Optional[int] = opt.SEED,
    device: Optional[str] = opt.DEVICE, workers: Optional[int] = opt.WORKERS,
    name: str = opt.name_option("train"), project: Path = opt.PROJECT, resume: bool = opt.resume_option("train"),
) -> None:
    """Supervised training (source-only baseline or target oracle)."""
    from diga.engine.pipeline import train_stage
    from diga.engine.supervised import SupervisedTrainer

    from .stages import print_stage_result

    cfg = build_config(preset, config, source=check_spec(data, "--data"), val=check_spec(val, "--val"), model=model,
                       steps=steps, batch_size=batch_size, accumulate=accumulate, crop=crop, lr=lr,
                       label_space=label_space, pretrained=opt.pretrained_value(pretrained), head_norm=head_norm,
                       backbone_layout=backbone_layout, input_norm=input_norm,
                       loss=loss, ohem_threshold=ohem_threshold, ohem_min_kept=ohem_min_kept, amp=amp, eval_every=eval_every, select=select, compile=compile, sync_bn=sync_bn, seed=seed,
                       device=device, workers=workers,
                       # supervised training takes its whole batch from base_size: a preset's (or config
                       # file's) per-dataset base sizes do not apply
                       source_base_sizes=(), target_base_sizes=(), selftrain_source_base_sizes=(),
                       selftrain_target_base_sizes=())
    if not cfg.source:
        raise typer.BadParameter("training needs labelled data (KIND:PATH)", param_hint="--data")
    result = train_stage(SupervisedTrainer, cfg, opt.run_dir(project, "train", name), resume=resume)
    print_stage_result(result)


@app.command()
@friendly
def evaluate(
    weights: Path = typer.Argument(..., help="A diga checkpoint (.safetensors)."),
    data: list[str] = typer.Option(..., help="Labelled data, KIND:PATH; repeat to score several datasets "
                                   "(one table row each)."),
    split: str = typer.Option("val", help="Split for cityscapes, bdd100k and mapillary."),
    scales: str = typer.Option("1.0,0.5", help="Comma-separated scales, max-fused."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N."),
    out: Optional[Path] = typer.Option(None, help="Write the metrics as JSON here (several datasets: "
                                       "{\"datasets\": [...]})."),
    mode: str = typer.Option("auto", help="Inference mode: whole, resize (to the training scale), slide "
                             "(windows of the training crop) or auto (by image size vs training scale)."),
    amp: Optional[str] = opt.AMP,
) -> None:
    """mIoU, per-class IoU and pixel accuracy of a checkpoint on a labelled dataset (or a row per dataset)."""
    from diga.engine.evaluation import evaluate_datasets
    from diga.io import atomic_write_text, check_output_file

    from .tables import print_class_table, print_dataset_table

    if out:
        check_output_file(out, "--out")  # before minutes of evaluation, not after

    from .options import check_mode_option

    specs = [check_spec(spec, "--data") for spec in data]
    results = evaluate_datasets(weights, specs, split=split, scales=_floats(scales, "--scales"), device=device,
                                mode=check_mode_option(mode), amp=opt.amp_value(amp),
                                log=lambda m: console.print(m, highlight=False, markup=False, soft_wrap=True))
    if len(results) == 1:
        metrics = {key: value for key, value in results[0].items() if key != "data"}
        print_class_table(console, metrics, f"{weights.name} on {data[0]} ({metrics['protocol']})")
        body = metrics
    else:
        print_dataset_table(console, results, f"{weights.name} ({results[0]['protocol']})")
        body = {"weights": str(weights), "datasets": results}
    if out:
        atomic_write_text(out, json.dumps(body, indent=2) + "\n")
        console.print(f"written {out}")


def _floats(text: str, option: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated numbers, got {text!r}", param_hint=option) from None
    if not values or any(not math.isfinite(v) or v <= 0 for v in values):
        raise typer.BadParameter(f"expected finite positive scales, got {text!r}", param_hint=option)
    return values


@app.command()
def info() -> None:
    """Versions, devices, ONNX Runtime providers and TensorRT availability."""
    from diga.engine.evaluation import environment_info

    table = Table(title="diga environment", show_header=False)
    for key, value in environment_info().items():
        table.add_row(key, str(value))
    console.print(table)


def _register_commands() -> None:
    """Commands that live beside their subsystem: the stages, deployment and the demo."""
    from . import demo_cmd, deploy, generalize_cmd, stages, translator_cmd

    stages.register(app)
    translator_cmd.register(app)
    generalize_cmd.register(app)
    deploy.register(app)
    demo_cmd.register(app)


_register_commands()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
