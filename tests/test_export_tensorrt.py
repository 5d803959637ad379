"""TensorRT: pure-Python parts everywhere (profiles, the INT8 QDQ graph, error messages, the build
sequence against a fake ``tensorrt`` module); real engine builds only with TensorRT + a CUDA GPU."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_checkpoint

from diga.export import ExportError, Predictor, PredictorError, export_model
from diga.export import tensorrt as trt_mod
from diga.export.tensorrt import ProfileShapes, profile_shapes, qdq_nodes


def quiet(_m: str) -> None:
    pass


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("trt") / "m.safetensors", seed=2)


@pytest.fixture()
def calib_dir(tmp_path) -> Path:
    from PIL import Image

    d = tmp_path / "calib"
    d.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):  # different sizes: all are resized to the engine's input size
        Image.fromarray(rng.integers(0, 256, (40 + 8 * i, 90, 3), dtype=np.uint8)).save(d / f"c{i}.png")
    (d / "notes.txt").write_text("not an image")
    return d


@pytest.fixture()
def no_tensorrt(monkeypatch):
    """Make every TensorRT module unimportable (None in sys.modules raises ImportError)."""
    for name in trt_mod.TRT_MODULES:
        monkeypatch.setitem(sys.modules, name, None)


# ---------------------------------------------------------------------------------------------
# pure Python


def test_profile_shapes():
    s = profile_shapes((64, 128), 2, dynamic=False, stride=16)
    assert s == ProfileShapes((2, 3, 64, 128), (2, 3, 64, 128), (2, 3, 64, 128))
    d = profile_shapes((512, 1024), 4, dynamic=True, stride=8)
    assert d.min == (1, 3, 256, 512) and d.opt == (4, 3, 512, 1024) and d.max == (4, 3, 1024, 2048)
    small = profile_shapes((40, 72), 1, dynamic=True, stride=16)
    assert small.min == (1, 3, 32, 32) and small.max == (1, 3, 80, 144)  # >= 2 strides, multiples of 16
    assert all(v % 16 == 0 for v in small.min[2:] + small.max[2:])
    assert d.as_dict()["opt"] == [4, 3, 512, 1024]
    with pytest.raises(ExportError):
        profile_shapes((64, 64), 0, dynamic=False, stride=8)


def test_rtx_has_no_precision_flags():
    rtx = types.SimpleNamespace(__name__="tensorrt_rtx")
    assert trt_mod.is_rtx(rtx) and not trt_mod.has_flag(rtx, "FP16") and not trt_mod.has_flag(rtx, "INT8")


def test_missing_tensorrt_message(no_tensorrt, ckpt, tmp_path, monkeypatch):
    with pytest.raises(ExportError) as exc:
        trt_mod.load_tensorrt()
    msg = str(exc.value)
    assert "pip install tensorrt" in msg and "NVIDIA GPU and driver" in msg
    with pytest.raises(ExportError, match="pip install tensorrt"):
        export_model(ckpt, "tensorrt", out=tmp_path / "m.engine", log=quiet)
    # a present TensorRT without a GPU: only the GPU part of the message
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__name__="tensorrt"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ExportError) as exc:
        trt_mod.load_tensorrt()
    assert "needs a CUDA GPU" in str(exc.value) and "not installed" not in str(exc.value)


def test_engine_loading_errors(no_tensorrt, tmp_path):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"serialized engine")
    with pytest.raises(PredictorError, match=r"has no diga metadata .*m\.engine\.json.*diga export"):
        Predictor.load(engine)
    from diga.checkpoint import model_metadata

    meta = {**model_metadata("deeplabv2_light", "cityscapes19"), "export": {"format": "tensorrt"}}
    (tmp_path / "m.engine.json").write_text(json.dumps(meta))
    with pytest.raises(PredictorError, match="pip install tensorrt"):
        Predictor.load(engine)
    with pytest.raises(PredictorError, match="use backend='tensorrt'"):
        Predictor.load(engine, backend="onnx")


def test_cli_without_tensorrt(no_tensorrt, ckpt, tmp_path):
    from typer.testing import CliRunner

    from diga.cli.main import app

    res = CliRunner().invoke(app, ["export", str(ckpt), "--format", "tensorrt", "--out", str(tmp_path / "m.engine")])
    assert res.exit_code == 1 and "pip install tensorrt" in " ".join(res.output.split())


# ---------------------------------------------------------------------------------------------
# the build sequence against a fake TensorRT 10 module


class FakeTRT(types.SimpleNamespace):
    """Records the calls build_engine makes; 'builds' an engine of known bytes."""

    def __init__(self, rtx: bool = False) -> None:
        calls: list = []
        self.calls = calls
        # TensorRT for RTX has no FP16/INT8 builder flags (precision comes from the graph's types)
        flags = {"TF32": "TF32"} if rtx else {"FP16": "FP16", "INT8": "INT8", "TF32": "TF32"}

        class Logger:
            WARNING = "warning"

            def __init__(self, severity):
                calls.append(("Logger", severity))

        class Profile:
            def set_shape(self, name, lo, opt, hi):
                calls.append(("set_shape", name, tuple(lo), tuple(opt), tuple(hi)))

        class Cache:
            def __init__(self, blob):
                self.blob = bytes(blob)

            def serialize(self):
                return memoryview(self.blob + b"+timings")

        class Config:
            def set_memory_pool_limit(self, pool, size):
                calls.append(("set_memory_pool_limit", pool, size))

            def set_flag(self, flag):
                calls.append(("set_flag", flag))

            def clear_flag(self, flag):
                calls.append(("clear_flag", flag))

            def add_optimization_profile(self, profile):
                calls.append(("add_optimization_profile",))

            def create_timing_cache(self, blob):
                calls.append(("create_timing_cache", bytes(blob)))
                self.cache = Cache(blob)
                return self.cache

            def set_timing_cache(self, cache, ignore_mismatch):
                calls.append(("set_timing_cache", ignore_mismatch))
                return True

            def get_timing_cache(self):
                return self.cache

        class Parser:
            num_errors = 0

            def __init__(self, network, logger):
                pass

            def parse_from_file(self, path):
                calls.append(("parse_from_file", Path(path).name))
                return Path(path).is_file()

        class Builder:
            def __init__(self, logger):
                pass

            def create_network(self, flags):
                calls.append(("create_network", flags))
                return object()

            def create_builder_config(self):
                return Config()

            def create_optimization_profile(self):
                return Profile()

            def build_serialized_network(self, network, config):
                calls.append(("build_serialized_network",))
                return memoryview(b"ENGINE")

        super().__init__(
            __name__="tensorrt", __version__="10.99-fake", Logger=Logger, Builder=Builder, OnnxParser=Parser,
            MemoryPoolType=types.SimpleNamespace(WORKSPACE="WORKSPACE"),
            BuilderFlag=types.SimpleNamespace(**flags),
        )


def _int8_inputs(onnx_path: Path) -> tuple[int, int]:
    """(int8 weight initialisers, int32 initialisers feeding a DequantizeLinear) of a graph."""
    import onnx

    model = onnx.load(str(onnx_path))
    types_ = {t.name: t.data_type for t in model.graph.initializer}
    dq_inputs = [n.input[0] for n in model.graph.node if n.op_type == "DequantizeLinear"]
    return (sum(types_.get(i) == onnx.TensorProto.INT8 for i in dq_inputs),
            sum(types_.get(i) == onnx.TensorProto.INT32 for i in dq_inputs))


def test_export_tensorrt_against_fake_module(ckpt, calib_dir, tmp_path, monkeypatch):
    fake = FakeTRT()
    parsed: list[tuple[int, tuple[int, int]]] = []
    monkeypatch.setattr(trt_mod, "load_tensorrt", lambda error=ExportError: fake)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "FakeGPU")
    real_parser = fake.OnnxParser

    class RecordingParser(real_parser):
        def parse_from_file(self, path):  # what TensorRT would read: the QDQ graph
            parsed.append((qdq_nodes(path), _int8_inputs(Path(path))))
            return super().parse_from_file(path)

    fake.OnnxParser = RecordingParser
    out, cache = tmp_path / "m.engine", tmp_path / "timing.cache"
    export_model(ckpt, "tensorrt", out=out, int8=True, calib=calib_dir, batch=2, dynamic=True,
                 imgsz=(64, 128), output="labels", check=False, exporter="torchscript", log=quiet)
    assert out.read_bytes() == b"ENGINE"
    calls = fake.calls
    assert ("set_shape", "images", (1, 3, 32, 64), (2, 3, 64, 128), (2, 3, 128, 256)) in calls
    assert ("set_flag", "FP16") in calls and ("set_flag", "INT8") in calls
    assert ("set_memory_pool_limit", "WORKSPACE", 4 << 30) in calls
    assert ("parse_from_file", "m.trt.onnx") in calls
    # explicit quantisation: TensorRT parsed a QDQ graph with int8 weights and no int32 (bias) inputs
    assert len(parsed) == 1
    n_qdq, (int8_weights, int32_inputs) = parsed[0]
    assert n_qdq > 20 and int8_weights >= 20 and int32_inputs == 0
    meta = json.loads((tmp_path / "m.engine.json").read_text())
    exp = meta["export"]
    assert exp["format"] == "tensorrt" and exp["precision"] == "int8" and exp["output"]["dtype"] == "int32"
    q = exp["quantization"]
    assert q["calibration_images"] == 5 and q["activations"] == "int8 symmetric" and q["bias"] == "fp32"
    assert exp["profile"]["max"] == [2, 3, 128, 256] and meta["classes"][0] == "road"
    # the QDQ ONNX beside the engine outputs int32 labels (TensorRT-friendly) and keeps its metadata
    import onnxruntime as ort

    sess = ort.InferenceSession(str(tmp_path / "m.trt.onnx"), providers=["CPUExecutionProvider"])
    assert sess.get_outputs()[0].type == "tensor(int32)"
    from diga.export import read_export_metadata

    assert read_export_metadata(tmp_path / "m.trt.onnx")["export"]["int8"] is True
    # an INT8 build from a graph without Q/DQ nodes is refused: there is no implicit calibration
    fp32_onnx = tmp_path / "fp32.onnx"
    export_model(ckpt, "onnx", out=fp32_onnx, check=False, exporter="torchscript", log=quiet)
    with pytest.raises(ExportError, match="no QuantizeLinear/DequantizeLinear nodes.*explicit quantisation"):
        trt_mod.build_engine(fp32_onnx, tmp_path / "x.engine", int8=True,
                             shapes=profile_shapes((64, 128), 1, False, 16), log=quiet)
    # fp32 build: TF32 off; the timing cache is created, saved and then reused
    fake2 = FakeTRT()
    monkeypatch.setattr(trt_mod, "load_tensorrt", lambda error=ExportError: fake2)
    for i in range(2):
        trt_mod.build_engine(fp32_onnx, tmp_path / f"f{i}.engine", shapes=profile_shapes((64, 128), 1,
                             False, 16), timing_cache=cache, log=quiet)
    assert ("clear_flag", "TF32") in fake2.calls and ("set_flag", "FP16") not in fake2.calls
    blobs = [c[1] for c in fake2.calls if c[0] == "create_timing_cache"]
    assert blobs == [b"", b"+timings"] and cache.read_bytes() == b"+timings+timings"


def test_rtx_half_builds_from_an_fp16_graph(ckpt, tmp_path, monkeypatch):
    fake = FakeTRT(rtx=True)
    fake.__name__ = "tensorrt_rtx"
    monkeypatch.setattr(trt_mod, "load_tensorrt", lambda error=ExportError: fake)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "FakeRTX")
    res = export_model(ckpt, "tensorrt", out=tmp_path / "r.engine", half=True, check=False, exporter="torchscript",
                       log=quiet)
    assert not any(c[0] == "set_flag" for c in fake.calls)
    assert res.meta["export"]["precision"] == "fp16 (from the ONNX graph's types)"
    from diga.export import read_export_metadata

    assert read_export_metadata(tmp_path / "r.trt.onnx")["export"]["half"] is True


def test_rtx_int8_builds_from_the_qdq_graph_without_flags(ckpt, calib_dir, tmp_path, monkeypatch):
    fake = FakeTRT(rtx=True)
    fake.__name__ = "tensorrt_rtx"
    monkeypatch.setattr(trt_mod, "load_tensorrt", lambda error=ExportError: fake)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "FakeRTX")
    res = export_model(ckpt, "tensorrt", out=tmp_path / "q.engine", int8=True, calib=calib_dir, check=False,
                       exporter="torchscript", log=quiet)
    assert not any(c[0] == "set_flag" for c in fake.calls) and ("parse_from_file", "q.trt.onnx") in fake.calls
    assert res.meta["export"]["precision"] == "int8 (from the ONNX graph's Q/DQ nodes)"
    assert qdq_nodes(tmp_path / "q.trt.onnx") > 20


# ---------------------------------------------------------------------------------------------
# real TensorRT (skipped here: no TensorRT, no GPU)


@pytest.fixture()
def real_trt():
    if trt_mod._find_tensorrt() is None:
        reason = "TensorRT is not installed (pip install tensorrt on a machine with an NVIDIA GPU)"
        print(f"SKIP: {reason}")
        pytest.skip(reason)
    if not torch.cuda.is_available():
        print("SKIP: no CUDA GPU")
        pytest.skip("TensorRT tests need a CUDA GPU")


@pytest.mark.tensorrt
def test_trt_fp32_engine_matches_pytorch(real_trt, ckpt, tmp_path):
    res = export_model(ckpt, "tensorrt", out=tmp_path / "m.engine", batch=2, log=quiet)
    assert res.parity.passed and res.parity.agreement >= 99.9
    images = [np.random.default_rng(i).integers(0, 256, (64, 128, 3), dtype=np.uint8) for i in range(3)]
    p_trt, p_torch = Predictor.load(res.path), Predictor.load(ckpt)
    assert p_trt.backend == "tensorrt" and p_trt.engine.fixed_batch == 2
    for a, b in zip(p_trt.predict(images), p_torch.predict(images)):
        assert (a.labels == b.labels).mean() > 0.999


@pytest.mark.tensorrt
def test_trt_dynamic_fp16_and_labels(real_trt, ckpt, tmp_path):
    res = export_model(ckpt, "tensorrt", out=tmp_path / "d.engine", dynamic=True, half=True, batch=2,
                       output="labels", log=quiet, warn=quiet)
    p = Predictor.load(res.path)
    assert p.engine.size_range == ((32, 64), (128, 256))
    for shape in ((64, 128, 3), (80, 96, 3), (300, 600, 3)):  # the last is scaled into the profile
        out = p.predict([np.zeros(shape, np.uint8)])[0]
        assert out.labels.shape == shape[:2]


@pytest.mark.tensorrt
def test_trt_int8_from_the_qdq_graph(real_trt, ckpt, calib_dir, tmp_path):
    res = export_model(ckpt, "tensorrt", out=tmp_path / "q.engine", int8=True, calib=calib_dir, log=quiet,
                       warn=quiet)
    assert res.meta["export"]["precision"] == "int8" and qdq_nodes(tmp_path / "q.trt.onnx") > 20
    assert res.parity is not None and res.parity.passed
