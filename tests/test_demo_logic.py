"""diga.demo.logic without Gradio or a server: segmenting uploads with a fake predictor, the
before/after toggle (also when the before model fails), the messages, the small handler helpers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from diga.demo.logic import (
    DemoLogic,
    deep_link,
    failure_message,
    image_choices,
    item_index,
    selected_example,
    status_markdown,
)


class FakePredictor:
    """Labels every pixel with one class; records the batches it saw."""

    backend, device = "fake", "cpu"

    def __init__(self, label: int, fail: bool = False):
        self.label, self.fail, self.calls = label, fail, []
        self.meta = {"classes": ["road", "car", "sky"], "palette": [[1, 2, 3], [4, 5, 6], [7, 8, 9]]}

    def predict(self, arrays):
        self.calls.append(len(arrays))
        if self.fail:
            raise RuntimeError("device lost\nsecond line")
        return [SimpleNamespace(labels=np.full(a.shape[:2], self.label, np.uint8)) for a in arrays]


@pytest.fixture()
def images(tmp_path):
    paths = []
    for k in range(2):
        p = tmp_path / f"street {k}.png"
        Image.fromarray(np.full((16, 32, 3), 40 * k, np.uint8)).save(p)
        paths.append(p)
    return paths


def _logic(tmp_path, before=None, **kw):
    warned, infos = [], []
    logic = DemoLogic(FakePredictor(1), before, output_dir=tmp_path / "out", model_name="m`x",
                      warn=warned.append, info=infos.append, **kw)
    return logic, warned, infos


def test_logic_imports_without_gradio():
    code = "import sys, diga.demo.logic, diga.demo.discovery; print('gradio' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_segment_writes_downloads_and_uses_the_palette(tmp_path, images):
    logic, warned, _ = _logic(tmp_path)
    state, status, downloads = logic.segment([str(p) for p in images])
    assert status.startswith("Segmented **2** images with `m'x`.")  # backticks cannot break the markdown
    assert [Path(d).name for d in downloads] == ["01_street 0_labels.png", "01_street 0_color.png",
                                                 "02_street 1_labels.png", "02_street 1_color.png"]
    assert all(Path(d).resolve().is_relative_to((tmp_path / "out" / "requests").resolve()) for d in downloads)
    np.testing.assert_array_equal(np.asarray(Image.open(downloads[0])), np.ones((16, 32), np.uint8))
    assert tuple(np.asarray(Image.open(downloads[1]))[0, 0]) == (4, 5, 6)
    assert image_choices(state) == [("1. street 0.png", 0), ("2. street 1.png", 1)]
    assert not warned


def test_bad_upload_and_too_many_files_become_messages(tmp_path, images):
    logic, warned, infos = _logic(tmp_path, max_images=2)
    bad = tmp_path / "notes.txt"
    bad.write_text("not an image")
    state, status, downloads = logic.segment([str(bad), str(images[0]), str(images[1])])
    assert state is not None and len(state["items"]) == 1
    assert "3 files uploaded: only the first 2" in status and "notes.txt" in status
    assert warned and "notes.txt" in warned[0] and infos
    state, status, _ = logic.segment([str(bad)])
    assert state is None and status.startswith("No image could be segmented.")


def test_inference_failure_is_one_line(tmp_path, images):
    logic, warned, _ = _logic(tmp_path)
    logic.predictor = FakePredictor(0, fail=True)
    state, status, downloads = logic.segment([str(images[0])])
    assert state is None and downloads == []
    assert status == "Inference failed: RuntimeError: device lost" and warned == [status]


def test_toggle_runs_the_before_model_once(tmp_path, images):
    before = FakePredictor(2)
    logic, _, _ = _logic(tmp_path, before)
    state, _, _ = logic.segment([str(p) for p in images])
    off = logic.toggle(state, 1, 0.5, False)
    assert not off["compare_visible"] and off["before"] is None and before.calls == []
    on = logic.toggle(state, 1, 0.5, True)
    assert on["compare_visible"] and Path(on["before"]).is_file() and before.calls == [2]
    logic.toggle(state, 0, 1.0, True)
    assert before.calls == [2]  # its predictions are kept in the state
    assert "street 1_overlay.png" in on["overlay"]


def test_toggle_with_a_failing_before_model_shows_the_adapted_model(tmp_path, images):
    logic, warned, _ = _logic(tmp_path, FakePredictor(2, fail=True))
    state, _, _ = logic.segment([str(images[0])])
    view = logic.toggle(state, 0, 0.5, True)
    assert not view["compare_visible"] and Path(view["overlay"]).is_file()
    assert warned == ["The before-adaptation model failed: RuntimeError: device lost"]


def test_messages_and_helpers():
    assert status_markdown("Done.", ["small"], ["a `b`"]) == "Done.\n- ⚠️ a 'b'\n- ℹ️ small"
    assert failure_message("Oops", ValueError("")) == "Oops: ValueError"
    assert deep_link({"example": "2", "compare": "1"}, 3, True) == (1, True)
    assert deep_link({"example": "2", "compare": "yes"}, 3, False) == (1, False)  # no before model
    assert deep_link({"example": "4"}, 3, True) is None and deep_link({"example": "../x"}, 3, True) is None
    assert selected_example(1, 2) == 1 and selected_example([1, 0], 2) == 1 and selected_example(5, 2) is None
    state = {"items": [{}, {}]}
    assert item_index(state, 1) == 1 and item_index(state, 7) == 0 and item_index(None, 1) == 0
