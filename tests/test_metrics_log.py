"""A stage's metrics.jsonl and the per-log-line loss window."""

import torch

from diga.engine.metrics_log import LogWindow, append_metrics, read_metrics


def test_records_come_back_in_order_with_their_time(tmp_path):
    assert read_metrics(tmp_path / "stage") == []
    append_metrics(tmp_path / "stage", {"step": 1, "loss": 2.0})
    append_metrics(tmp_path / "stage", {"step": 2, "loss": 1.5})
    records = read_metrics(tmp_path / "stage")
    assert [(r["step"], r["loss"]) for r in records] == [(1, 2.0), (2, 1.5)]
    assert all(r["time"] > 0 for r in records)


def test_window_averages_the_steps_since_it_last_closed():
    window = LogWindow()
    window.add({"loss": torch.tensor(1.0), "seg": torch.tensor(4.0)})
    window.add({"loss": torch.tensor(3.0), "seg": torch.tensor(0.0)})
    means, rate = window.close()
    assert means == {"loss": 2.0, "seg": 2.0} and rate > 0
    window.add({"loss": torch.tensor(5.0)})
    assert window.close()[0] == {"loss": 5.0}
