"""The DiGA stage commands: ``warmup``, ``selftrain`` and the whole pipeline, ``adapt``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from .errors import friendly
from .options import build_config, check_spec

console = Console()
Size = Optional[tuple[int, int]]


def _common(preset, source, target, val, model, steps, batch_size, crop, lr, translator, seed, device,
            workers, label_space, amp, accumulate=None, **extra):
    if translator is not None and translator not in ("fda", "color", "none"):
        raise typer.BadParameter(f"{translator!r} is not one of fda, color, none", param_hint="--translator")
    return build_config(
        preset, source=check_spec(source, "--source"), target=check_spec(target, "--target"),
        val=check_spec(val, "--val"), model=model, steps=steps, batch_size=batch_size, crop=crop, lr=lr,
        translator=translator, seed=seed, device=device, workers=workers, label_space=label_space, amp=amp,
        accumulate=accumulate, **extra,
    )


SOURCE = typer.Option(None, help="Labelled source data, KIND:PATH (gta5, synthia, cityscapes, folder).")
TARGET = typer.Option(None, help="Target images, KIND:PATH (labels not needed; 'folder:DIR' for your own).")
VAL = typer.Option(None, help="Labelled target validation data, KIND:PATH (optional).")
PRESET = typer.Option(None, help="cpu, gpu or paper (default: gpu if CUDA is available, else cpu).")
ACCUMULATE = typer.Option(None, min=1, help=(
    "Gradient accumulation: split each batch into this many micro-batches (less GPU memory, same "
    "effective batch; must divide --batch-size)."))
EMA_MAX = typer.Option(None, min=0.0, max=1.0, help=(
    "Cap of the EMA teacher's momentum (paper and gpu presets: 0.999; cpu preset: 0.99, which keeps "
    "the teacher from lagging in runs of a few thousand steps; see docs/BENCHMARKS.md)."))


def register(app: typer.Typer) -> None:
    app.command()(warmup)
    app.command()(selftrain)
    app.command()(adapt)


@friendly
def warmup(
    source: Optional[str] = SOURCE, target: Optional[str] = TARGET, val: Optional[str] = VAL,
    preset: Optional[str] = PRESET, model: Optional[str] = typer.Option(None),
    steps: Optional[int] = typer.Option(None, min=0),
    batch_size: Optional[int] = typer.Option(None, min=1),
    accumulate: Optional[int] = ACCUMULATE,
    crop: Size = typer.Option(None, help="Crop height and width."), lr: Optional[float] = typer.Option(None, min=0.0),
    distil: bool = typer.Option(True, help="Symmetric distillation from the EMA teacher."),
    mix: bool = typer.Option(True, help="Cross-domain class mixture for the second view."),
    translator: Optional[str] = typer.Option(None, help="fda, color or none."),
    ema_max: Optional[float] = EMA_MAX,
    label_space: Optional[str] = typer.Option(None), amp: Optional[str] = typer.Option(None, help="auto, bf16, fp16, fp32."),
    seed: Optional[int] = typer.Option(None), device: Optional[str] = typer.Option(None),
    workers: Optional[int] = typer.Option(None, min=0),
    name: str = typer.Option("exp", help="Run name: runs/warmup/NAME."), project: Path = typer.Option(Path("runs")),
    resume: bool = typer.Option(False, help="Continue runs/warmup/NAME from its last checkpoint."),
) -> None:
    """Stage 1: warm-up by symmetric distillation with the cross-domain mixture (--no-distil --no-mix: source-only)."""
    from diga.engine.warmup import WarmupTrainer

    cfg = _common(preset, source, target, val, model, steps, batch_size, crop, lr, translator, seed, device,
                  workers, label_space, amp, accumulate, distil=distil, mix=mix, ema_max=ema_max)
    result = WarmupTrainer(cfg, project / "warmup" / name, resume=resume).run()
    _print_stage(result)


@friendly
def selftrain(
    init: Path = typer.Option(..., help="Warm-up checkpoint (student) to start from."),
    source: Optional[str] = SOURCE, target: Optional[str] = TARGET, val: Optional[str] = VAL,
    preset: Optional[str] = PRESET, steps: Optional[int] = typer.Option(None, min=0),
    rounds: int = typer.Option(1, min=1, help="Rounds; each regenerates pseudo-labels and centroids."),
    batch_size: Optional[int] = typer.Option(None, min=1),
    accumulate: Optional[int] = ACCUMULATE, crop: Size = typer.Option(None),
    lr: Optional[float] = typer.Option(None, min=0.0),
    selection: Optional[str] = typer.Option(None, help="dynamic (DiGA), threshold or none."),
    threshold: Optional[float] = typer.Option(None, min=0.0, max=1.0, help="Confidence for --selection threshold."),
    translator: Optional[str] = typer.Option(None), label_space: Optional[str] = typer.Option(None),
    amp: Optional[str] = typer.Option(None), seed: Optional[int] = typer.Option(None),
    device: Optional[str] = typer.Option(None), workers: Optional[int] = typer.Option(None, min=0),
    name: str = typer.Option("exp", help="Run name: runs/selftrain/NAME."), project: Path = typer.Option(Path("runs")),
) -> None:
    """Stage 2: self-training with dynamic pseudo-label selection, from a warm-up checkpoint (resumes by itself)."""
    from diga.engine.pipeline import run_stage, selftrain_config
    from diga.engine.pseudolabels import compute_centroids, generate_pseudo_labels
    from diga.engine.selftrain import SelfTrainer

    cfg = _common(preset, source, target, val, None, steps, batch_size, crop, lr, translator, seed, device,
                  workers, label_space, amp, accumulate, selection=selection, threshold=threshold)
    if not init.is_file():
        raise typer.BadParameter(f"{init} does not exist", param_hint="--init")
    if not cfg.target:
        raise typer.BadParameter("self-training needs target images", param_hint="--target")
    current, run_dir = init, project / "selftrain" / name
    for r in range(1, rounds + 1):
        rd = run_dir / f"round{r}"
        manifest = generate_pseudo_labels(current, cfg.target, rd / "pseudo", cfg)
        centroids = compute_centroids(current, manifest, rd / "centroids.safetensors", cfg)
        result = run_stage(SelfTrainer, selftrain_config(cfg, current, manifest, centroids), rd / "selftrain")
        current = result.weights
    _print_stage(result)


@friendly
def adapt(
    source: Optional[str] = SOURCE, target: Optional[str] = TARGET, val: Optional[str] = VAL,
    preset: Optional[str] = PRESET, rounds: Optional[int] = typer.Option(None, min=0, help="Self-training rounds (default 2)."),
    name: Optional[str] = typer.Option(None, help="Run name: runs/adapt/NAME (re-running it resumes)."),
    model: Optional[str] = typer.Option(None), steps: Optional[int] = typer.Option(None, min=0, help="Warm-up steps."),
    selftrain_steps: Optional[int] = typer.Option(None, min=0, help="Steps per self-training round."),
    batch_size: Optional[int] = typer.Option(None, min=1),
    accumulate: Optional[int] = ACCUMULATE, crop: Size = typer.Option(None),
    lr: Optional[float] = typer.Option(None, min=0.0),
    selection: Optional[str] = typer.Option(None, help="dynamic (DiGA), threshold or none."),
    translator: Optional[str] = typer.Option(None, help="fda, color or none."),
    ema_max: Optional[float] = EMA_MAX,
    label_space: Optional[str] = typer.Option(None), amp: Optional[str] = typer.Option(None),
    seed: Optional[int] = typer.Option(None), device: Optional[str] = typer.Option(None),
    workers: Optional[int] = typer.Option(None, min=0), project: Path = typer.Option(Path("runs")),
    references: bool = typer.Option(True, help="On the synthetic benchmark, also train (once, cached) the source-only and oracle references."),
) -> None:
    """The whole DiGA pipeline: warm-up -> pseudo-labels -> centroids -> self-training x rounds -> evaluation.

    With no --source/--target it runs the built-in synthetic benchmark (generated once, cached).
    """
    from diga.engine import benchmark, runtime
    from diga.engine.pipeline import adapt as run_adapt

    runtime.init_distributed_from_env()
    builtin = source is None and target is None
    if builtin:
        bench = benchmark.synthetic_benchmark()
        source, target, val = bench["source"], bench["target"], val or bench["val"]
    elif source is None or target is None:
        raise typer.BadParameter("give both --source and --target, or neither for the built-in benchmark")
    gpu_speedups = {}
    if builtin and preset is None:
        preset, amp, gpu_speedups = builtin_benchmark_settings(device, amp)
    cfg = _common(preset, source, target, val, model, steps, batch_size, crop, lr, translator, seed, device,
                  workers, label_space, amp, accumulate, rounds=rounds, selftrain_steps=selftrain_steps,
                  selection=selection, ema_max=ema_max, **gpu_speedups)
    refs, before = {}, None
    if builtin and references:
        refs["source_only"], before = benchmark.reference("source_only", cfg, bench, console)
        refs["oracle"], _ = benchmark.reference("oracle", cfg, bench, console)
    run_name = name or ("synthetic" if builtin else "exp")
    result = run_adapt(cfg, project / "adapt" / run_name, references=refs, before=before)
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


def _print_stage(result) -> None:
    final = result.metrics.get("final", {})
    for role in ("student", "teacher"):
        if final.get(role):
            console.print(f"target-val mIoU ({role}): [bold]{final[role]['miou']:.2f}[/]")
    console.print(f"weights: {result.weights}")


def _print_table(result) -> None:
    table = Table(title=f"target-val mIoU — {result.run_dir}")
    table.add_column("stage")
    table.add_column("mIoU", justify="right")
    for stage, miou in result.rows:
        table.add_row(stage, "— (no target labels)" if miou is None else f"{miou:.2f}")
    console.print(table)
    console.print(f"final model: [bold]{result.final_weights}[/]  report: {result.run_dir / 'report.md'}")
