"""Serving the demo: :func:`serve` a built app, :func:`launch` what ``diga demo`` does.

The pieces: :mod:`diga.demo.discovery` (which model, loading it), :mod:`diga.demo.logic`
(what a request does), :mod:`diga.demo.layout` (the Gradio page). Files written: only under
the demo's output directory (a fresh temporary directory unless ``output_dir`` is given):
the requests' files and Gradio's own upload/cache folder ``gradio/``.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

from diga.errors import DigaError

from .discovery import display_name, load_models
from .inputs import MAX_PIXELS
from .logic import make_output_dir

DEFAULT_MAX_FILE_SIZE = "20mb"


class PortInUseError(DigaError, ValueError):
    """The server could not bind its port."""


def serve(demo, host: str = "127.0.0.1", port: int | None = 7860, share: bool = False,
          max_file_size: str | int | None = DEFAULT_MAX_FILE_SIZE, prevent_thread_lock: bool = False,
          quiet: bool = False):
    """Launch a built app (:func:`diga.demo.layout.build_app`): binds ``host`` (loopback by default),
    limits uploads to ``max_file_size``, serves files from the demo's output directory only."""
    allowed = [str(demo.diga_output_dir)]
    try:
        return demo.launch(server_name=host, server_port=port, share=share, max_file_size=max_file_size,
                           prevent_thread_lock=prevent_thread_lock, quiet=quiet, show_error=False,
                           allowed_paths=allowed, footer_links=["api"], ssr_mode=False)
    except OSError as e:
        if "port" in str(e).lower():
            raise PortInUseError(f"cannot serve on {host}:{port}: the port is in use or not allowed; "
                                 "choose another with --port") from None
        raise


def launch(
    model: str | Path | None = None,
    backend: str = "auto",
    host: str = "127.0.0.1",
    port: int | None = 7860,
    share: bool = False,
    *,
    device: str | None = None,
    project: str | Path = "runs",
    output_dir: str | Path | None = None,
    concurrency: int = 1,
    max_queue: int = 32,
    max_file_size: str | int | None = DEFAULT_MAX_FILE_SIZE,
    max_pixels: int = MAX_PIXELS,
    n_examples: int = 4,
    compare: bool = True,
    prevent_thread_lock: bool = False,
    echo=print,
):
    """``diga demo``: resolve and load the model (and its before-adaptation model), then serve."""
    from .examples import ensure_examples
    from .layout import build_app

    # first: "no model" or a missing export must not depend on (or leave) anything else
    models = load_models(model, backend, device=device, project=project, compare=compare, warn=echo)
    out_dir = make_output_dir(output_dir)
    # Gradio's uploads and served copies go inside the demo's own folder too.
    os.environ.setdefault("GRADIO_TEMP_DIR", str(out_dir / "gradio"))
    examples = ensure_examples(n_examples)
    demo = build_app(models.predictor, models.before, examples, model_name=display_name(models.path),
                     output_dir=out_dir, concurrency=concurrency, max_queue=max_queue, max_pixels=max_pixels)
    echo(f"model {models.path} (backend {models.predictor.backend}, device {models.predictor.device})"
         + (f"; before adaptation: {models.before_path}" if models.before is not None
            else "; no before-adaptation model"))
    if not prevent_thread_lock and threading.current_thread() is threading.main_thread():
        # `kill` (SIGTERM) stops like Ctrl+C: the server closes and the temporary folder is removed.
        signal.signal(signal.SIGTERM, _interrupt)
    serve(demo, host, port, share, max_file_size, prevent_thread_lock)
    return demo


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt
