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
