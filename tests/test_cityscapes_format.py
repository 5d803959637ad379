"""``diga predict --format cityscapes`` writes what the official Cityscapes evaluation reads, and its
mIoU agrees with ``diga evaluate`` on the same model and images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diga.classes import CITYSCAPES19, CITYSCAPES_ID_TO_TRAINID, SYNTHIA16, LabelSpace
from tests.conftest import make_checkpoint


def test_label_id_table_inverts_the_official_map():
    lut = CITYSCAPES19.to_cityscapes_label_ids()
    for label_id, train_id in CITYSCAPES_ID_TO_TRAINID.items():
        assert lut[train_id] == label_id
    assert lut[255] == 0 and lut[19] == 0  # ignore and ids outside the space: unlabeled
    synthia = SYNTHIA16.to_cityscapes_label_ids()  # trainIds of a smaller space map by class name
    assert [synthia[SYNTHIA16.classes.index(c)] for c in ("road", "sky", "bicycle")] == [7, 23, 33]
    assert LabelSpace("x", ("car",)).to_cityscapes_label_ids()[0] == 26


@pytest.fixture()
def cityscapes_root(tiny_bench) -> Path:
    return Path(tiny_bench["root"]) / "target"


def official_miou(root: Path, results: Path, monkeypatch) -> float:
    """The mIoU (%) of cityscapesscripts' evalPixelLevelSemanticLabeling over gtFine/val of ``root``."""
    monkeypatch.setenv("CITYSCAPES_DATASET", str(root))
    monkeypatch.setenv("CITYSCAPES_RESULTS", str(results))
    ev = pytest.importorskip("cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling")
    args = ev.args  # the script's settings object, filled at import; point it at this run
    monkeypatch.setattr(args, "cityscapesPath", str(root))
    monkeypatch.setattr(args, "groundTruthSearch", str(root / "gtFine" / "val" / "*" / "*_gtFine_labelIds.png"))
    monkeypatch.setattr(args, "predictionPath", None)  # read from CITYSCAPES_RESULTS
    monkeypatch.setattr(args, "predictionWalk", None)
    monkeypatch.setattr(args, "evalInstLevelScore", False)  # the synthetic set has no instance ids
    monkeypatch.setattr(args, "JSONOutput", False)
    monkeypatch.setattr(args, "quiet", True)
    monkeypatch.setattr(args, "colorized", False)
    gts = sorted(str(p) for p in (root / "gtFine" / "val").rglob("*_gtFine_labelIds.png"))
    preds = [ev.getPrediction(args, gt) for gt in gts]
    result = ev.evaluateImgLists(preds, gts, args)
    return 100.0 * result["averageScoreClasses"]


def test_predict_cityscapes_format_matches_the_official_evaluation(cli, cityscapes_root, tmp_path, monkeypatch):
    ckpt = make_checkpoint(tmp_path / "m.safetensors", seed=3, train_size=[64, 128], crop=[48, 96])
    images = cityscapes_root / "leftImg8bit" / "val"
    out = tmp_path / "results"
    r = cli("predict", images, "--model", ckpt, "--out", out, "--format", "cityscapes", "--mode", "whole",
            "--device", "cpu")
    assert r.exit_code == 0, r.output
    assert "mode: whole (image 64x128 vs training scale 64x128)" in r.text
    names = sorted(p.name for p in out.iterdir())
    expected = sorted(p.name for p in images.rglob("*_leftImg8bit.png"))
    assert names == expected  # only the label-id PNGs, named as the inputs
    ids = np.asarray(Image.open(out / names[0]))
    assert ids.dtype == np.uint8 and ids.shape == (64, 128)
    assert set(np.unique(ids)) <= set(CITYSCAPES_ID_TO_TRAINID)

    official = official_miou(cityscapes_root, out, monkeypatch)
    metrics = tmp_path / "metrics.json"
    r = cli("evaluate", ckpt, "--data", f"cityscapes:{cityscapes_root}", "--scales", "1.0", "--mode", "whole",
            "--device", "cpu", "--out", metrics)
    assert r.exit_code == 0, r.output
    ours = json.loads(metrics.read_text())["miou"]
    assert 0 < official < 100
    assert abs(official - ours) <= 0.01, (official, ours)


def test_predict_rejects_an_unknown_format(cli, cityscapes_root, tmp_path):
    ckpt = make_checkpoint(tmp_path / "m.safetensors")
    r = cli("predict", cityscapes_root / "leftImg8bit" / "val", "--model", ckpt, "--out", tmp_path / "o",
            "--format", "kitti")
    assert r.exit_code == 2 and "--format" in r.text and "diga, cityscapes" in r.text
