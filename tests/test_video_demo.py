"""The demo's Video tab: :func:`diga.demo.logic.segment_video` without Gradio (limits, messages
that name the upload and never the server's folders), and the ``/segment_video`` endpoint of a
served app over HTTP."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("av")

from video_files import make_video  # noqa: E402

from diga.data.video_decode import FrameStream, index_video  # noqa: E402
from diga.demo.logic import IDLE_VIDEO_STATUS, MAX_VIDEO_FRAMES, MAX_VIDEO_SECONDS, segment_video  # noqa: E402
from diga.export.predictor import Prediction  # noqa: E402


class FakePredictor:
    batch_size = 4

    def predict(self, arrays):
        palette = np.array([[0, 0, 0], [0, 0, 255]], np.uint8)
        return [Prediction(labels=np.ones(a.shape[:2], np.uint8), palette=palette, image=a) for a in arrays]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("upload") / "my drive.mp4", n=8, fps=4)


def test_segment_video_returns_the_overlay_and_a_status(clip, tmp_path):
    path, status = segment_video(FakePredictor(), str(clip), tmp_path, model_name="adapt/final")
    assert Path(path).parent == tmp_path and Path(path).name == "my drive_overlay.mp4"
    assert status.startswith("Segmented **8** frames of `my drive.mp4` (128×64, 4 fps) with `adapt/final`.")
    with FrameStream(path) as frames:
        first = next(iter(frames)).pixels
    assert first.shape == (64, 128, 3) and first[..., 2].mean() > first[..., 0].mean()  # the blue class


def test_segment_video_caps_the_length(clip, tmp_path):
    assert MAX_VIDEO_SECONDS == 30 and MAX_VIDEO_FRAMES == 600
    path, status = segment_video(FakePredictor(), {"path": str(clip)}, tmp_path, max_seconds=1.0)
    assert len(index_video(path).pts) == 4
    assert "only the first 4 frames (1.0 s) were segmented: the limit is 600 frames or 1 s" in status


def test_segment_video_bad_upload_is_a_message_naming_it(tmp_path):
    upload = tmp_path / "gradio" / "abc123" / "holiday.mp4"
    upload.parent.mkdir(parents=True)
    upload.write_text("not really a video\n")
    path, status = segment_video(FakePredictor(), str(upload), tmp_path / "req")
    assert path is None
    assert "The video could not be segmented." in status
    assert "video file holiday.mp4 is not a video but a text file" in status
    assert str(upload.parent) not in status  # the server's folders stay private
    assert segment_video(FakePredictor(), None, tmp_path) == (None, IDLE_VIDEO_STATUS)


def test_segment_video_refuses_frames_above_the_pixel_budget(clip, tmp_path):
    path, status = segment_video(FakePredictor(), str(clip), tmp_path, max_pixels=4000)
    assert path is None and "video file my drive.mp4 has 128x64 frames; at most 4,000 pixels" in status


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_video_tab_over_http(clip, tmp_path, monkeypatch):
    from conftest import make_checkpoint
    from gradio_client import Client, handle_file

    from diga.demo.app import serve
    from diga.demo.layout import build_app
    from diga.export import Predictor

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "out" / "gradio"))
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    predictor = Predictor.load(make_checkpoint(tmp_path / "m.safetensors"))
    demo = build_app(predictor, model_name="m.safetensors", output_dir=tmp_path / "out")
    port = _free_port()
    serve(demo, "127.0.0.1", port, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=str(tmp_path / "dl"))
        video, status = client.predict(handle_file(str(clip)), 0.5, api_name="/segment_video")
        assert "Segmented **8** frames of `my drive.mp4`" in status, status
        overlay = Path(video["video"] if isinstance(video, dict) else video)
        index = index_video(overlay)
        assert len(index.pts) == 8 and (index.height, index.width) == (64, 128) and index.rate == 4
        assert list((tmp_path / "out" / "requests").glob("*/my drive_overlay.mp4"))
    finally:
        demo.close()
