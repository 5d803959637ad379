"""``diga predict VIDEO``: the overlay video keeps the input's timing and (upright) size, frames
stream through (memory does not grow with the length), label PNGs per frame, and broken files
give one clear line naming them."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("av")

from video_files import has_display_rotation, make_video  # noqa: E402

from diga.data.video_decode import FrameStream, index_video  # noqa: E402
from diga.export import PredictorError  # noqa: E402
from diga.export.predictor import Prediction  # noqa: E402
from diga.export.video import VideoWriter, predict_video, video_codec  # noqa: E402

PALETTE = np.array([[0, 0, 0], [255, 0, 0]], np.uint8)


class FakePredictor:
    """Class 1 where the red channel is bright; records the batches it was given."""

    batch_size = 4

    def __init__(self) -> None:
        self.batches: list[int] = []

    def predict(self, arrays):
        self.batches.append(len(arrays))
        return [Prediction(labels=(a[..., 0] > 128).astype(np.uint8), palette=PALETTE, image=a) for a in arrays]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("predict") / "drive.mp4", n=18, fps=12)


def _times(path: Path) -> list[float]:
    index = index_video(path)
    return [round(index.seconds(p), 3) for p in index.pts]


def test_overlay_video_keeps_timing_and_size(clip, tmp_path):
    fake = FakePredictor()
    result = predict_video(fake, clip, tmp_path / "out", show_progress=False)
    assert result.overlay == tmp_path / "out" / "drive_overlay.mp4" and result.overlay.is_file()
    assert result.frames == 18 and result.size == (64, 128) and result.rate == 12
    assert result.codec == video_codec() == "libx264"  # PyAV's wheels ship x264
    assert fake.batches == [4, 4, 4, 4, 2]
    assert _times(result.overlay) == _times(clip)
    out = index_video(result.overlay)
    assert (out.height, out.width) == (64, 128) and out.rate == 12
    with FrameStream(result.overlay) as frames:
        first = next(iter(frames)).pixels
    assert first[4, 4, 0] > 200 and first[4, 4, 1] < 60  # the red corner, labelled class 1 (red)
    assert not list((tmp_path / "out").glob(".*"))  # no partial file left


def test_variable_frame_rate_timestamps_are_kept(tmp_path):
    pts = [0, 40, 90, 400, 430, 1100, 1130, 1160, 1900, 2000]
    path = make_video(tmp_path / "vfr.mp4", n=len(pts), pts=pts, time_base=Fraction(1, 1000))
    result = predict_video(FakePredictor(), path, tmp_path / "out", show_progress=False)
    assert _times(result.overlay) == [p / 1000 for p in pts]


@pytest.mark.skipif(not has_display_rotation(), reason="this PyAV cannot write a display matrix")
def test_rotated_video_is_written_upright(tmp_path):
    path = make_video(tmp_path / "phone.mp4", n=3, rotation=90)
    result = predict_video(FakePredictor(), path, tmp_path / "out", show_progress=False)
    assert result.size == (128, 64)
    assert any("rotation metadata applied" in n for n in result.notes)
    with FrameStream(result.overlay) as frames:
        assert frames.rotation == 0 and next(iter(frames)).pixels.shape == (128, 64, 3)


def test_frames_option_writes_label_pngs(clip, tmp_path):
    from PIL import Image

    result = predict_video(FakePredictor(), clip, tmp_path, frames=True, show_progress=False)
    pngs = sorted(p.name for p in result.frames_dir.iterdir())
    assert result.frames_dir == tmp_path / "drive_frames" and len(pngs) == 18
    assert pngs[:2] == ["drive_t000000.000_labels.png", "drive_t000000.083_labels.png"]
    labels = np.array(Image.open(result.frames_dir / pngs[0]))
    assert labels.shape == (64, 128) and labels[4, 4] == 1 and labels[40, 100] == 0


def test_audio_is_dropped_and_said(tmp_path):
    path = make_video(tmp_path / "talk.mp4", n=4, audio=True)
    result = predict_video(FakePredictor(), path, tmp_path / "out", show_progress=False)
    assert "the audio track was dropped: the overlay video has no sound" in result.notes
    import av

    with av.open(str(result.overlay)) as c:
        assert not c.streams.audio and len(c.streams.video) == 1


def test_limits_stop_early_with_a_note(clip, tmp_path):
    result = predict_video(FakePredictor(), clip, tmp_path, max_frames=5, show_progress=False)
    assert result.frames == 5 and "only the first 5 frames (0.4 s) were segmented: the limit is 5 frames" in result.notes
    result = predict_video(FakePredictor(), clip, tmp_path / "b", max_seconds=1.0, show_progress=False)
    assert result.frames == 12 and any("the limit is 1 s" in n for n in result.notes)
    with pytest.raises(PredictorError, match=r"has 128x64 frames; at most 1,000 pixels per frame"):
        predict_video(FakePredictor(), clip, tmp_path / "c", max_pixels=1000, show_progress=False)


def test_mpeg4_fallback_keeps_the_timing(tmp_path, monkeypatch):
    """Without libx264 the overlay is MPEG-4 Part 2, whose time base is limited to 1/65535: a
    1/90000 input (MPEG-TS) is rescaled, and the frame times stay the same."""
    import diga.export.video as video

    monkeypatch.setattr(video, "video_codec", lambda: "mpeg4")
    writer = VideoWriter(tmp_path / "ts.mp4", (64, 128), Fraction(25), Fraction(1, 90000))
    for i in range(5):
        writer.write(np.full((64, 128, 3), 40 * i, np.uint8), 3600 * i + (1800 if i == 4 else 0))
    writer.close()
    assert writer.codec == "mpeg4" and writer.codec_time_base == Fraction(1, 60000)
    assert _times(tmp_path / "ts.mp4") == [0.0, 0.04, 0.08, 0.12, 0.18]


def test_odd_sizes_are_padded_for_h264(tmp_path):
    writer = VideoWriter(tmp_path / "odd.mp4", (63, 127), Fraction(10), Fraction(1, 10))
    for i in range(3):
        writer.write(np.full((63, 127, 3), 20 * i, np.uint8), i)
    writer.close()
    assert writer.padded and writer.size == (64, 128)
    assert (index_video(tmp_path / "odd.mp4").height, index_video(tmp_path / "odd.mp4").width) == (64, 128)


def test_truncated_video_writes_the_readable_frames(tmp_path):
    full = make_video(tmp_path / "full.mp4", n=20, faststart=True, frame=_noisy)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: int(full.stat().st_size * 0.6)])
    result = predict_video(FakePredictor(), cut, tmp_path / "out", show_progress=False)
    assert 5 < result.frames < 20 and len(_times(result.overlay)) == result.frames
    assert len(result.problems) == 1 and str(cut) in result.problems[0] and "cut short" in result.problems[0]


def _noisy(i: int, size: tuple[int, int]) -> np.ndarray:
    from video_files import frame_pixels

    a = frame_pixels(i, size)
    a[-size[0] // 4:] = np.random.default_rng(i).integers(0, 24, size=(size[0] // 4, size[1], 3), dtype=np.uint8)
    return a


@pytest.mark.parametrize("content, expected", [
    (b"", r"is empty \(0 bytes\)"),
    (b"hello, this is a text file\n", "is not a video but a text file"),
])
def test_unreadable_videos_raise_naming_the_file(tmp_path, content, expected):
    path = tmp_path / "bad.mp4"
    path.write_bytes(content)
    with pytest.raises(PredictorError, match=expected) as info:
        predict_video(FakePredictor(), path, tmp_path / "out", show_progress=False)
    assert str(path) in str(info.value)
    assert not (tmp_path / "out" / "bad_overlay.mp4").exists()


# -- streaming ----------------------------------------------------------------------------------

def test_frames_stream_through_the_encoder(tmp_path):
    """The first frames are encoded while the decoder has read only a batch or so of the video."""
    path = make_video(tmp_path / "long.mp4", n=60)
    read_when_written: list[int] = []
    fake = FakePredictor()
    streams = []
    original = FrameStream.__iter__

    def spy(self):
        streams.append(self)
        return original(self)

    FrameStream.__iter__ = spy
    try:
        predict_video(fake, path, tmp_path / "out", show_progress=False,
                      on_frame=lambda frame, pred: read_when_written.append(streams[0].frames_read))
    finally:
        FrameStream.__iter__ = original
    assert len(read_when_written) == 60
    assert read_when_written[0] <= 2 * fake.batch_size  # the first frame is written after ~one batch is read
    assert max(fake.batches) == fake.batch_size


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads the resident size from /proc")
def test_memory_does_not_grow_with_video_length(tmp_path):
    """Resident memory while frames 30..300 are predicted stays near what it was at frame 30
    (holding the frames would add over 100 MB: 192x384 RGB input and overlay per frame)."""
    path = make_video(tmp_path / "long.mp4", n=300, size=(192, 384), fps=30, frame=_moving)
    rss: list[float] = []
    result = predict_video(FakePredictor(), path, tmp_path / "out", show_progress=False,
                           on_frame=lambda frame, pred: rss.append(_rss_mb()))
    assert result.frames == 300 and len(rss) == 300
    growth = max(rss[30:]) - rss[29]
    assert growth < 40, f"resident memory grew by {growth:.0f} MB from frame 30 to 300"


def _moving(i: int, size: tuple[int, int]) -> np.ndarray:
    h, w = size
    a = np.zeros((h, w, 3), np.uint8)
    a[:, (i * 5) % w:(i * 5) % w + 40] = 255
    return a


# -- the command ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    from conftest import make_checkpoint

    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "m.safetensors", seed=3)


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("cli") / "drive.mp4", n=5, fps=12)


def test_cli_predict_video_and_image(cli, ckpt, short_clip, tmp_path):
    from PIL import Image

    image = tmp_path / "street.png"
    Image.fromarray(np.zeros((64, 128, 3), np.uint8)).save(image)
    res = cli("predict", short_clip, image, "--model", ckpt, "--out", tmp_path / "out", "--frames", "--batch", "3")
    assert res.exit_code == 0, res.output
    assert "1 image(s), 1 video(s)" in res.text
    overlay = tmp_path / "out" / "drive_overlay.mp4"
    assert f"drive.mp4: 5 frame(s), 12 fps, 128x64 -> {overlay} (H.264)" in res.text
    assert (tmp_path / "out" / "street_overlay.jpg").is_file()
    assert len(list((tmp_path / "out" / "drive_frames").glob("drive_t*_labels.png"))) == 5
    assert _times(overlay) == _times(short_clip)


def test_cli_predict_video_frames_in_cityscapes_label_ids(cli, ckpt, short_clip, tmp_path):
    from PIL import Image

    from diga.classes import get_label_space

    assert cli("predict", short_clip, "--model", ckpt, "--out", tmp_path / "train", "--frames").exit_code == 0
    res = cli("predict", short_clip, "--model", ckpt, "--out", tmp_path / "cs", "--frames", "--format", "cityscapes")
    assert res.exit_code == 0, res.output
    train_ids = sorted((tmp_path / "train" / "drive_frames").glob("drive_t*_labels.png"))
    label_ids = sorted((tmp_path / "cs" / "drive_frames").glob("drive_t*.png"))
    assert len(label_ids) == len(train_ids) == 5
    assert [p.name for p in label_ids] == [p.name.replace("_labels", "") for p in train_ids]
    lut = get_label_space("cityscapes19").to_cityscapes_label_ids()
    for t, c in zip(train_ids, label_ids):
        assert np.array_equal(lut[np.asarray(Image.open(t))], np.asarray(Image.open(c)))


def test_cli_predict_bad_video_is_one_line_and_exit_1(cli, ckpt, short_clip, tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video\n")
    res = cli("predict", bad, short_clip, "--model", ckpt, "--out", tmp_path / "out")
    assert res.exit_code == 1
    assert f"error: video file {bad} is not a video but a text file" in res.text
    assert "Traceback" not in res.output
    assert (tmp_path / "out" / "drive_overlay.mp4").is_file()  # the good one is still segmented
