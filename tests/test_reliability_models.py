"""Model files and deployment commands given hostile input: damaged checkpoints and exports, output
paths that cannot be written, a killed export, folders that hold their own predictions."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_checkpoint, repo_root, run_cli
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from diga.checkpoint import CheckpointError, load_model, load_weights, read_metadata
from diga.errors import DigaError
from diga.io import OutputPathError, atomic_write_text, remove_stale_temps


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("models") / "m.safetensors", seed=3)


@pytest.fixture(scope="module")
def parts(ckpt) -> tuple[dict[str, torch.Tensor], dict]:
    with safe_open(str(ckpt), framework="pt") as f:
        meta = json.loads(f.metadata()["diga"])
    return load_file(str(ckpt)), meta


def write(path: Path, state: dict, meta=None, raw: str | None = None) -> Path:
    save_file(state, str(path), metadata={"diga": raw if raw is not None else json.dumps(meta)})
    return path


def images(folder: Path, names=("a.png", "b.jpg"), size=(24, 40)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in names:
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(folder / name)
    return folder


# --------------------------------------------------------------------------------------------
# What a model file claims is checked once, at load


BAD_METADATA = [
    ("std", [0, 0, 0], "std must be positive"),
    ("std", [-0.2, 0.2, 0.2], "std must be positive"),
    ("std", [0.2, 0.2], "std must be 3 finite numbers"),
    ("std", [float("nan"), 0.2, 0.2], "std must be 3 finite numbers"),
    ("mean", "0.5", "mean must be 3 finite numbers"),
    ("palette", [[128, 64, 128]] * 5, "the palette has 5 colours for 19 classes"),
    ("palette", [[300, 0, 0]] * 19, "values 0..255"),
    ("format_version", 99, "format_version 99 is newer than this diga reads"),
    ("format_version", "1", "format_version must be a positive integer"),
    ("classes", ["road"] * 4, "4 class names for num_classes 19"),
    ("num_classes", "19", "num_classes must be an integer"),
    ("num_classes", 1000, "num_classes must be an integer 1..255"),
    ("input_size", [64, 10**12], "input_size must be null or [height, width]"),
    ("label_space", "kitti", "label_space must be one of"),
    ("model_kwargs", {"pretrained": "imagenet"}, "model_kwargs must map architecture settings"),
    ("model_kwargs", {"head_channels": 10**9}, "model_kwargs must map architecture settings"),
    ("architecture", ["deeplabv2_light"], "architecture must be a model name"),
]


@pytest.mark.parametrize("key,value,expected", BAD_METADATA)
def test_checkpoint_metadata_that_cannot_be_true_is_refused(parts, tmp_path, key, value, expected):
    state, meta = parts
    path = write(tmp_path / "bad.safetensors", state, {**meta, key: value})
    with pytest.raises(CheckpointError, match=re.escape(expected)) as e:
        load_model(path)
    assert str(path) in str(e.value)


def test_the_predictor_and_the_cli_refuse_it_too(parts, tmp_path):
    from diga.export import Predictor, PredictorError

    state, meta = parts
    path = write(tmp_path / "zero-std.safetensors", state, {**meta, "std": [0, 0, 0]})
    with pytest.raises(PredictorError, match="std must be positive"):
        Predictor.load(path)
    res = run_cli("predict", images(tmp_path / "in"), "--model", path, "--out", tmp_path / "out")
    assert res.exit_code == 1 and "std must be positive" in res.text and "Traceback" not in res.output
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("damage", ["nan", "inf", "int"])
def test_damaged_weights_are_refused(parts, tmp_path, damage):
    state, meta = dict(parts[0]), parts[1]
    name = "backbone.stem.0.weight"
    t = state[name].clone()
    if damage == "int":
        t = t.to(torch.int32)
        expected = "dtype mismatches"
    else:
        t.view(-1)[7] = float(damage)
        expected = "NaN or infinite"
    state[name] = t
    path = write(tmp_path / f"{damage}.safetensors", state, meta)
    with pytest.raises(CheckpointError, match=expected) as e:
        load_model(path)
    assert name in str(e.value)


def test_metadata_that_is_not_json_names_the_file(parts, tmp_path):
    path = write(tmp_path / "garbled.safetensors", parts[0], raw='{"format": "diga-checkpoint", ')
    with pytest.raises(CheckpointError, match="garbled.safetensors: its diga metadata is not valid JSON"):
        read_metadata(path)
    path = write(tmp_path / "list.safetensors", parts[0], raw="[1, 2]")
    with pytest.raises(CheckpointError, match="a JSON list, expected an object"):
        read_metadata(path)


def test_unknown_model_arguments_are_a_checkpoint_error(parts, tmp_path):
    path = write(tmp_path / "kw.safetensors", parts[0], {**parts[1], "model_kwargs": {"depth": 3}})
    with pytest.raises(CheckpointError, match="cannot build deeplabv2_light with model_kwargs"):
        load_model(path)


def _identity_onnx(path: Path, channels: int, meta: str) -> Path:
    from onnx import TensorProto, helper, save

    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, channels, 16, 16])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, channels, 16, 16])
    graph = helper.make_graph([helper.make_node("Identity", ["images"], ["logits"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    entry = model.metadata_props.add()
    entry.key, entry.value = "diga", meta
    save(model, str(path))
    return path


def _export_meta(meta: dict) -> str:
    return json.dumps({**meta, "export": {"format": "onnx", "dynamic": False, "imgsz": [16, 16], "batch": 1,
                                          "output": {"name": "logits"}}})


def test_an_onnx_graph_with_other_metadata_is_refused(parts, tmp_path):
    pytest.importorskip("onnxruntime")
    from diga.export import Predictor, PredictorError, read_export_metadata

    liar = _identity_onnx(tmp_path / "liar.onnx", 3, _export_meta(parts[1]))  # 3 channels, 19 classes claimed
    for load in (Predictor.load, read_export_metadata):
        with pytest.raises(PredictorError, match="outputs 3 channels but its diga metadata lists 19 classes"):
            load(liar)
    honest = _identity_onnx(tmp_path / "honest.onnx", 19, _export_meta(parts[1]))
    assert Predictor.load(honest).num_classes == 19


def test_export_metadata_is_validated_like_a_checkpoints(parts, tmp_path):
    from diga.export import PredictorError, read_export_metadata

    engine = tmp_path / "m.pt2"
    engine.write_bytes(b"package")
    side = tmp_path / "m.pt2.json"
    side.write_text(json.dumps({**parts[1], "palette": [], "export": {"format": "pt2"}}))
    with pytest.raises(PredictorError, match="m.pt2.json: invalid diga metadata: the palette has 0 colours"):
        read_export_metadata(engine)
    side.write_text(json.dumps({**parts[1], "export": {"format": "pt2", "output": "logits"}}))
    with pytest.raises(PredictorError, match="export.output.name must be one of logits, labels"):
        read_export_metadata(engine)
    side.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(PredictorError, match="cannot read the diga metadata of m.pt2"):
        read_export_metadata(engine)


# --------------------------------------------------------------------------------------------
# Files as written: permissions, temp files of a killed export


def test_checkpoints_get_the_permissions_of_a_plain_write(tiny_cfg, tmp_path):
    """Every checkpoint writer (save_weights, the trainer's checkpoints, the final copy of diga adapt)
    gives files the umask's mode, like the sidecars beside them (safetensors writes 0600)."""
    from diga.engine.pipeline import _write_final
    from diga.engine.supervised import SupervisedTrainer

    old = os.umask(0o022)
    try:
        trainer = SupervisedTrainer(tiny_cfg.replace(steps=1), tmp_path / "run")
        trainer.checkpoint(0)  # weights/state.safetensors and weights/last.safetensors
        weights = trainer.weights_dir
        _write_final(weights / "last.safetensors", tmp_path / "run" / "final.safetensors", None, tmp_path / "run")
        written = [*weights.glob("*.safetensors"), tmp_path / "run" / "final.safetensors",
                   make_checkpoint(tmp_path / "plain.safetensors")]
    finally:
        os.umask(old)
    assert {"last.safetensors", "state.safetensors"} <= {p.name for p in written}
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path


def test_a_killed_export_leaves_a_temp_that_the_next_export_removes(ckpt, tmp_path):
    """A real process, killed (SIGKILL) while the .onnx is being written, then a new export."""
    from diga.export import export_model

    out = tmp_path / "m.onnx"
    script = textwrap.dedent(f"""
        import os, signal
        import onnx
        def killed(proto, f, *args, **kwargs):
            open(f, "wb").write(b"half an ONNX file")
            os.kill(os.getpid(), signal.SIGKILL)
        onnx.save_model = killed
        from diga.export import export_model
        export_model({str(ckpt)!r}, "onnx", out={str(out)!r}, check=False, exporter="torchscript")
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=repo_root(), capture_output=True, timeout=300)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    stale = list(tmp_path.glob(".m.onnx.*.tmp"))
    assert len(stale) == 1 and not out.exists()
    other = tmp_path / ".other.safetensors.1234.tmp"  # another writer's temp in the same folder
    other.write_bytes(b"x")
    logs = []
    export_model(ckpt, "onnx", out=out, check=False, exporter="torchscript", log=logs.append)
    assert out.is_file() and not list(tmp_path.glob(".m.onnx.*")) and other.exists()
    assert any("removed 1 temp file(s)" in m for m in logs)


def test_stale_temps_of_one_file_only(tmp_path):
    names = [".m.onnx.ab12.tmp", ".m.onnx.json.cd34.tmp", ".m.trt.onnx.ef56.tmp", ".m.pt2.77-ab.tmp.pt2",
             ".m.onnx.keep", ".last.safetensors.9f.tmp", "m.onnx"]
    for n in names:
        (tmp_path / n).write_bytes(b"x")
    assert remove_stale_temps(tmp_path, of=["m.onnx", "m.onnx.json", "m.trt.onnx", "m.pt2"]) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == [".last.safetensors.9f.tmp", ".m.onnx.keep", "m.onnx"]


# --------------------------------------------------------------------------------------------
# Output paths that cannot be written


def test_export_out_that_cannot_be_written(ckpt, tmp_path):
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "a_dir.onnx").mkdir()
    res = run_cli("export", ckpt, "--out", tmp_path / "a_dir.onnx", "--no-check")
    assert res.exit_code == 1 and "a_dir.onnx is a folder; expected a file name" in res.text
    res = run_cli("export", ckpt, "--out", tmp_path / "a_file" / "m.onnx", "--no-check")
    assert res.exit_code == 1 and "a_file is a file; expected a folder" in res.text
    assert "Traceback" not in res.output


def test_predict_out_that_cannot_be_written(ckpt, tmp_path, monkeypatch):
    src = images(tmp_path / "in")
    (tmp_path / "a_file").write_text("x")
    res = run_cli("predict", src, "--model", ckpt, "--out", tmp_path / "a_file")
    assert res.exit_code == 1 and "--out" in res.text and "a_file is a file; expected a folder" in res.text
    read_only = tmp_path / "ro"
    read_only.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: (Path(p) != read_only or not mode & os.W_OK)
                        and real_access(p, mode, **kw))
    res = run_cli("predict", src, "--model", ckpt, "--out", read_only)
    assert res.exit_code == 1 and "ro is not writable (a read-only folder or file system)" in res.text
    assert "Traceback" not in res.output


def test_atomic_writes_on_a_read_only_file_system_name_the_file(tmp_path, monkeypatch):
    import errno

    real_open = os.open

    def read_only(path, flags, *args, **kwargs):
        if flags & os.O_CREAT:
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    monkeypatch.setattr(os, "access", lambda *a, **k: False)
    with pytest.raises(OutputPathError, match="model.json: its folder .* is not writable"):
        atomic_write_text(tmp_path / "model.json", "{}")


def test_evaluate_out_that_is_a_folder_fails_before_evaluating(ckpt, tiny_bench, tmp_path):
    res = run_cli("evaluate", ckpt, "--data", tiny_bench["val"], "--out", tmp_path)
    assert res.exit_code == 1 and f"--out {tmp_path} is a folder; expected a file name" in res.text
    assert "mIoU" not in res.text


def test_synth_out_below_a_file(tmp_path):
    (tmp_path / "a_file").write_text("x")
    res = run_cli("data", "synth", "--out", tmp_path / "a_file" / "bench", "--n-train", "1", "--n-val", "1")
    assert res.exit_code == 1 and "a_file is a file, so no folder can be created inside it" in res.text
    assert "Traceback" not in res.output


@pytest.mark.parametrize("scales,expected", [
    ("nan", "expected finite positive scales"), ("1,inf", "expected finite positive scales"),
    ("0.001", "scale 0.001 shrinks the 64x128 input to 1x1 pixels; each scale (--scales) must keep"),
])
def test_evaluate_scales_that_cannot_work(ckpt, tiny_bench, scales, expected):
    res = run_cli("evaluate", ckpt, "--data", tiny_bench["val"], "--scales", scales)
    assert res.exit_code != 0 and expected in res.text and "--scales" in res.text
    assert "Traceback" not in res.output


def test_an_onnx_export_failure_does_not_dump_the_graph(ckpt, tmp_path, capfd):
    from diga.export import ExportError, export_model

    with pytest.raises(ExportError) as e:
        export_model(ckpt, "onnx", out=tmp_path / "m.onnx", opset=7, exporter="torchscript", check=False,
                     log=lambda m: None)
    captured = capfd.readouterr()
    assert "Torch IR graph" not in captured.out + captured.err
    assert len((captured.out + captured.err).splitlines()) < 5
    assert "--opset 7 may be too old for this model" in str(e.value)


def test_layout_hints_read_as_sentences(tiny_bench, caplog):
    from diga.data import build_dataset
    from diga.data.common import layout_hint

    root = Path(tiny_bench["val"].split(":", 1)[1])
    hint = layout_hint(root, "gta5")
    assert "cityscapes:" in hint and "{" not in hint and hint.count("(") == hint.count(")")
    with caplog.at_level("WARNING", logger="diga.data"):
        build_dataset(f"folder:{root}")
    assert caplog.text.count("looks like") == 1 and "{" not in caplog.text


# --------------------------------------------------------------------------------------------
# Input folders: its own outputs, broken links, odd files


def test_predicting_a_folder_twice_skips_its_own_outputs(ckpt, tmp_path):
    for src, out in ((tmp_path / "a", tmp_path / "a" / "pred"), (tmp_path / "b", tmp_path / "b")):
        images(src)  # --out inside the input folder, and the input folder itself
        for _ in range(2):
            res = run_cli("predict", src, "--model", ckpt, "--out", out)
            assert res.exit_code == 0, res.output
            assert "2 image(s) segmented" in res.text
        assert "skipped 6 file(s) written by diga predict" in res.text
        assert not list(src.rglob("*_color_*")) and not list(src.rglob("*_labels_*"))


def test_broken_symlinks_are_reported(ckpt, tmp_path, caplog):
    from diga.data import build_dataset

    src = images(tmp_path / "in")
    (src / "gone.png").symlink_to(tmp_path / "nowhere.png")
    res = run_cli("predict", src, "--model", ckpt, "--out", tmp_path / "out")
    assert res.exit_code == 0 and "skipped 1 file: gone.png (broken symbolic links" in res.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="diga.data"):
        assert len(build_dataset(f"folder:{src}")) == 2
    assert "skipped 1 file: gone.png (broken symbolic links" in caplog.text


def test_model_paths_that_are_not_model_files(ckpt, tmp_path):
    from diga.export import Predictor, PredictorError

    (tmp_path / "model.onnx").mkdir()
    with pytest.raises(PredictorError, match="model.onnx is a folder; expected a model file"):
        Predictor.load(tmp_path / "model.onnx")
    (tmp_path / "empty.onnx").write_bytes(b"")
    with pytest.raises(PredictorError, match=r"empty.onnx is empty \(0 bytes\)"):
        Predictor.load(tmp_path / "empty.onnx")
    (tmp_path / "dir.safetensors").mkdir()
    with pytest.raises(CheckpointError, match="dir.safetensors is a folder"):
        load_weights(tmp_path / "dir.safetensors")


def test_odd_inputs_of_the_predictor(ckpt, tmp_path):
    from diga.export import Predictor, PredictorError

    predictor = Predictor.load(ckpt)
    for bad in (0, -1):
        with pytest.raises(PredictorError, match="batch_size must be a positive integer"):
            predictor.predict([np.zeros((16, 16, 3), np.uint8)], batch_size=bad)
        with pytest.raises(PredictorError, match="batch_size must be a positive integer"):
            Predictor.load(ckpt, batch_size=bad)
    png = tmp_path / "really_a_png.jpg"  # the decoder reads the content, not the name
    Image.fromarray(np.full((20, 30, 3), 90, np.uint8)).save(png, format="PNG")
    tiny = tmp_path / "one_pixel.png"
    Image.fromarray(np.full((1, 1, 3), 90, np.uint8)).save(tiny)
    a, b = predictor.predict([png, tiny])
    assert a.labels.shape == (20, 30) and b.labels.shape == (1, 1)
    (tmp_path / "empty").mkdir()
    res = run_cli("predict", tmp_path / "empty", "--model", ckpt, "--out", tmp_path / "out")
    assert res.exit_code == 1 and "holds no image files" in res.text


def test_loaders_raise_only_diga_errors_for_a_truncated_file(ckpt, tmp_path):
    data = ckpt.read_bytes()
    for n in (0, 7, 100, len(data) // 2, len(data) - 1):
        path = tmp_path / f"cut{n}.safetensors"
        path.write_bytes(data[:n])
        with pytest.raises(DigaError):
            load_model(path)


def test_export_sizes_and_names_that_cannot_work(ckpt, tmp_path):
    """A 100000x100000 example input was a 120 GB allocation and a traceback; a .pt2 package named
    x.onnx was written, then opened as ONNX by every loader."""
    from diga.export import ExportError, export_model

    with pytest.raises(ExportError, match=r"--imgsz must be two integers 1\.\.16384"):
        export_model(ckpt, "onnx", out=tmp_path / "m.onnx", imgsz=(100000, 100000), check=False)
    with pytest.raises(ExportError, match=r"--batch must be 1\.\.4096, got 100000"):
        export_model(ckpt, "onnx", out=tmp_path / "m.onnx", batch=100000, check=False)
    with pytest.raises(ExportError, match=r"--format pt2 files are recognised by their suffix \(\.pt2\); name it e\.g\. x\.pt2"):
        export_model(ckpt, "pt2", out=tmp_path / "x.onnx", check=False)
    assert not list(tmp_path.iterdir())


def test_benchmark_json_that_cannot_be_written_fails_before_benchmarking(ckpt, tmp_path):
    res = run_cli("benchmark", ckpt, "--backends", "torch", "--json", tmp_path)
    assert res.exit_code == 1 and f"--json {tmp_path} is a folder; expected a file name" in res.text
    assert "p50" not in res.text and "Traceback" not in res.output


def test_an_engine_built_for_another_gpu_says_which_and_how_to_rebuild(tmp_path, monkeypatch):
    """TensorRT refuses an engine of another GPU model or TensorRT version (deserialize returns None);
    the message names both machines and the command that rebuilds it (a fake TensorRT stands in)."""
    import contextlib
    import types

    from diga.checkpoint import model_metadata
    from diga.export import Predictor, PredictorError
    from diga.export import tensorrt as trt_module

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, data):
            return None

    class Logger:
        WARNING = 2

        def __init__(self, level):
            pass

    fake = types.SimpleNamespace(__name__="tensorrt", __version__="10.9", Runtime=Runtime, Logger=Logger)
    monkeypatch.setattr(trt_module, "load_tensorrt", lambda error=None: fake)
    monkeypatch.setattr(torch.cuda, "device", lambda device: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H200")
    engine = tmp_path / "final.engine"
    engine.write_bytes(b"an engine of another machine")
    meta = {**model_metadata("deeplabv2_light", "cityscapes19"),
            "export": {"format": "tensorrt", "gpu": "NVIDIA A100-SXM4-40GB", "tensorrt": "tensorrt 10.3",
                       "checkpoint": "final.safetensors"}}
    (tmp_path / "final.engine.json").write_text(json.dumps(meta))
    with pytest.raises(PredictorError) as e:
        Predictor.load(engine)
    assert ("built on NVIDIA A100-SXM4-40GB with tensorrt 10.3, this machine has NVIDIA H200 with tensorrt 10.9"
            in str(e.value))
    assert "diga export final.safetensors --format tensorrt" in str(e.value)
