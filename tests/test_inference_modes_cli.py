"""``--mode`` of diga predict / evaluate / benchmark: the chosen mode is printed, a bad one is a usage error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import make_checkpoint


@pytest.fixture()
def small_ckpt(tmp_path) -> Path:
    # trained at half the benchmark's 64x128 images: auto resizes them (4x the pixels)
    return make_checkpoint(tmp_path / "half.safetensors", train_size=[32, 64], crop=[24, 48])


def val_images(tiny_bench) -> Path:
    return Path(tiny_bench["root"]) / "target" / "leftImg8bit" / "val"


def test_predict_prints_the_automatic_mode(cli, tiny_bench, small_ckpt, tmp_path):
    r = cli("predict", val_images(tiny_bench), "--model", small_ckpt, "--out", tmp_path / "o", "--device", "cpu")
    assert r.exit_code == 0, r.output
    assert ("mode: resize (image 64x128 vs training scale 32x64: network input 32x64), chosen from the image size"
            in r.text)
    assert r.text.count("mode: ") == 1  # once per mode, not per image


def test_predict_prints_an_explicit_slide(cli, tiny_bench, small_ckpt, tmp_path):
    r = cli("predict", val_images(tiny_bench), "--model", small_ckpt, "--out", tmp_path / "o", "--mode", "slide",
            "--device", "cpu")
    assert r.exit_code == 0, r.output
    assert "mode: slide (image 64x128 vs training crop 24x48: windows 24x48, stride 16x32)" in r.text
    assert "chosen from the image size" not in r.text
    assert len(list((tmp_path / "o").glob("*_labels.png"))) == 4


def test_evaluate_prints_and_records_the_mode(cli, tiny_bench, small_ckpt, tmp_path):
    out = tmp_path / "m.json"
    r = cli("evaluate", small_ckpt, "--data", tiny_bench["val"], "--scales", "1.0", "--device", "cpu", "--out", out)
    assert r.exit_code == 0, r.output
    assert "mode: resize (image 64x128 vs training scale 32x64" in r.text
    metrics = json.loads(out.read_text())
    assert metrics["mode"].startswith("resize (image 64x128") and metrics["protocol"].endswith("mode auto")


@pytest.mark.parametrize("command", ["predict", "evaluate", "benchmark"])
def test_bad_mode_is_a_usage_error(cli, tiny_bench, small_ckpt, tmp_path, command):
    args = {"predict": ["predict", val_images(tiny_bench), "--model", small_ckpt, "--out", tmp_path / "o"],
            "evaluate": ["evaluate", small_ckpt, "--data", tiny_bench["val"]],
            "benchmark": ["benchmark", small_ckpt]}[command]
    r = cli(*args, "--mode", "tiles")
    assert r.exit_code == 2, r.output
    assert "--mode" in r.text and "auto, whole, resize, slide" in r.text


def test_benchmark_scores_data_in_the_mode(tmp_path, tiny_bench):
    pytest.importorskip("onnxruntime")
    from diga.export.bench import benchmark

    ckpt = make_checkpoint(tmp_path / "b.safetensors", train_size=[32, 64], crop=[24, 48])
    rows = benchmark(ckpt, ["torch"], imgsz=(64, 128), iters=1, warmup=0, device="cpu", data=tiny_bench["val"],
                     max_images=2, mode="slide", log=lambda m: None)
    assert rows[0]["status"] == "ok" and rows[0]["mode"] == "slide" and rows[0]["miou"] >= 0
