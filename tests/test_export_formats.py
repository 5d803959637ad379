"""The one formats table (diga.export.formats): every row round-trips through the exporter's
default path, the backend chosen by suffix, the metadata reader and the demo's model lookup;
options a format does not take are refused by name."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_checkpoint

from diga.export import ExportError, PredictorError, export_model
from diga.export import backends as backends_mod
from diga.export.formats import (
    BACKENDS,
    CHECKPOINT_SUFFIX,
    EXPORT_FORMATS,
    INT8_OPTIONS,
    MODEL_FORMATS,
    export_path,
    format_named,
    format_of,
)

ROWS = {f.argument: f for f in MODEL_FORMATS}
EXPORTED = [f for f in MODEL_FORMATS if f.exported]
EVERY_SUFFIX = [(f.argument, s) for f in MODEL_FORMATS for s in f.suffixes]


def test_table_is_consistent():
    assert len(set(BACKENDS)) == len(BACKENDS) == len(MODEL_FORMATS)
    suffixes = [s for f in MODEL_FORMATS for s in f.suffixes]
    assert len(set(suffixes)) == len(suffixes), "a suffix may belong to one format only"
    assert all(s.startswith(".") and s == s.lower() for s in suffixes)
    assert [f for f in MODEL_FORMATS if not f.exported] == [format_of("m" + CHECKPOINT_SUFFIX)]
    assert all(f.cpu or f.gpu for f in MODEL_FORMATS)
    assert set(backends_mod.LOADERS) == set(BACKENDS), "every format needs a loader"


@pytest.mark.parametrize("fmt", EXPORTED, ids=lambda f: f.argument)
def test_suffix_the_exporter_writes_is_the_one_its_backend_opens(fmt):
    written = export_path(Path("runs/adapt/x/final.safetensors"), fmt.argument)
    assert written == Path("runs/adapt/x/final" + fmt.suffix)
    assert format_of(written) is fmt
    assert backends_mod.model_format(written).argument == fmt.argument
    if "int8" in fmt.options:  # the INT8 variant sits beside the fp32 file and opens with the same backend
        int8 = export_path(Path("runs/adapt/x/final.safetensors"), fmt.argument, int8=True)
        assert int8 == Path("runs/adapt/x/final.int8" + fmt.suffix) and format_of(int8) is fmt
        assert all(option in fmt.options for option in INT8_OPTIONS)
    else:
        with pytest.raises(ValueError, match="no INT8 variant"):
            export_path(Path("final.safetensors"), fmt.argument, int8=True)


@pytest.mark.parametrize(("argument", "suffix"), EVERY_SUFFIX)
def test_open_backend_picks_the_loader_of_the_suffix(argument, suffix, tmp_path, monkeypatch):
    opened = []
    monkeypatch.setattr(backends_mod, "LOADERS",
                        {name: (lambda path, dev, name=name: opened.append((name, path))) for name in BACKENDS})
    path = tmp_path / f"model{suffix.upper()}"  # suffixes match case-insensitively
    path.write_bytes(b"x")
    backends_mod.open_backend(path)
    assert opened == [(argument, path)]
    other = next(b for b in BACKENDS if b != argument)
    with pytest.raises(PredictorError, match=f"cannot run {path.name}"):
        backends_mod.open_backend(path, other)


@pytest.mark.parametrize(("argument", "suffix"), EVERY_SUFFIX)
def test_metadata_reader_knows_every_suffix(argument, suffix, tmp_path):
    from diga.export import read_export_metadata

    path = tmp_path / f"model{suffix}"
    path.write_bytes(b"not a model")
    with pytest.raises(Exception) as e:  # an unreadable file, never an unknown format
        read_export_metadata(path)
    assert "unknown model format" not in str(e.value)


def test_unknown_suffix_lists_every_format(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(b"x")
    with pytest.raises(PredictorError, match="unknown model format '.bin'") as e:
        backends_mod.open_backend(path)
    assert all(s in str(e.value) for f in MODEL_FORMATS for s in f.suffixes)


def test_gpu_only_format_refuses_an_explicit_cpu_device(tmp_path):
    gpu_only = [f for f in MODEL_FORMATS if not f.cpu]
    assert gpu_only, "the table has a GPU-only format (TensorRT)"
    path = tmp_path / f"m{gpu_only[0].suffix}"
    path.write_bytes(b"x")
    with pytest.raises(PredictorError, match="CUDA GPU only"):
        backends_mod.open_backend(path, device="cpu")


@pytest.mark.parametrize("fmt", MODEL_FORMATS, ids=lambda f: f.argument)
def test_demo_finds_a_model_of_each_suffix(fmt, tmp_path):
    from diga.demo.discovery import model_for_backend, resolve_model

    ckpt = tmp_path / "final.safetensors"
    ckpt.write_bytes(b"x")
    for suffix in fmt.suffixes:
        model = tmp_path / f"final{suffix}"
        model.write_bytes(b"x")
        assert resolve_model(model) == model  # --model PATH of this format
        assert model_for_backend(model, fmt.argument) == model  # an export is loaded as it is
        # a checkpoint asked to run on this backend is replaced by its export beside it
        assert model_for_backend(ckpt, fmt.argument) == (model if fmt.exported else ckpt)
        if suffix != CHECKPOINT_SUFFIX:
            model.unlink()
    if fmt.exported:
        with pytest.raises(ValueError, match=f"diga export .* --format {fmt.argument}"):
            model_for_backend(ckpt, fmt.argument)


def test_cli_choices_come_from_the_table():
    from diga.cli import demo_cmd

    assert demo_cmd.BACKENDS == ("auto", *BACKENDS)
    from diga.export import FORMATS

    assert FORMATS == EXPORT_FORMATS == tuple(f.argument for f in EXPORTED)


def test_formats_table_imports_without_torch():
    code = "import sys, diga.export.formats, diga.cli.demo_cmd; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(("fmt", "options", "message"), [
    ("pt2", dict(int8=True, calib="imgs"), "--int8 is only supported with --format onnx or --format tensorrt"),
    ("pt2", dict(calib_method="entropy"), "--calib-method is only supported with --format onnx or --format tensorrt"),
    ("pt2", dict(opset=17), "--opset is only supported with --format onnx or --format tensorrt"),
    ("pt2", dict(exporter="dynamo"), r"--format pt2 takes: --half\)"),
    ("onnx", dict(workspace_gb=8.0), "--workspace is only supported with --format tensorrt"),
])
def test_options_a_format_does_not_take_are_refused(fmt, options, message, tmp_path):
    assert format_named(fmt) is ROWS[fmt]
    with pytest.raises(ExportError, match=message):
        export_model(tmp_path / "missing.safetensors", fmt, **options)


def test_onnx_round_trip(tmp_path):
    """The real thing for the format this machine can build in seconds: export with the default
    output path, then the demo's lookup and the predictor's backend choice agree on it."""
    pytest.importorskip("onnxruntime")
    from diga.demo.discovery import model_for_backend
    from diga.export import Predictor

    ckpt = make_checkpoint(tmp_path / "final.safetensors")
    result = export_model(ckpt, "onnx", check=False, exporter="torchscript", log=lambda m: None)
    assert result.path == export_path(ckpt, "onnx") and result.path.is_file()
    assert model_for_backend(ckpt, "onnx") == result.path
    assert Predictor.load(result.path).backend == "onnx"
