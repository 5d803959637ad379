"""What a reference row of the adapt table is: its kind, its training budget, and the gap closed.

References are trained by :func:`diga.engine.benchmark.train_references`; the pipeline only
reports them, so this module holds the plain values and rules both sides share.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from .config import StageConfig

KINDS = {"source_only": "source-only", "oracle": "oracle, target labels"}
STEP_MODES = ("stage", "same")


@dataclass(frozen=True)
class Reference:
    kind: str  # a key of KINDS
    miou: float | None  # target-val mIoU
    steps: int
    weights: Path | None = None

    @property
    def label(self) -> str:
        return f"{KINDS[self.kind]} ({self.steps} steps)"


def pipeline_steps(cfg: StageConfig) -> int:
    """All the training the adapt pipeline does: warm-up + rounds x self-training steps."""
    return cfg.steps + cfg.rounds * (cfg.selftrain_steps or cfg.steps)


def parse_reference_steps(value: str | int) -> str | int:
    """``stage``, ``same`` or a positive number of steps (the value of --reference-steps)."""
    text = str(value).strip().lower()
    if text in STEP_MODES:
        return text
    if text.isdigit() and int(text) > 0:
        return int(text)
    raise ConfigError(f"--reference-steps {value!r}: expected stage (as many steps as the warm-up), "
                      "same (as many as the whole pipeline) or a positive number of steps")


def reference_steps(cfg: StageConfig, mode: str | int) -> int:
    """Steps of each reference: one stage's budget, the whole pipeline's, or a given number."""
    mode = parse_reference_steps(mode)
    if mode == "stage":
        return cfg.steps
    if mode == "same":
        return pipeline_steps(cfg)
    return mode


def gap_closed(final: float | None, source_only: float | None, oracle: float | None) -> float | None:
    """(final - source-only) / (oracle - source-only); None when a value is missing or the gap is 0."""
    if final is None or source_only is None or oracle is None or oracle == source_only:
        return None
    return (final - source_only) / (oracle - source_only)


def gap_summary(final: float | None, refs: dict[str, Reference], cfg: StageConfig) -> dict | None:
    """The gap closed by the final model and what it was measured against (None without both references)."""
    if "source_only" not in refs or "oracle" not in refs:
        return None
    source_only, oracle = refs["source_only"], refs["oracle"]
    return {"value": gap_closed(final, source_only.miou, oracle.miou), "final": final,
            "source_only": source_only.miou, "oracle": oracle.miou,
            "reference_steps": {"source_only": source_only.steps, "oracle": oracle.steps},
            "pipeline_steps": pipeline_steps(cfg)}


def describe_gap(gap: dict | None) -> str | None:
    """``gap closed: 122 % = (41.85 - 21.20) / (38.14 - 21.20); ...`` (None when not measurable)."""
    if not gap or gap["value"] is None:
        return None
    return (f"gap closed: {100 * gap['value']:.0f} % = ({gap['final']:.2f} − {gap['source_only']:.2f}) / "
            f"({gap['oracle']:.2f} − {gap['source_only']:.2f}); references trained "
            f"{gap['reference_steps']['source_only']} steps each, the pipeline {gap['pipeline_steps']}")
