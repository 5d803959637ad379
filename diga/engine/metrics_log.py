"""A stage's ``metrics.jsonl``: one JSON record a line (losses, evaluations, label-free signals),
appended as training goes, read back by the report, the label-free summaries and the benchmarks."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

FILE_NAME = "metrics.jsonl"


def append_metrics(stage_dir: str | Path, record: dict[str, Any]) -> None:
    """Append ``record`` with the wall-clock time it was logged."""
    stage_dir = Path(stage_dir)
    stage_dir.mkdir(parents=True, exist_ok=True)
    with open(stage_dir / FILE_NAME, "a") as f:
        f.write(json.dumps({"time": round(time.time(), 3), **record}) + "\n")


def read_metrics(stage_dir: str | Path) -> list[dict[str, Any]]:
    """Every record of ``stage_dir/metrics.jsonl`` in order ([] when the stage has logged nothing)."""
    path = Path(stage_dir) / FILE_NAME
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class LogWindow:
    """The losses of the steps since the last log line, summed as tensors (no host sync per step)."""

    def __init__(self) -> None:
        self._start()

    def _start(self) -> None:
        self.sums: dict[str, Any] = {}
        self.steps = 0
        self.started = time.perf_counter()

    def add(self, losses: dict[str, Any]) -> None:
        for k, v in losses.items():
            self.sums[k] = self.sums[k] + v if k in self.sums else v
        self.steps += 1

    def close(self) -> tuple[dict[str, float], float]:
        """(mean of each loss, steps a second) over the window, and start the next one."""
        means = {k: float(v) / self.steps for k, v in self.sums.items()}
        rate = self.steps / (time.perf_counter() - self.started)
        self._start()
        return means, rate
