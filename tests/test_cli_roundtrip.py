"""The CLI end to end on a tiny benchmark: train -> evaluate -> predict, warmup, adapt + resume."""

from __future__ import annotations

import json

from PIL import Image


def test_train_evaluate_predict_round_trip(cli, tiny_bench, tmp_path):
    r = cli("train", "--data", tiny_bench["source"], "--val", tiny_bench["val"], "--preset", "cpu",
            "--crop", "48", "96", "--steps", "3", "--workers", "0", "--name", "rt", "--project", tmp_path)
    assert r.exit_code == 0, r.output
    weights = tmp_path / "train/rt/weights/last.safetensors"
    assert weights.exists() and "target-val mIoU" in r.output

    out = tmp_path / "metrics.json"
    r = cli("evaluate", weights, "--data", tiny_bench["val"], "--out", out)
    assert r.exit_code == 0, r.output
    metrics = json.loads(out.read_text())
    assert 0 <= metrics["miou"] <= 100 and len(metrics["iou"]) == 19
    assert "confusion matrix" in metrics["protocol"] and "road" in r.output

    images = tiny_bench["target"].split(":", 1)[1] + "/leftImg8bit/val"
    r = cli("predict", images, "--model", weights, "--out", tmp_path / "pred")
    assert r.exit_code == 0, r.output
    labels = sorted((tmp_path / "pred").rglob("*_labels.png"))
    assert len(labels) == 4
    assert Image.open(labels[0]).size == (128, 64)
    assert sorted((tmp_path / "pred").rglob("*_color.png")) and sorted((tmp_path / "pred").rglob("*_overlay.*"))


def test_warmup_through_the_cli(cli, tiny_bench, tmp_path):
    r = cli("warmup", "--source", tiny_bench["source"], "--target", tiny_bench["target"], "--val", tiny_bench["val"],
            "--preset", "cpu", "--crop", "48", "96", "--steps", "2", "--workers", "0", "--translator", "color",
            "--ema-max", "0.995", "--accumulate", "2", "--name", "w", "--project", tmp_path)
    assert r.exit_code == 0, r.output
    run = tmp_path / "warmup/w"
    assert (run / "weights/last_teacher.safetensors").exists()
    config = (run / "config.yaml").read_text()
    assert "translator: color" in config and "ema_max: 0.995" in config and "accumulate: 2" in config
    bad = cli("warmup", "--source", tiny_bench["source"], "--target", tiny_bench["target"], "--preset", "cpu",
              "--batch-size", "3", "--accumulate", "2", "--name", "bad", "--project", tmp_path)
    assert bad.exit_code != 0 and "accumulate must divide batch_size" in bad.text
    again = cli("warmup", "--source", tiny_bench["source"], "--target", tiny_bench["target"], "--preset", "cpu",
                "--crop", "48", "96", "--steps", "2", "--workers", "0", "--name", "w", "--project", tmp_path)
    assert again.exit_code == 1 and "--resume" in again.text


def test_adapt_through_the_cli_then_rerun_skips_finished_stages(cli, tiny_bench, tmp_path):
    args = ["adapt", "--source", tiny_bench["source"], "--target", tiny_bench["target"], "--val", tiny_bench["val"],
            "--preset", "cpu", "--crop", "48", "96", "--steps", "2", "--selftrain-steps", "2", "--rounds", "2",
            "--workers", "0", "--name", "a", "--project", tmp_path]
    r = cli(*args)
    assert r.exit_code == 0, r.output
    assert "self-training round 2 (dynamic)" in r.text and "final model" in r.text
    run = tmp_path / "adapt/a"
    for name in ("warmup/summary.json", "round2/selftrain/summary.json", "final.safetensors", "report.md"):
        assert (run / name).exists(), name
    stamp = (run / "round1/selftrain/summary.json").stat().st_mtime_ns
    r = cli(*args)
    assert r.exit_code == 0, r.output
    assert (run / "round1/selftrain/summary.json").stat().st_mtime_ns == stamp


def test_adapt_with_a_folder_of_unlabelled_images(cli, tiny_bench, tmp_path):
    folder = tiny_bench["target"].split(":", 1)[1] + "/leftImg8bit/train"
    r = cli("adapt", "--source", tiny_bench["source"], "--target", f"folder:{folder}", "--preset", "cpu",
            "--crop", "48", "96", "--steps", "2", "--selftrain-steps", "2", "--rounds", "1", "--workers", "0",
            "--name", "own", "--project", tmp_path)
    assert r.exit_code == 0, r.output
    assert "no target labels" in r.text
    assert (tmp_path / "adapt/own/final.safetensors").exists()


def test_builtin_benchmark_adapt_without_source_and_target(cli, tmp_path, monkeypatch):
    """`diga adapt` with no data arguments generates the benchmark and trains the references."""
    from diga.engine import benchmark

    monkeypatch.setitem(benchmark.BENCHMARK_DEFAULTS, "n_train", 8)
    monkeypatch.setitem(benchmark.BENCHMARK_DEFAULTS, "n_val", 4)
    monkeypatch.setitem(benchmark.BENCHMARK_DEFAULTS, "size", (64, 128))
    r = cli("adapt", "--steps", "2", "--selftrain-steps", "2", "--rounds", "1", "--crop", "48", "96",
            "--workers", "0", "--project", tmp_path)
    assert r.exit_code == 0, r.output
    for row in ("source-only", "warm-up", "self-training round 1", "oracle"):
        assert row in r.text
    assert (tmp_path / "adapt/synthetic/final.safetensors").exists()


def test_builtin_benchmark_uses_its_own_preset_on_any_device(monkeypatch):
    """With a GPU, `diga adapt` on the 128x256 benchmark keeps the cpu preset's sizes plus the fast path."""
    import torch

    from diga.cli.stages import builtin_benchmark_settings

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert builtin_benchmark_settings(None, None) == ("cpu", None, {})
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert builtin_benchmark_settings(None, None) == ("cpu", "auto", {"channels_last": True})
    assert builtin_benchmark_settings(None, "fp32") == ("cpu", "fp32", {"channels_last": True})
    assert builtin_benchmark_settings("cpu", None) == ("cpu", None, {})
