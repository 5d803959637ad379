"""The drift guard of `diga adapt`: a self-training round that raises the class drift on the target by
more than ``drift_guard`` ends the rounds, and the model before it is what the run hands on."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from diga.checkpoint import read_metadata
from diga.engine import pipeline
from diga.engine.config import preset
from diga.errors import ConfigError


@pytest.mark.parametrize("before, after, limit, rejected", [
    (0.30, 0.95, 0.3, True),    # night's collapse: +0.65
    (0.21, 0.30, 0.3, False),   # a round that gains on rain: +0.09
    (0.30, 0.95, 0.0, False),   # off
    (None, 0.95, 0.3, False),   # the starting model's drift is not known
])
def test_guard_rejects_a_round_only_past_its_limit(before, after, limit, rejected):
    cfg = preset("cpu").replace(drift_guard=limit)
    start = None if before is None else {"class_drift": before}
    verdict = pipeline.guard_rejects(cfg, 1, start, {"class_drift": after})
    assert (verdict is not None) == rejected
    if rejected:
        assert (verdict.round, verdict.drift_before, verdict.drift_after) == (1, before, after)


@pytest.mark.parametrize("value", [-0.1, 2.5])
def test_drift_guard_outside_0_2_is_refused(value):
    with pytest.raises(ConfigError, match=r"drift_guard must be in \[0, 2\]"):
        preset("cpu").replace(drift_guard=value).validate()


def _fake_drift(monkeypatch, drifts: dict[str, float]) -> list[str]:
    """handed_on_signals as if each stage folder (warmup, selftrain of round N) had logged this drift;
    returns the list of the stages read, in order."""
    real = pipeline.handed_on_signals
    reads: list[str] = []

    def fake(stage_dir, summary):
        key = "warmup" if stage_dir.name == "warmup" else stage_dir.parent.name
        reads.append(key)
        return {**real(stage_dir, summary), "class_drift": drifts[key]}

    monkeypatch.setattr(pipeline, "handed_on_signals", fake)
    return reads


def test_a_rejected_round_hands_on_the_warm_up_and_stops_the_rounds(tiny_cfg, tmp_path, monkeypatch):
    _fake_drift(monkeypatch, {"warmup": 0.3, "round1": 1.1, "round2": 1.4})
    run = tmp_path / "adapt"
    result = pipeline.adapt(tiny_cfg.replace(rounds=2, drift_guard=0.3), run)

    assert not (run / "round2").exists()  # round 2 would have started from the rejected model
    assert [name for name, _ in result.rows] == ["warm-up", "self-training round 1 (dynamic)"]
    assert result.final_stage == "warm-up"
    warm = load_file(str(run / "warmup/weights/last.safetensors"))
    final = load_file(str(run / "final.safetensors"))
    assert final.keys() == warm.keys() and all((final[k] == warm[k]).all() for k in warm)
    assert read_metadata(run / "final.safetensors")["from"] == "warmup/weights/last.safetensors"
    results = json.loads((run / "results.json").read_text())
    assert results["final_stage"] == "warm-up"
    assert "round 1 raised the class drift on the target from 0.300 to 1.100" in results["drift_guard"]
    assert "drift guard" in (run / "report.md").read_text().lower()

    # Re-running the finished run reaches the same verdict from its files.
    again = pipeline.adapt(tiny_cfg.replace(rounds=2, drift_guard=0.3), run)
    assert again.final_stage == "warm-up" and again.rows == result.rows


def test_a_round_within_the_guard_is_kept(tiny_cfg, tmp_path, monkeypatch):
    reads = _fake_drift(monkeypatch, {"warmup": 0.3, "round1": 0.4, "round2": 0.45})
    run = tmp_path / "adapt"
    result = pipeline.adapt(tiny_cfg.replace(rounds=2, drift_guard=0.3), run)
    assert result.final_stage == "self-training round 2 (dynamic)" and result.drift_guard is None
    assert read_metadata(run / "final.safetensors")["from"] == "round2/selftrain/weights/last.safetensors"
    results = json.loads((run / "results.json").read_text())
    assert results["drift_guard"] is None
    # Each stage's signals are read once, and the guard's values are the ones the table shows.
    assert reads == ["warmup", "round1", "round2"]
    assert [row["label_free"]["class_drift"] for row in results["rows"]] == [0.3, 0.4, 0.45]


def test_the_cli_rejects_a_guard_past_2(cli, tiny_bench):
    result = cli("adapt", "--source", tiny_bench["source"], "--target", tiny_bench["target"], "--drift-guard", "3")
    assert result.exit_code != 0 and "--drift-guard" in result.text and "less than or equal to 2" in result.text


def test_older_config_files_mean_no_guard_and_references_ignore_it():
    from diga.engine import benchmark
    from diga.engine.config import StageConfig

    assert preset("cpu").drift_guard == preset("gpu").drift_guard == 0.3
    assert [preset(p).drift_guard for p in ("paper", "paper-synthia", "paper-dg", "paper-semi")] == [0.0] * 4
    old = "\n".join(line for line in preset("cpu").to_yaml().splitlines() if not line.startswith("drift_guard:"))
    assert StageConfig.from_yaml(old).drift_guard == 0.0  # a run started before the guard keeps its meaning
    assert "drift_guard" in benchmark._BOOKKEEPING  # the cached references never read it
