"""`diga export`, `diga predict`, `diga benchmark` through the real Typer app (CliRunner)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_checkpoint

pytest.importorskip("onnxruntime")



def run(*args):
    from typer.testing import CliRunner

    from diga.cli.main import app

    return CliRunner().invoke(app, [str(a) for a in args])


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("cli") / "m.safetensors", seed=1)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """A folder with awkward names, a subfolder with a duplicate stem, and one corrupt file."""
    from PIL import Image

    root = tmp_path_factory.mktemp("imgs")
    (root / "sub").mkdir()
    rng = np.random.default_rng(0)
    for name in ("street 1.png", "straße é.jpg", "..hidden-ish.png", "sub/street 1.png"):
        Image.fromarray(rng.integers(0, 256, (48, 80, 3), dtype=np.uint8)).save(root / name)
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 10)
    return root


def test_export_labels_cli(ckpt, tmp_path):
    import onnxruntime as ort

    from diga.export.graph import DeployModule

    out = tmp_path / "labels.onnx"
    res = run("export", ckpt, "--format", "onnx", "--output", "labels", "--dynamic", "--out", out)
    text = flat(res.output)
    assert res.exit_code == 0, res.output
    assert "max |Δlogit| n/a (labels output)" in text and "argmax agreement 100.000%" in text
    assert "dynamo=True" in text and f"exported {out}" in text
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert sess.get_outputs()[0].name == "labels"
    x = torch.randn(2, 3, 48, 96)
    labels = sess.run(None, {"images": x.numpy()})[0]
    from diga.checkpoint import load_model

    model, _ = load_model(ckpt)
    with torch.no_grad():
        ref = DeployModule(model)(x).argmax(1).numpy()
    assert labels.dtype == np.uint8 and labels.shape == (2, 48, 96) and (labels == ref).mean() > 0.999


def test_export_cli_errors(ckpt, tmp_path):
    res = run("export", tmp_path / "nope.safetensors")
    assert res.exit_code == 1 and "checkpoint not found" in flat(res.output)
    res = run("export", ckpt, "--format", "tflite")
    assert res.exit_code == 1 and "unknown export format 'tflite'" in flat(res.output)
    res = run("export", ckpt, "--format", "tensorrt", "--int8")
    assert res.exit_code == 1 and "--calib" in flat(res.output)


def test_predict_folder_writes_safe_names(ckpt, images, tmp_path):
    out = tmp_path / "pred"
    # folders skip hidden files; a dot-file given by name is used (and its output is not hidden)
    res = run("predict", images, images / "sub", images / "..hidden-ish.png", "--weights", ckpt, "--out", out,
              "--batch", "2")
    text = flat(res.output)
    assert res.exit_code == 1  # one image was corrupt
    assert "broken.png" in text and "could not be read" in text and "4 image(s) segmented" in text
    names = sorted(p.name for p in out.iterdir())
    stems = {n.rsplit("_", 1)[0] for n in names}
    assert stems == {"street 1", "street 1_2", "straße é", "hidden-ish"}, names
    assert all(p.parent == out for p in out.iterdir())
    from PIL import Image

    labels = np.asarray(Image.open(out / "street 1_labels.png"))
    assert labels.shape == (48, 80) and labels.max() < 19
    assert Image.open(out / "straße é_color.png").mode == "RGB"
    assert Image.open(out / "street 1_2_overlay.jpg").size == (80, 48)


def test_predict_onnx_matches_checkpoint(ckpt, images, tmp_path):
    from PIL import Image

    onnx_path = tmp_path / "m.onnx"
    assert run("export", ckpt, "--dynamic", "--out", onnx_path, "--exporter", "torchscript").exit_code == 0
    good = images / "street 1.png"
    for name, model in (("a", ckpt), ("b", onnx_path)):
        res = run("predict", good, "--model", model, "--out", tmp_path / name)
        assert res.exit_code == 0, res.output
    a = np.asarray(Image.open(tmp_path / "a" / "street 1_labels.png"))
    b = np.asarray(Image.open(tmp_path / "b" / "street 1_labels.png"))
    assert (a == b).mean() > 0.999


def test_predict_errors(ckpt, tmp_path):
    res = run("predict", tmp_path / "missing.png", "--model", ckpt, "--out", tmp_path / "o")
    assert res.exit_code == 1 and "missing.png does not exist" in flat(res.output)
    (tmp_path / "m.bin").write_bytes(b"x")
    (tmp_path / "x.png").write_bytes(b"x")
    res = run("predict", tmp_path / "x.png", "--model", tmp_path / "m.bin", "--out", tmp_path / "o")
    assert res.exit_code == 1 and "unknown model format '.bin'" in flat(res.output)
    empty = tmp_path / "empty"
    empty.mkdir()
    res = run("predict", empty, "--model", ckpt, "--out", tmp_path / "o")
    assert res.exit_code == 1 and "holds no image files" in flat(res.output)


def test_safe_stem():
    from diga.export.images import OutputNamer, safe_stem

    assert safe_stem("../../etc/passwd") == "passwd"
    assert safe_stem("..") == "image" and safe_stem("...png") == "image"
    assert safe_stem("a\\..\\b.png") == "b"
    assert safe_stem("..evil.png") == "evil"
    assert safe_stem("x\x00y:z.png") == "x_y_z"
    assert safe_stem("日本 語.jpg") == "日本 語"
    assert len(safe_stem("é" * 300 + ".png").encode()) <= 180
    namer = OutputNamer("/tmp/out")
    assert [namer.stem(p) for p in ("a/x.png", "b/x.png", "c/X.jpg")] == ["x", "x_2", "X_3"]


def test_benchmark_cli(ckpt, tmp_path):
    out = tmp_path / "bench.json"
    res = run("benchmark", ckpt, "--backends", "torch,onnx", "--imgsz", "32", "64", "--batch", "2",
              "--warmup", "1", "--iters", "2", "--json", out)
    assert res.exit_code == 0, res.output
    rows = json.loads(out.read_text())
    assert [r["backend"] for r in rows] == ["torch", "onnx"]
    for r in rows:
        assert r["status"] == "ok" and r["p50_ms"] > 0 and r["p90_ms"] >= r["p50_ms"] * 0.999
        assert r["images_per_s"] > 0 and r["peak_mem_mb"] >= 0 and r["agreement"] >= 99.9
        assert r["imgsz"] == [32, 64] and r["batch"] == 2
    res = run("benchmark", ckpt, "--backends", "torch,openvino")
    assert res.exit_code == 1 and "unknown backend(s) openvino" in flat(res.output)


def test_benchmark_scores_every_backend_on_labelled_data(ckpt, tiny_bench, tmp_path):
    """--data: each backend's mIoU through the same Predictor pipeline; ONNX matches PyTorch."""
    out = tmp_path / "bench.json"
    res = run("benchmark", ckpt, "--backends", "torch,onnx", "--imgsz", "64", "128", "--warmup", "0",
              "--iters", "1", "--data", tiny_bench["val"], "--max-images", "3", "--json", out)
    assert res.exit_code == 0, res.output
    rows = json.loads(out.read_text())
    assert all(r["status"] == "ok" and r["miou_images"] == 3 and 0 < r["miou"] <= 100 for r in rows)
    assert abs(rows[0]["miou"] - rows[1]["miou"]) < 0.5
    assert "mIoU" in res.output
    unlabelled = tmp_path / "frames"
    unlabelled.mkdir()
    from PIL import Image

    Image.new("RGB", (128, 64)).save(unlabelled / "a.png")
    res = run("benchmark", ckpt, "--backends", "torch", "--data", f"folder:{unlabelled}")
    assert res.exit_code == 1 and "needs labelled images" in flat(res.output)
