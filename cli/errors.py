"""Turn the errors a user can fix into one readable line and a non-zero exit code.

Only ``DigaError`` (and the few OS conditions below) are worded for users; anything else is a bug
and keeps its full traceback. ``diga --debug`` or ``DIGA_DEBUG=1`` shows the traceback of every error.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable

import click
import typer
from rich.console import Console
from rich.markup import escape

from diga.errors import DigaError

err_console = Console(stderr=True)

OOM_HINT = (
    "CUDA ran out of memory. Lower the memory per step: --accumulate N (gradient accumulation: "
    "the same batch in N micro-batches, no accuracy cost from smaller crops), --amp bf16/fp16 if you "
    "forced fp32, a smaller --batch-size or --crop H W; the run can be resumed with --resume."
)

_debug = False


def set_debug(enabled: bool) -> None:
    """Set by the global ``--debug`` option."""
    global _debug
    _debug = enabled


def debug_enabled() -> bool:
    return _debug or os.environ.get("DIGA_DEBUG", "").strip().lower() in ("1", "true", "yes")


def user_message(error: BaseException) -> str | None:
    """The one-line message for an error a user can fix, or None for a bug (keep its traceback)."""
    import torch

    if isinstance(error, torch.OutOfMemoryError):
        return OOM_HINT
    # DiskFullError is a DigaError; a missing file named by the user explains itself.
    if isinstance(error, (DigaError, FileNotFoundError)):
        return str(error)
    return None


def friendly(fn: Callable) -> Callable:
    """Run a command; user errors print one message (no traceback) and exit 1, bugs propagate."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise  # typer.Exit, Ctrl-C and usage errors: click reports them
        except Exception as e:
            message = None if debug_enabled() else user_message(e)
            if message is None:
                raise
            err_console.print(f"[red]error:[/] {escape(message)}", soft_wrap=True, highlight=False)
            raise typer.Exit(1) from None

    return wrapper
