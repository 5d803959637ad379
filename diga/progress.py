"""The one progress bar every long loop uses (training, pseudo-labels, prediction, data generation)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class _RateColumn(ProgressColumn):
    """Items per second (e.g. images/s or frames/s), blank until rich has a speed estimate."""

    def render(self, task: Task) -> Text:
        return Text("" if task.speed is None else f"{task.speed:.1f}/s")


def progress_bar(console: Console | None = None, *, enabled: bool = True, transient: bool = False,
                 rate: bool = False) -> Progress:
    """A rich ``Progress`` with description, bar, done/total and time left.

    ``enabled=False`` gives a silent bar (non-zero DDP ranks); ``rate=True`` adds items per second.
    """
    columns: list[ProgressColumn] = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()]
    if rate:
        columns.append(_RateColumn())
    columns.append(TimeRemainingColumn())
    return Progress(*columns, console=console, disable=not enabled, transient=transient)
