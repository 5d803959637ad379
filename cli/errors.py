"""Turn the library's expected failures into one readable line and a non-zero exit code."""

from __future__ import annotations

import functools
from collections.abc import Callable

import typer
from rich.console import Console

err_console = Console(stderr=True)


def _expected_errors() -> tuple[type[BaseException], ...]:
    from diga.checkpoint import CheckpointError
    from diga.data.errors import DatasetError
    from diga.engine.trainer import NonFiniteLossError, RunExistsError
    from diga.io import DiskFullError

    return (DatasetError, CheckpointError, RunExistsError, NonFiniteLossError, DiskFullError,
            FileNotFoundError, ValueError, RuntimeError)


OOM_HINT = (
    "CUDA ran out of memory. Lower the memory per step: --accumulate N (gradient accumulation: "
    "the same batch in N micro-batches, no accuracy cost from smaller crops), --amp bf16/fp16 if you "
    "forced fp32, a smaller --batch-size or --crop H W; the run can be resumed with --resume."
)


def friendly(fn: Callable) -> Callable:
    """Run a command; expected errors print one message (no traceback) and exit 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        import torch

        try:
            return fn(*args, **kwargs)
        except torch.OutOfMemoryError:
            err_console.print(f"[red]error:[/] {OOM_HINT}")
            raise typer.Exit(1) from None
        except typer.Exit:
            raise
        except _expected_errors() as e:
            if isinstance(e, typer.BadParameter):
                raise
            err_console.print(f"[red]error:[/] {e}")
            raise typer.Exit(1) from None

    return wrapper
