"""``diga evaluate`` with several ``--data``: one row per dataset (per-class table for one only), all in --out."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from rich.console import Console

from tests.conftest import make_checkpoint


@pytest.fixture()
def ckpt(tmp_path) -> Path:
    return make_checkpoint(tmp_path / "m.safetensors")


def root_name(spec: str) -> str:
    return Path(spec.split(":", 1)[1].split("?")[0]).name


def test_two_datasets_give_one_row_each_and_one_json(cli, tiny_bench, ckpt, tmp_path):
    specs = [tiny_bench["val"], tiny_bench["source_val"]]  # Cityscapes layout, GTA5 layout
    out = tmp_path / "all.json"
    r = cli("evaluate", ckpt, "--data", specs[0], "--data", specs[1], "--scales", "1.0", "--mode", "whole",
            "--device", "cpu", "--out", out)
    assert r.exit_code == 0, r.output
    body = json.loads(out.read_text())
    assert body["weights"] == str(ckpt) and [row["data"] for row in body["datasets"]] == specs
    for spec, row in zip(specs, body["datasets"]):
        assert 0 <= row["miou"] <= 100 and row["images"] == 4 and len(row["iou"]) == 19
        assert f"{root_name(spec)} {row['miou']:.2f} {row['pixel_accuracy']:.2f} 4" in r.text
    mean = sum(row["miou"] for row in body["datasets"]) / 2
    assert f"mean {mean:.2f}" in r.text and r.text.count("mode: whole") == 2
    assert "sidewalk" not in r.text  # no per-class table for several datasets

    single = tmp_path / "one.json"
    one = cli("evaluate", ckpt, "--data", specs[1], "--scales", "1.0", "--mode", "whole", "--device", "cpu",
              "--out", single)
    assert one.exit_code == 0, one.output
    metrics = json.loads(single.read_text())
    assert "datasets" not in metrics and "data" not in metrics  # one dataset: the same file as before
    assert "sidewalk" in one.text and "mean" not in one.text
    assert metrics["miou"] == body["datasets"][1]["miou"] and metrics["iou"] == body["datasets"][1]["iou"]


def test_a_bad_dataset_is_reported_before_any_evaluation(cli, tiny_bench, ckpt, tmp_path):
    missing = tmp_path / "nowhere"
    r = cli("evaluate", ckpt, "--data", tiny_bench["val"], "--data", f"gta5:{missing}", "--device", "cpu")
    assert r.exit_code == 1 and f"GTA5 root {missing} does not exist" in r.text
    assert "mode:" not in r.text  # the first dataset was not evaluated first


def test_dataset_table_rows_extra_means_and_the_mean_row():
    from diga.cli.tables import print_dataset_table

    console = Console(record=True, width=200)
    rows = [{"data": "synthia:/d/a", "miou": 40.0, "pixel_accuracy": 80.0, "images": 3,
             "extra_miou": {"mIoU (13 classes)": 45.5}},
            {"data": "cityscapes:/d/[b]", "miou": 20.0, "pixel_accuracy": 70.0, "images": 5}]
    print_dataset_table(console, rows, "scores")
    text = re.sub(r"[\s\u2500-\u257f]+", " ", console.export_text())  # without the table's lines
    assert "dataset mIoU mIoU (13 classes) pixel accuracy images" in text
    assert "synthia:/d/a 40.00 45.50 80.00 3" in text
    assert "cityscapes:/d/[b] 20.00 — 70.00 5" in text  # markup-like paths shown as they are
    assert "mean 30.00 75.00 8" in text
