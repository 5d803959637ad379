"""``diga translator``: train the learned source -> target translator (stage 0)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from . import options as opt
from .errors import friendly
from .options import check_spec

console = Console()


def register(app: typer.Typer) -> None:
    app.command()(translator)


@friendly
def translator(
    source: str = typer.Option(..., help="Labelled source data, KIND:PATH (gta5, synthia, cityscapes, folder)."),
    target: str = typer.Option(..., help="Target images, KIND:PATH (labels not needed)."),
    steps: Optional[int] = typer.Option(None, min=1, help="Training steps (authors: 50000)."),
    batch_size: Optional[int] = typer.Option(None, min=1, help="Source and target crops per step (authors: 2)."),
    crop: Optional[tuple[int, int]] = typer.Option(None, help=(
        "Crop height and width, multiples of 4, at least 64 (authors: 512 896).")),
    base_size: Optional[str] = typer.Option(None, help=(
        "HxW every image is resized to before the random scale (1-1.5) and crop, or none to crop the images at "
        "their own size, e.g. when they are smaller than 720x1280 (authors: 720x1280).")),
    lr: Optional[float] = typer.Option(None, min=0.0, help="Adam learning rate, poly decay (authors: 1e-4)."),
    width: Optional[int] = typer.Option(None, min=1, help=(
        "Channels of the translator's first layer (authors: 64); narrower trains faster, e.g. on a CPU.")),
    res_blocks: Optional[int] = typer.Option(None, min=0, help="Residual blocks per encoder and decoder (authors: 4)."),
    vgg: str = typer.Option("imagenet", help=f"VGG-19 of the perceptual loss: {opt.VGG_CHOICES}."),
    label_space: Optional[str] = opt.LABEL_SPACE, seed: Optional[int] = opt.SEED,
    device: Optional[str] = opt.DEVICE, workers: Optional[int] = opt.WORKERS,
    name: str = opt.name_option("translator"), project: Path = opt.PROJECT,
    resume: bool = opt.resume_option("translator"),
) -> None:
    """Stage 0: train the source -> target image translator; use it with --translator learned --translator-weights."""
    from diga.engine.translator import TranslatorConfig, train_translator
    from diga.errors import ConfigError

    given = dict(steps=steps, batch_size=batch_size, crop=crop, lr=lr, width=width, res_blocks=res_blocks,
                 label_space=label_space, seed=seed, device=device, workers=workers)
    settings = {k: v for k, v in given.items() if v is not None}
    if base_size is not None:
        settings["base_size"] = opt.size_or_none(base_size, "--base-size")
    try:
        cfg = TranslatorConfig(source=check_spec(source, "--source"), target=check_spec(target, "--target"), vgg=vgg,
                               **settings).validate()
    except ConfigError as e:
        raise typer.BadParameter(str(e)) from None
    result = train_translator(cfg, opt.run_dir(project, "translator", name), resume=resume)
    console.print(f"preview: {result.preview}")
    console.print(f"translator: [bold]{result.weights}[/]  (use: --translator learned --translator-weights "
                  f"{result.weights})", soft_wrap=True)
