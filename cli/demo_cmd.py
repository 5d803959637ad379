"""``diga demo``: the Gradio web demo over an adapted (or exported) model."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from diga.export.formats import BACKENDS as MODEL_BACKENDS
from diga.export.formats import CHECKPOINT_SUFFIX, choices

from .errors import friendly

console = Console()
BACKENDS = ("auto", *MODEL_BACKENDS)


def register(app: typer.Typer) -> None:
    app.command()(demo)


@friendly
def demo(
    model: Optional[Path] = typer.Option(
        None, help=f"A {CHECKPOINT_SUFFIX} checkpoint or an exported model "
                   f"(default: the newest runs/adapt/*/final{CHECKPOINT_SUFFIX})."),
    backend: str = typer.Option("auto", help=f"{choices(BACKENDS)}; a checkpoint with an export "
                                "backend loads its export beside it."),
    host: str = typer.Option("127.0.0.1", help="Interface to bind (0.0.0.0 exposes the demo to your network)."),
    port: int = typer.Option(7860, min=1, max=65535, help="Port to serve on."),
    share: bool = typer.Option(False, help="Also open a public *.gradio.live link (needs internet)."),
    device: Optional[str] = typer.Option(None, help="cpu, cuda, cuda:N (default: the backend's choice)."),
    project: Path = typer.Option(Path("runs"), help="Folder of all runs (where the newest model is looked for)."),
    concurrency: int = typer.Option(1, min=1, help="Model runs at once; further requests wait in the queue."),
    max_queue: int = typer.Option(32, min=1, help="Requests that may wait; beyond that users are told to retry."),
    max_file_size: str = typer.Option("20mb", help="Upload size limit per file (e.g. 5mb, 500kb)."),
    max_megapixels: float = typer.Option(2.1, min=0.01, help="Larger images are downscaled (with a notice)."),
    examples: int = typer.Option(4, min=0, help="Synthetic target-domain examples (generated once, cached)."),
    compare: bool = typer.Option(True, help="Offer the before/after comparison when the run has a before model."),
    output_dir: Optional[Path] = typer.Option(
        None, help="Where the demo writes (downloads, uploads); default: a temporary folder removed at exit."),
) -> None:
    """Web demo: upload street images, see the mask, overlay, legend, class shares, before vs after."""
    from diga.demo.app import launch

    if backend not in BACKENDS:
        raise typer.BadParameter(f"{backend!r} is not one of {', '.join(BACKENDS)}", param_hint="--backend")
    _check_size(max_file_size)
    launch(model, backend=backend, host=host, port=port, share=share, device=device, project=project,
           output_dir=output_dir, concurrency=concurrency, max_queue=max_queue, max_file_size=max_file_size,
           max_pixels=int(max_megapixels * 1_000_000), n_examples=examples, compare=compare,
           echo=console.print)


def _check_size(text: str) -> None:
    import re

    if not re.fullmatch(r"\s*\d+(\.\d+)?\s*(b|kb|mb|gb)?\s*", text.lower()):
        raise typer.BadParameter(f"expected a size such as 20mb or 500kb, got {text!r}", param_hint="--max-file-size")
