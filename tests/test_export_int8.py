"""INT8 (diga.export.quantize): a QDQ ONNX graph calibrated on a folder of target images, loaded by
the Predictor; calibration reading, the metadata, the parity gate and the errors (CPU, tiny sizes)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import make_checkpoint

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from diga.export import ExportError, Predictor, export_model, read_export_metadata  # noqa: E402
from diga.export.formats import export_path  # noqa: E402
from diga.export.graph import prepare  # noqa: E402
from diga.export.parity import THRESHOLDS  # noqa: E402
from diga.export.quantize import (  # noqa: E402
    DEFAULT_METHOD,
    CalibrationImages,
    calibration_files,
    settings_for,
)

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def quiet(_m: str) -> None:
    pass


def write_scenes(folder: Path, n: int, size=(64, 128), seed: int = 0) -> Path:
    """``n`` synthetic target-style street scenes as PNG files."""
    from PIL import Image

    from diga.data.synth import TARGET_STYLE, render_scene

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        image = render_scene(np.random.default_rng(seed + i), size, TARGET_STYLE)[0]
        Image.fromarray(np.asarray(image, dtype=np.uint8)).save(folder / f"frame{i:03d}.png")
    return folder


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("int8") / "final.safetensors", seed=3)


@pytest.fixture(scope="module")
def calib(tmp_path_factory) -> Path:
    d = write_scenes(tmp_path_factory.mktemp("calib") / "frames", 6)
    (d / "readme.txt").write_text("not an image")
    return d


@pytest.fixture(scope="module")
def int8_export(ckpt, calib):
    """The default export path and settings: ``final.int8.onnx`` beside the checkpoint."""
    return export_model(ckpt, "onnx", int8=True, calib=calib, log=quiet, warn=quiet)


def op_types(path: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in onnx.load(str(path)).graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def test_int8_onnx_export_is_a_calibrated_qdq_graph(ckpt, calib, int8_export):
    res = int8_export
    assert res.path == ckpt.with_name("final.int8.onnx") == export_path(ckpt, "onnx", int8=True)
    ops = op_types(res.path)
    assert ops.get("QuantizeLinear", 0) > 10 and ops.get("DequantizeLinear", 0) > 10
    model = onnx.load(str(res.path))
    int8_weights = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 4]
    assert len(int8_weights) >= 20  # the convolutions' weights are stored as int8
    exp = res.meta["export"]
    assert exp["int8"] is True and exp["precision"] == "int8" and exp["half"] is False
    q = exp["quantization"]
    assert q["calibration_method"] == DEFAULT_METHOD and q["calibration_images"] == 6
    assert q["calibration_folder"] == str(calib) and q["calibration_size"] == [64, 128]
    assert q["weights"] == "int8 symmetric per-channel" and q["activations"] == "uint8 asymmetric"
    # the final Resize and the classifier convolution stay in fp32 (see diga.export.quantize)
    nodes = {n.name: n for n in model.graph.node}
    kept = [nodes[name] for name in q["fp32_nodes"]]
    assert sorted(n.op_type for n in kept) == ["Conv", "Resize"]
    classifier = next(n for n in kept if n.op_type == "Conv")
    assert "head.classifier.weight" in classifier.input[1]
    assert read_export_metadata(res.path)["export"]["quantization"] == q  # travels inside the .onnx


def test_int8_parity_gate_is_reported(int8_export, calib):
    parity = int8_export.parity
    assert parity.precision == "int8" and parity.threshold == THRESHOLDS["int8"]
    assert "from " + str(calib) in parity.source  # checked on the target-domain calibration frames
    assert parity.passed and parity.agreement >= THRESHOLDS["int8"]
    assert int8_export.meta["export"]["parity"]["agreement"] == parity.agreement


def test_int8_model_loads_through_the_predictor(ckpt, int8_export, calib):
    p8, p32 = Predictor.load(int8_export.path), Predictor.load(ckpt)
    assert p8.backend == "onnx" and p8.meta["export"]["int8"] is True
    frames = sorted(calib.glob("*.png"))[:3]
    r8, r32 = p8.predict(frames), p32.predict(frames)
    for a, b in zip(r8, r32):
        assert a.labels.shape == (64, 128) and a.labels.dtype == np.uint8
        assert (a.labels == b.labels).mean() > 0.9  # INT8 follows the fp32 model, not noise


def test_calibration_reader_prepares_like_the_predictor(calib):
    from diga.export.images import read_rgb

    reader = CalibrationImages(calib, (32, 64), MEAN, STD, batch_size=4)
    assert len(reader.files) == 6 and len(reader) == 2  # the .txt file is not an image
    first = reader.get_next()["images"]
    assert first.shape == (4, 3, 32, 64) and first.dtype == np.float32
    np.testing.assert_allclose(first[0], prepare([read_rgb(reader.files[0])], (32, 64), MEAN, STD)[0].numpy(),
                               atol=1e-6)
    second = reader.get_next()["images"]
    np.testing.assert_allclose(second[2], first[0], atol=1e-6)  # the short last batch is filled from the start
    assert reader.get_next() is None
    reader.set_range(1, 2)  # ORT's chunked calibration
    np.testing.assert_allclose(reader.get_next()["images"], second)
    assert reader.get_next() is None and reader.batches_fed == 3
    assert len(reader) % reader.chunk() == 0


def test_calib_images_cap_spreads_over_the_folder(calib, tmp_path):
    files = sorted(calib.glob("*.png"))
    assert calibration_files(calib, 3) == [files[0], files[2], files[4]]
    assert calibration_files(calib, 100) == files


def test_calib_images_and_method_reach_the_metadata(ckpt, calib, tmp_path):
    res = export_model(ckpt, "onnx", int8=True, calib=calib, calib_images=2, calib_method="entropy",
                       out=tmp_path / "p.int8.onnx", exporter="torchscript", check=False, log=quiet)
    q = read_export_metadata(res.path)["export"]["quantization"]
    assert q["calibration_method"] == "entropy" and q["calibration_images"] == 2


def test_unreadable_calibration_files_are_skipped_with_a_warning(tmp_path):
    d = write_scenes(tmp_path / "mixed", 2)
    (d / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 10)
    warnings: list[str] = []
    reader = CalibrationImages(d, (32, 64), MEAN, STD, warn=warnings.append)
    assert [f.name for f in reader.files] == ["frame000.png", "frame001.png"]
    assert len(warnings) == 1 and "broken.png" in warnings[0] and str(d) in warnings[0]


def test_tensorrt_settings_keep_biases_in_float():
    cpu, trt = settings_for("cpu"), settings_for("tensorrt")
    assert cpu.quantize_bias and not trt.quantize_bias and trt.dedicated_qdq_pairs
    assert not cpu.symmetric_activations and trt.symmetric_activations  # TensorRT: zero point 0
    assert settings_for("tensorrt", "entropy").method == "entropy"


# ---------------------------------------------------------------------------------------------
# bad input


def test_calibration_folder_errors(ckpt, tmp_path):
    with pytest.raises(ExportError, match=r"--calib .*nope: not a folder"):
        export_model(ckpt, "onnx", int8=True, calib=tmp_path / "nope", log=quiet)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ExportError, match=rf"--calib: folder {empty} holds no image files"):
        export_model(ckpt, "onnx", int8=True, calib=empty, log=quiet)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.png").write_bytes(b"not a png")
    (bad / "b.jpg").write_bytes(b"")
    with pytest.raises(ExportError, match=rf"--calib {bad}: none of its 2 image file\(s\) could be read"):
        export_model(ckpt, "onnx", int8=True, calib=bad, log=quiet)


def test_int8_option_errors(ckpt, calib, tmp_path):
    with pytest.raises(ExportError, match="--int8 needs --calib DIR"):
        export_model(ckpt, "onnx", int8=True, log=quiet)
    with pytest.raises(ExportError, match="calibrate an INT8 export: add --int8"):
        export_model(ckpt, "onnx", calib=calib, log=quiet)
    with pytest.raises(ExportError, match="--int8 is only supported with --format onnx or --format tensorrt"):
        export_model(ckpt, "pt2", int8=True, calib=calib, log=quiet)
    with pytest.raises(ExportError, match="--calib-method must be one of minmax, entropy, percentile"):
        export_model(ckpt, "onnx", int8=True, calib=calib, calib_method="kl", log=quiet)
    with pytest.raises(ExportError, match="--int8 and --half"):
        export_model(ckpt, "onnx", int8=True, half=True, calib=calib, log=quiet)
    with pytest.raises(ExportError, match="--calib-images must be >= 1"):
        export_model(ckpt, "onnx", int8=True, calib=calib, calib_images=0, log=quiet)


def test_int8_parity_failure_stops_the_export(ckpt, calib, tmp_path, monkeypatch):
    from diga.export import exporter
    from diga.export.parity import compare as real_compare

    def poor(*a, **k):
        report = real_compare(*a, **k)
        report.agreement, report.passed = 90.0, False
        return report

    monkeypatch.setattr(exporter, "compare", poor)
    out = tmp_path / "poor.int8.onnx"
    with pytest.raises(ExportError, match=r"parity check failed.*90\.000% < 97\.0%.*--calib"):
        export_model(ckpt, "onnx", int8=True, calib=calib, out=out, exporter="torchscript", n_check=1, log=quiet)
    assert not out.exists()


def test_cli_int8_export_and_errors(ckpt, calib, tmp_path):
    from typer.testing import CliRunner

    from diga.cli.main import app

    def run(*args):
        return CliRunner().invoke(app, [str(a) for a in args])

    res = run("export", ckpt, "--format", "onnx", "--int8")
    assert res.exit_code == 1 and "--int8 needs --calib DIR" in " ".join(res.output.split())
    res = run("export", ckpt, "--int8", "--calib", tmp_path / "missing")
    assert res.exit_code == 1 and "missing: not a folder" in " ".join(res.output.split())
    out = tmp_path / "cli.int8.onnx"
    res = run("export", ckpt, "--int8", "--calib", calib, "--calib-images", "3", "--exporter", "torchscript",
              "--out", out)
    text = " ".join(res.output.split())
    assert res.exit_code == 0, res.output
    assert "INT8: calibrating on 3 image(s)" in text and "(int8)" in text and "argmax agreement" in text
    meta = json.loads({p.key: p.value for p in onnx.load(str(out)).metadata_props}["diga"])
    assert meta["export"]["int8"] is True and meta["export"]["quantization"]["calibration_images"] == 3


# ---------------------------------------------------------------------------------------------
# diga benchmark: the INT8 row beside fp32


def test_benchmark_adds_the_int8_row_when_asked(ckpt, tiny_bench, tmp_path):
    from conftest import run_cli

    frames = Path(tiny_bench["target"].split(":", 1)[1]) / "leftImg8bit" / "train"
    out = tmp_path / "bench.json"
    res = run_cli("benchmark", ckpt, "--backends", "torch,onnx", "--int8", "--calib", frames, "--imgsz", "64", "128",
                  "--warmup", "0", "--iters", "1", "--data", tiny_bench["val"], "--max-images", "3", "--json", out)
    assert res.exit_code == 0, res.output
    rows = json.loads(out.read_text())
    assert [(r["backend"], r["precision"]) for r in rows] == [("torch", "fp32"), ("onnx", "fp32"), ("onnx", "int8")]
    assert all(r["status"] == "ok" and r["miou_images"] == 3 and r["images_per_s"] > 0 for r in rows)
    assert rows[2]["agreement"] > 80 and "int8" in res.text and "mIoU" in res.text


def test_benchmark_picks_up_an_int8_model_beside_the_checkpoint(ckpt, int8_export):
    from diga.export.bench import benchmark

    logged: list[str] = []
    rows = benchmark(ckpt, ["onnx"], imgsz=(64, 128), warmup=0, iters=1, log=logged.append)
    assert [(r["backend"], r["precision"], r["status"]) for r in rows] == [("onnx", "fp32", "ok"),
                                                                            ("onnx", "int8", "ok")]
    assert any(str(int8_export.path) in m for m in logged) and rows[1]["agreement"] > 80
    # a fixed-shape INT8 file of another shape is named (its row's status), not fed the wrong tensor
    from diga.export import PredictorError
    from diga.export.bench import _fits

    with pytest.raises(PredictorError, match="final.int8.onnx takes batch 1 at 64x128, the benchmark batch 2"):
        _fits(int8_export.path, (64, 128), 2)


def test_benchmark_int8_errors(ckpt, calib, int8_export, tmp_path):
    from diga.export import PredictorError
    from diga.export.bench import benchmark

    with pytest.raises(PredictorError, match="--int8 needs --calib DIR"):
        benchmark(ckpt, ["onnx"], int8=True, log=quiet)
    with pytest.raises(PredictorError, match="--calib and --calib-images calibrate the INT8 rows: add --int8"):
        benchmark(ckpt, ["onnx"], calib=calib, log=quiet)
    with pytest.raises(PredictorError, match="--int8 quantises a checkpoint for --backends onnx or --backends "
                                             "tensorrt; got final.safetensors with --backends torch"):
        benchmark(ckpt, ["torch"], int8=True, calib=calib, log=quiet)
    with pytest.raises(PredictorError, match="got final.int8.onnx"):
        benchmark(int8_export.path, int8=True, calib=calib, log=quiet)
    with pytest.raises(ExportError, match="not a folder"):
        benchmark(ckpt, ["onnx"], int8=True, calib=tmp_path / "none", log=quiet)
