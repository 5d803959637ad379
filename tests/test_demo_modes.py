"""The demo's inference-mode dropdown: the chosen mode reaches the Predictor and the status says how
the image was run."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.conftest import make_checkpoint


@pytest.fixture()
def served(tmp_path):
    from diga.demo.logic import DemoLogic
    from diga.export import Predictor

    ckpt = make_checkpoint(tmp_path / "m.safetensors", train_size=[32, 64], crop=[24, 48])
    predictor = Predictor.load(ckpt, device="cpu")
    image = tmp_path / "street.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 128, 3), dtype=np.uint8)).save(image)
    return DemoLogic(predictor, predictor, output_dir=tmp_path / "out"), image


@pytest.mark.parametrize("mode, said", [
    (None, "Mode: `resize (image 64x128 vs training scale 32x64: network input 32x64), chosen from the image size`"),
    ("slide", "Mode: `slide (image 64x128 vs training crop 24x48: windows 24x48, stride 16x32)`"),
    ("whole", "Mode: `whole (image 64x128 vs training scale 32x64)`"),
])
def test_segment_runs_and_reports_the_mode(served, mode, said):
    logic, image = served
    state, status, downloads = logic.segment([str(image)], compare=True, mode=mode)
    assert said in status
    assert state["items"][0]["labels"].shape == (64, 128) and len(downloads) == 2
    assert state["mode"] == mode
    assert state["items"][0]["before"].shape == (64, 128)  # the comparison model runs in the same mode


def test_the_mode_changes_the_prediction(served):
    from diga.demo.logic import run_model

    logic, image = served
    array = np.asarray(Image.open(image))
    runs = {m: run_model(logic.predictor, [array], m)[0][0] for m in ("whole", "resize", "slide")}
    assert not np.array_equal(runs["whole"], runs["slide"])
    assert np.array_equal(runs["resize"], run_model(logic.predictor, [array])[0][0])  # auto picks resize here


def test_a_bad_mode_is_a_message_not_a_traceback(served):
    logic, image = served
    state, status, _ = logic.segment([str(image)], mode="tiles")
    assert state is None and "Inference failed" in status and "mode must be one of" in status


def test_the_page_has_the_dropdown_with_the_predictors_default(served, tmp_path):
    pytest.importorskip("gradio")
    from diga.demo.layout import build_app

    logic, _ = served
    logic.predictor.mode = "slide"
    app = build_app(logic.predictor, output_dir=tmp_path / "app")
    dropdowns = [b for b in app.blocks.values() if getattr(b, "elem_id", None) == "diga-mode"]
    assert len(dropdowns) == 1
    assert dropdowns[0].value == "slide"
    assert [c[0] for c in dropdowns[0].choices] == ["auto", "whole", "resize", "slide"]
