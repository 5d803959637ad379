"""Stop a training loop at a step boundary when the user presses Ctrl-C (or a scheduler sends SIGTERM).

A signal only sets a flag; the loop finishes the step in flight and then checkpoints that step, so
the saved state is always one of a completed step (a KeyboardInterrupt raised mid-step could land
between the optimiser and the EMA update). A second signal stops at once, as usual.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

from rich.console import Console

from . import runtime

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class RunInterrupted(KeyboardInterrupt):
    """A run stopped by the user at a step boundary; the message says what was saved and how to continue."""


class StopRequest:
    """Context manager: ``requested`` becomes true on the first SIGINT/SIGTERM.

    Installed only in the main thread of a single-process run: under torchrun the launcher itself
    terminates every rank on Ctrl-C, and the periodic checkpoint is the one to resume from.
    """

    def __init__(self, console: Console) -> None:
        self.console = console
        self.requested = False
        self.signal_name = ""
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread() and not runtime.is_distributed():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        self.signal_name = signal.Signals(signum).name
        self._restore()  # a second Ctrl-C stops at once
        self.console.print(f"[yellow]{self.signal_name}: stopping after the step in progress and saving it "
                           "(press Ctrl-C again to stop at once, without saving)[/]")

    def _restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        self._previous = {}

    def __exit__(self, *exc: object) -> None:
        self._restore()


__all__ = ["RunInterrupted", "StopRequest"]
