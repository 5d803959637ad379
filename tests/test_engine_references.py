"""Reference rows of `diga adapt` for any data: budgets, the cache key, the oracle rule, the gap closed."""

from __future__ import annotations

import json

import pytest
from rich.console import Console

from diga.engine import benchmark
from diga.engine.references import (
    Reference,
    describe_gap,
    gap_closed,
    gap_summary,
    parse_reference_steps,
    pipeline_steps,
    reference_steps,
)
from diga.errors import ConfigError
from diga.io import cache_dir


def test_reference_budgets(tiny_cfg):
    cfg = tiny_cfg.replace(steps=1600, selftrain_steps=800, rounds=2)
    assert pipeline_steps(cfg) == 3200
    assert reference_steps(cfg, "stage") == 1600
    assert reference_steps(cfg, "same") == 3200
    assert reference_steps(cfg, "500") == 500
    assert reference_steps(cfg.replace(selftrain_steps=None), "same") == 1600 * 3  # rounds as long as the warm-up
    for bad in ("0", "-3", "all", ""):
        with pytest.raises(ConfigError, match="--reference-steps"):
            parse_reference_steps(bad)


def test_gap_closed_figure(tiny_cfg):
    assert gap_closed(41.85, 21.20, 38.14) == pytest.approx((41.85 - 21.20) / (38.14 - 21.20))
    assert gap_closed(30.0, 20.0, 40.0) == pytest.approx(0.5)
    assert gap_closed(None, 20.0, 40.0) is None and gap_closed(30.0, 20.0, 20.0) is None
    refs = {"source_only": Reference("source_only", 21.20, 3200), "oracle": Reference("oracle", 38.14, 3200)}
    cfg = tiny_cfg.replace(steps=1600, selftrain_steps=800, rounds=2)
    gap = gap_summary(41.85, refs, cfg)
    assert gap["value"] == pytest.approx(1.2190, abs=1e-4)
    assert gap["reference_steps"] == {"source_only": 3200, "oracle": 3200} and gap["pipeline_steps"] == 3200
    assert describe_gap(gap).startswith("gap closed: 122 % = (41.85 − 21.20) / (38.14 − 21.20)")
    assert gap_summary(41.85, {"source_only": refs["source_only"]}, cfg) is None  # no oracle, no gap
    assert refs["oracle"].label == "oracle, target labels (3200 steps)"


def test_cache_key_covers_data_and_steps(tiny_cfg):
    key = benchmark._key(tiny_cfg, tiny_cfg.source)
    assert benchmark._key(tiny_cfg, tiny_cfg.source) == key
    assert benchmark._key(tiny_cfg, tiny_cfg.target) != key
    assert benchmark._key(tiny_cfg.replace(steps=tiny_cfg.steps + 1), tiny_cfg.source) != key
    assert benchmark._key(tiny_cfg.replace(val=tiny_cfg.source), tiny_cfg.source) != key
    # settings the supervised training never reads do not split the cache
    assert benchmark._key(tiny_cfg.replace(rounds=5, threshold=0.5), tiny_cfg.source) == key


def test_cache_key_ignores_settings_at_their_defaults(tiny_cfg, monkeypatch):
    """A setting added with a default that keeps the old behaviour must not retrain every cached
    reference: the key is built from the settings that differ from the defaults only."""
    from dataclasses import asdict

    key = benchmark._key(tiny_cfg, tiny_cfg.source)
    assert tiny_cfg.crop_retry == 0  # at its default
    # the same config as a version without the crop_retry setting sees it
    monkeypatch.setattr(benchmark, "asdict", lambda obj: {k: v for k, v in asdict(obj).items() if k != "crop_retry"})
    assert benchmark._key(tiny_cfg, tiny_cfg.source) == key
    monkeypatch.undo()
    assert benchmark._key(tiny_cfg.replace(crop_retry=5), tiny_cfg.source) != key  # off its default: a new key


def test_oracle_skipped_with_a_message_on_an_unlabelled_folder_target(tiny_cfg, tiny_bench):
    folder = tiny_bench["target"].split(":", 1)[1] + "/leftImg8bit/train"
    cfg = tiny_cfg.replace(target=f"folder:{folder}", eval_every=0, ckpt_every=0, vis_every=0)
    console = Console(record=True, width=200)
    refs = benchmark.train_references(cfg, 1, console)
    assert list(refs) == ["source_only"]
    assert refs["source_only"].steps == 1 and refs["source_only"].weights.exists()
    assert "oracle skipped: it needs target labels" in console.export_text()


def test_references_need_a_labelled_val(tiny_cfg):
    with pytest.raises(ConfigError, match="labelled --val"):
        benchmark.train_references(tiny_cfg.replace(val=None), 1, Console(quiet=True))


def test_adapt_references_for_explicit_data_with_the_pipeline_budget(cli, tiny_bench, tmp_path):
    """The default references are the fair ones: as many steps as the whole pipeline (2 + 1 here)."""
    r = cli("adapt", "--source", tiny_bench["source"], "--target", tiny_bench["target"], "--val", tiny_bench["val"],
            "--preset", "cpu", "--crop", "48", "96", "--steps", "2", "--selftrain-steps", "1", "--rounds", "1",
            "--workers", "0", "--references", "--name", "refs", "--project", tmp_path)
    assert r.exit_code == 0, r.output
    assert "source-only (3 steps)" in r.text and "oracle, target labels (3 steps)" in r.text
    results = json.loads((tmp_path / "adapt/refs/results.json").read_text())
    stages = [row["stage"] for row in results["rows"]]
    assert stages[0] == "source-only (3 steps)" and stages[-1] == "oracle, target labels (3 steps)"
    gap = results["gap_closed"]
    assert gap["reference_steps"] == {"source_only": 3, "oracle": 3} and gap["pipeline_steps"] == 3
    assert gap["value"] == pytest.approx(gap_closed(results["rows"][-2]["target_val_miou"], gap["source_only"],
                                                    gap["oracle"]))
    trained = sorted(p.parent.name.split("-")[0] for p in cache_dir().glob("references/*/summary.json")
                     if json.loads(p.read_text())["steps"] == 3)
    assert trained == ["oracle", "source_only"]
    warmup = next(row for row in results["rows"] if row["stage"] == "warm-up")
    assert set(warmup["label_free"]) == {"entropy", "teacher_agreement", "prototype_agreement", "class_drift"}
    report = (tmp_path / "adapt/refs/report.md").read_text()
    assert "| stage | target-val mIoU | label-free |" in report and "## Label-free signals" in report
    if gap["value"] is not None:
        assert "gap closed:" in r.text and "Gap closed:" in report


def test_mistyped_reference_steps_fail_before_training(cli, tmp_path):
    r = cli("adapt", "--reference-steps", "twice", "--project", tmp_path)
    assert r.exit_code != 0
    assert "--reference-steps 'twice'" in r.text
    assert not (tmp_path / "adapt").exists()


def test_references_side_by_side_train_what_one_at_a_time_trains(tiny_cfg, tmp_path, monkeypatch):
    """On a CPU the two references train at once, one process and half the threads each: the same
    weights, bit for bit, as training them one after the other with that many threads."""
    import torch

    from diga.checkpoint import load_weights

    cfg = tiny_cfg.replace(steps=2, eval_every=0, ckpt_every=0, vis_every=0, workers=0, device="cpu")
    monkeypatch.setenv("DIGA_CACHE", str(tmp_path / "side_by_side"))
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)  # this process "has" 2 threads: 1 per reference
    assert benchmark.side_by_side(cfg)
    console = Console(record=True, width=200)
    together = benchmark.train_references(cfg, 2, console)
    assert "side by side (1 CPU thread each)" in console.export_text()
    assert all((benchmark.reference_dir(kind, cfg, 2) / "console.log").is_file() for kind in together)

    monkeypatch.undo()  # the real thread count again
    monkeypatch.setenv("DIGA_CACHE", str(tmp_path / "one_at_a_time"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        alone = {kind: benchmark.reference(kind, cfg, 2, Console(quiet=True)) for kind in ("source_only", "oracle")}
    finally:
        torch.set_num_threads(threads)
    for kind in ("source_only", "oracle"):
        assert together[kind].weights != alone[kind].weights and together[kind].miou == alone[kind].miou
        a, b = load_weights(together[kind].weights)[0], load_weights(alone[kind].weights)[0]
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
