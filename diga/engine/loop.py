"""The step loop every training stage shares (the segmentation stages' Trainer and the translator):
progress bar, logging windows, periodic work and a clean stop at a step boundary."""

from __future__ import annotations

from typing import Any, Callable, ContextManager

import torch
from rich.console import Console
from rich.progress import Progress

from .metrics_log import LogWindow
from .stopping import StopRequest


def run_steps(progress: ContextManager[Progress], console: Console, stage: str, start: int, steps: int,
              log_every: int, step: Callable[[int], dict[str, torch.Tensor]],
              log: Callable[[dict[str, float], int, float], dict[str, Any]],
              after_step: Callable[[int], None], stop_at: Callable[[int, str], None]) -> None:
    """Steps ``start`` .. ``steps - 1``: ``step(i)`` returns the step's losses (tensors, averaged over
    each window of ``log_every`` steps); ``log(mean_losses, i, steps_per_s)`` records a window and
    returns the record (its ``loss`` goes into the progress bar); ``after_step(done)`` does the
    periodic work (checkpoints, evaluation, previews); ``stop_at(done, signal)`` saves and raises
    when Ctrl-C/SIGTERM asked to stop."""
    window = LogWindow()
    with progress as bar, StopRequest(console) as stop:
        task = bar.add_task(stage, total=steps, completed=start)
        for i in range(start, steps):
            window.add(step(i))
            done = i + 1
            bar.update(task, advance=1)
            if done % log_every == 0 or done == steps:
                mean, rate = window.close()
                record = log(mean, i, rate)
                bar.update(task, description=f"{stage} loss {record['loss']:.3f}")
            after_step(done)
            if stop.requested:
                bar.stop()
                stop_at(done, stop.signal_name)
