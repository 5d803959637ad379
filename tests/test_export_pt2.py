"""AOTInductor ``.pt2`` export. Compiling needs a C++ compiler and ~45-60 s on 2 CPU cores: slow."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_checkpoint

from diga.export import ExportError, Predictor, export_model


def quiet(_m: str) -> None:
    pass


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("pt2") / "m.safetensors", seed=3)


def test_half_pt2_needs_cuda(ckpt, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ExportError, match="--half with --format pt2 needs a CUDA GPU"):
        export_model(ckpt, "pt2", out=tmp_path / "m.pt2", half=True, log=quiet)


def test_pt2_without_metadata_is_rejected(tmp_path):
    from diga.export import PredictorError

    bogus = tmp_path / "x.pt2"
    bogus.write_bytes(b"PK\x05\x06" + b"\x00" * 18)  # an empty zip, not an AOTInductor package
    with pytest.raises(PredictorError, match="x.pt2"):
        Predictor.load(bogus)


@pytest.mark.slow
def test_pt2_dynamic_export_and_predict(ckpt, tmp_path):
    res = export_model(ckpt, "pt2", out=tmp_path / "m.pt2", dynamic=True, n_check=2, log=print)
    print(f"AOTInductor compile: {res.meta['export']['compile_seconds']} s, total {res.seconds:.1f} s")
    assert res.parity.passed and res.parity.agreement >= 99.9 and res.parity.sizes == [[64, 128], [48, 96]]
    assert json.loads((tmp_path / "m.pt2.json").read_text())["export"]["format"] == "pt2"
    # the metadata is inside the package too: it loads without the sidecar
    (tmp_path / "m.pt2.json").unlink()
    p = Predictor.load(res.path)
    assert p.backend == "pt2" and p.meta["classes"][0] == "road"
    images = [np.random.default_rng(i).integers(0, 256, (50 + 20 * i, 100, 3), dtype=np.uint8) for i in range(3)]
    ref = Predictor.load(ckpt).predict(images)
    for a, b in zip(p.predict(images), ref):
        assert a.labels.shape == b.labels.shape and (a.labels == b.labels).mean() > 0.999
