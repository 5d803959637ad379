"""Videos as a target set (``video:FILE?fps=N``, ``video:DIR``) and the one video decoder: frame
sampling at constant and variable frame rates, seeking that returns the right frame, rotation
metadata, DataLoader workers, pseudo-label names, and clear errors for broken files."""

from __future__ import annotations

import logging
import pickle
import random
import struct
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

pytest.importorskip("av")

from video_files import frame_number, frame_pixels, has_display_rotation, make_empty_video, make_video  # noqa: E402

from diga.data import DatasetError, VideoFrameDataset, build_dataset, parse_spec, parse_spec_options  # noqa: E402
from diga.data.base import worker_start_method  # noqa: E402
from diga.data.video_decode import (  # noqa: E402
    FrameStream,
    display_matrix_rotation,
    frame_name,
    frame_rotation,
    index_video,
    sample_frames,
    upright,
)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """20 frames at 10 fps, 64x128."""
    return make_video(tmp_path_factory.mktemp("video") / "drive.mp4", n=20)


# -- sampling (pure) ------------------------------------------------------------------------------

def test_sample_frames_constant_rate():
    pts = list(range(0, 30 * 512, 512))  # 30 frames at 30 fps in 1/15360
    assert sample_frames(pts, Fraction(1, 15360), 2) == pts[::15]
    assert sample_frames(pts, Fraction(1, 15360), 100) == pts  # above the video's rate: every frame once


def test_sample_frames_variable_rate():
    pts = [0, 100, 130, 700, 720, 1500, 2100]  # ms
    # times 0, 0.5, 1.0, 1.5, 2.0 s -> the last frame started at or before each
    assert sample_frames(pts, Fraction(1, 1000), 2) == [0, 130, 720, 1500]


def test_sample_frames_tolerates_rounded_timestamps():
    pts = [round(i * 1000 / 30) for i in range(12)]  # Matroska: 1/30 s rounded to ms
    assert sample_frames(pts, Fraction(1, 1000), 7.5) == [pts[0], pts[4], pts[8]]


def test_frame_name_is_stable():
    assert frame_name(Path("/x/DRIVE.mp4"), 12.5) == "DRIVE_t000012.500"
    assert frame_name("a.mov", 0) == "a_t000000.000"


# -- rotation helpers (pure) ----------------------------------------------------------------------

def _matrix(a, b, c, d) -> bytes:
    return struct.pack("<9i", a << 16, b << 16, 0, c << 16, d << 16, 0, 0, 0, 1 << 30)


def test_display_matrix_rotation():
    assert display_matrix_rotation(_matrix(1, 0, 0, 1)) == 0
    assert display_matrix_rotation(_matrix(0, -1, 1, 0)) == pytest.approx(90)
    assert display_matrix_rotation(_matrix(0, 1, -1, 0)) == pytest.approx(-90)  # a phone held upright
    assert display_matrix_rotation(b"\0" * 36) is None


def test_frame_rotation_sources():
    assert frame_rotation(SimpleNamespace(rotation=90)) == 90
    assert frame_rotation(SimpleNamespace(rotation=-90)) == 270
    side = SimpleNamespace(type="Type.DISPLAYMATRIX", __bytes__=None)
    side = type("Side", (), {"type": "Type.DISPLAYMATRIX", "__bytes__": lambda self: _matrix(0, 1, -1, 0)})()
    assert frame_rotation(SimpleNamespace(side_data=[side])) == 270  # PyAV without VideoFrame.rotation
    legacy = SimpleNamespace(metadata={"rotate": "90"})  # old files: clockwise degrees
    assert frame_rotation(SimpleNamespace(rotation=0), legacy) == 270


def test_upright_turns_counter_clockwise():
    a = np.zeros((2, 3, 3), np.uint8)
    a[0, 2] = 255  # top-right
    assert upright(a, 90).shape == (3, 2, 3) and upright(a, 90)[0, 0, 0] == 255  # -> top-left
    assert upright(a, 0) is a


# -- the dataset ---------------------------------------------------------------------------------

def test_video_dataset_samples_at_fps(clip):
    ds = build_dataset(f"video:{clip}?fps=2")
    assert isinstance(ds, VideoFrameDataset) and len(ds) == 4  # 0, 0.5, 1.0, 1.5 s of a 1.9 s clip
    assert [p.name for p, _ in ds.samples] == [f"drive_t{t:010.3f}.frame" for t in (0, 0.5, 1.0, 1.5)]
    image, label = ds[1]
    assert image.dtype == torch.uint8 and image.shape == (3, 64, 128)
    assert label.dtype == torch.int64 and bool((label == 255).all()) and not ds.has_labels
    assert frame_number(image.permute(1, 2, 0).numpy()) == 5
    assert len(build_dataset(f"video:{clip}")) == 4  # default 2 fps
    assert ds.image_size(0) == (64, 128)


def test_seeking_returns_the_same_frames_as_decoding_in_order(clip):
    ds = build_dataset(f"video:{clip}?fps=10")  # every frame
    with FrameStream(clip) as frames:
        in_order = [f.pixels for f in frames]
    assert len(ds) == len(in_order) == 20
    order = list(range(20))
    random.Random(0).shuffle(order)
    for i in order:
        assert np.array_equal(ds[i][0].permute(1, 2, 0).numpy(), in_order[i]), i
    assert [frame_number(p) for p in in_order] == list(range(20))


def test_reading_on_and_a_seek_that_lands_past_its_frame(tmp_path):
    """In-order reads decode on without seeking until a key frame lies in between; a seek that
    lands after the wanted frame (a bad index) falls back to reading from the start."""
    from diga.data.video_decode import FrameSeeker

    class SeekSpy:  # the container, with its seeks recorded (and optionally sent elsewhere)
        def __init__(self, inner):
            self.inner, self.seeks, self.land_on = inner, [], None

        def seek(self, offset, **kw):
            self.seeks.append(offset)
            return self.inner.seek(self.land_on if kw and self.land_on is not None else offset, **kw)

        def __getattr__(self, name):
            return getattr(self.inner, name)

    path = make_video(tmp_path / "gop.mp4", n=20, gop=5)
    index = index_video(path)
    assert index.keyframes == index.pts[::5]
    seeker = FrameSeeker(index)
    spy = seeker.container = SeekSpy(seeker.container)
    assert [frame_number(seeker.frame(index.pts[i])) for i in (1, 2, 4, 6, 7)] == [1, 2, 4, 6, 7]
    assert spy.seeks == [index.pts[1], index.pts[6]]  # frame 1, then past the key frame 5 for frame 6
    spy.land_on = index.keyframes[-1]  # the next seek lands on frame 15
    assert frame_number(seeker.frame(index.pts[3])) == 3
    assert spy.seeks[-2:] == [index.pts[3], 0]  # ... so it read from the start instead
    seeker.close()


def test_variable_frame_rate(tmp_path):
    pts = [0, 40, 90, 400, 430, 1100, 1130, 1160, 1900, 2000]  # ms, irregular
    path = make_video(tmp_path / "vfr.mkv", n=len(pts), pts=pts, time_base=Fraction(1, 1000))
    index = index_video(path)
    assert [round(index.seconds(p), 3) for p in index.pts] == [p / 1000 for p in pts]
    ds = build_dataset(f"video:{path}?fps=2")  # 0, 0.5, 1.0, 1.5, 2.0 s -> frames 0, 4, 4 (again), 7, 9
    assert [frame_number(ds[i][0].permute(1, 2, 0).numpy()) for i in range(len(ds))] == [0, 4, 7, 9]
    with FrameStream(path) as frames:
        assert [round(f.seconds, 3) for f in frames] == [p / 1000 for p in pts]


@pytest.mark.skipif(not has_display_rotation(), reason="this PyAV cannot write a display matrix")
def test_rotated_video_comes_out_upright(tmp_path):
    path = make_video(tmp_path / "phone.mp4", n=4, rotation=90)
    ds = build_dataset(f"video:{path}?fps=10")
    image = ds[0][0].permute(1, 2, 0).numpy()
    assert image.shape == (128, 64, 3) and ds.image_size(0) == (128, 64)
    # The stored top-left red corner, turned 90 degrees counter-clockwise, is at the bottom left.
    assert image[-4, 4, 0] > 200 and image[-4, 4, 1] < 60
    assert np.array_equal(image, upright(_decoded_first_frame(path), 90))


def _decoded_first_frame(path: Path) -> np.ndarray:
    import av

    with av.open(str(path)) as c:
        return next(c.decode(video=0)).to_ndarray(format="rgb24")


def test_video_folder_is_recursive_and_sorted(tmp_path, clip):
    (tmp_path / "b").mkdir()
    make_video(tmp_path / "b" / "second.mkv", n=5)
    make_video(tmp_path / "a.MOV", n=5, codec="libx264")
    make_video(tmp_path / ".hidden.mp4", n=5)
    (tmp_path / "notes.txt").write_text("not a video")
    ds = build_dataset(f"video:{tmp_path}?fps=10")
    assert [v.path.name for v in ds.videos] == ["a.MOV", "second.mkv"]
    assert len(ds) == 10 and "2 video(s)" in repr(ds)


def test_the_projects_loaders_spawn_workers_for_videos(clip):
    """Training, evaluation and pseudo-label loaders (through their wrappers) start video workers by
    spawn; image datasets keep the platform's default."""
    from torch.utils.data import Subset

    from diga.engine.loaders import eval_loader
    from diga.engine.pseudolabels import _Indexed

    ds = build_dataset(f"video:{clip}?fps=5")
    assert worker_start_method(Subset(_Indexed(ds, None), [0, 1])) == "spawn"
    assert eval_loader(ds, workers=2).multiprocessing_context.get_start_method() == "spawn"
    assert eval_loader(ds, workers=0).multiprocessing_context is None


def test_dataloader_workers_open_their_own_files(clip):
    ds = build_dataset(f"video:{clip}?fps=5")
    ds[0]  # the parent opens the file...
    assert len(ds._seekers) == 1
    assert pickle.loads(pickle.dumps(ds))._seekers == {}  # ...which does not travel to workers
    assert worker_start_method(ds) == "spawn"  # FFmpeg's threads do not survive a fork
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2, timeout=120,  # fail, never hang
                                         multiprocessing_context=worker_start_method(ds))
    images = torch.cat([x for x, _ in loader])
    assert images.shape == (len(ds), 3, 64, 128)
    assert [frame_number(im.permute(1, 2, 0).numpy()) for im in images] == list(range(0, 20, 2))


def test_pseudo_label_names_are_per_frame(clip):
    from diga.engine.pseudolabels import label_file_name

    ds = build_dataset(f"video:{clip}?fps=2")
    names = [label_file_name(p, ds.root) for p, _ in ds.samples]
    assert names[1].startswith("drive_t000000.500-") and names[1].endswith(".png")
    assert len(set(names)) == len(names)
    assert names == [label_file_name(p, ds.root) for p, _ in build_dataset(f"video:{clip}?fps=2").samples]


def test_train_dataset_with_a_video_target(clip, tiny_cfg):
    """The crop check of training reads the frame size of a video target (base_size None)."""
    from diga.engine.loaders import train_dataset
    from diga.errors import ConfigError

    cfg = tiny_cfg.replace(base_size=None, crop=(48, 96))
    image, _ = train_dataset(f"video:{clip}", cfg)[0]
    assert image.shape[-2:] == (48, 96)
    with pytest.raises(ConfigError, match="larger than the images"):
        train_dataset(f"video:{clip}", cfg.replace(crop=(96, 96)))


def test_pseudo_labels_on_a_video_target(clip, tiny_cfg, tmp_path):
    from conftest import make_checkpoint

    from diga.classes import CITYSCAPES19
    from diga.engine.pseudolabels import PseudoLabelled, generate_pseudo_labels

    weights = make_checkpoint(tmp_path / "m.safetensors")
    manifest = generate_pseudo_labels(weights, f"video:{clip}?fps=2", tmp_path / "pseudo", tiny_cfg, batch_size=2)
    labels = sorted(p.name for p in (tmp_path / "pseudo" / "labels").iterdir())
    assert len(labels) == 4 and labels[0].startswith("drive_t000000.000-")
    image, combined = PseudoLabelled(manifest, CITYSCAPES19, transform=None)[3]
    assert image.shape == (3, 64, 128) and combined.shape == (64, 128)


# -- specs ---------------------------------------------------------------------------------------

def test_video_spec_options(clip):
    assert parse_spec(f"video:{clip}?fps=2.5") == ("video", clip)
    assert parse_spec_options(f"video:{clip}?fps=2.5")[2] == {"fps": 2.5}
    with pytest.raises(DatasetError, match=r"fps='abc' is not a number"):
        parse_spec(f"video:{clip}?fps=abc")
    with pytest.raises(DatasetError, match=r"unknown or empty option 'rate=2'; video accepts \?fps=NUMBER"):
        parse_spec(f"video:{clip}?rate=2")
    with pytest.raises(DatasetError, match="fps must be a positive number"):
        build_dataset(f"video:{clip}?fps=0")
    with pytest.raises(DatasetError, match=f"for a video use video:{clip}"):
        parse_spec(str(clip))


# -- broken files --------------------------------------------------------------------------------

def _error(spec: str) -> str:
    with pytest.raises(DatasetError) as info:
        build_dataset(spec)
    return str(info.value)


def test_errors_name_the_file(tmp_path, clip):
    zero = tmp_path / "zero.mp4"
    zero.write_bytes(b"")
    assert _error(f"video:{zero}") == f"video file {zero} is empty (0 bytes)"
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n")
    assert f"video file {text} is not a video but a text file" in _error(f"video:{text}")
    moov_cut = tmp_path / "cut.mp4"  # moov box at the end: cut before it
    moov_cut.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])
    assert "without its index (moov box), probably cut short" in _error(f"video:{moov_cut}")
    junk = tmp_path / "junk.mkv"
    junk.write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)))
    assert f"video file {junk} is not a video FFmpeg can read" in _error(f"video:{junk}")
    for name in ("empty.mp4", "empty.mkv"):
        empty = make_empty_video(tmp_path / name)
        assert _error(f"video:{empty}").startswith(f"video file {empty} holds no video frames (")
    missing = tmp_path / "missing.mp4"
    assert _error(f"video:{missing}") == f"video file or folder {missing} does not exist"
    png = tmp_path / "frame.png"
    png.write_bytes(b"x")
    assert f"{png} is not a video file" in _error(f"video:{png}")
    (tmp_path / "none").mkdir()
    assert "no videos (.mp4, " in _error(f"video:{tmp_path / 'none'}")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "a.mp4").write_bytes(clip.read_bytes())
    (mixed / "b.mp4").write_text("not a video either\n")
    assert _error(f"video:{mixed}").startswith(f"video file {mixed / 'b.mp4'} is not a video")  # the bad one


def test_audio_only_file(tmp_path):
    import av

    path = tmp_path / "voice.mp4"
    with av.open(str(path), "w") as c:
        a = c.add_stream("aac", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 8000, 0
        for p in [*a.encode(frame), *a.encode()]:
            c.mux(p)
    assert _error(f"video:{path}") == f"video file {path} has no video stream (streams: audio)"


def test_truncated_video_uses_the_readable_frames(tmp_path, caplog):
    full = make_video(tmp_path / "full.mp4", n=20, faststart=True, frame=_noisy)  # index first, so a cut keeps it
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: int(full.stat().st_size * 0.6)])
    with caplog.at_level(logging.WARNING, logger="diga.data"):
        ds = build_dataset(f"video:{cut}?fps=10")
    assert 5 < len(ds) < 20 and "seems cut short" in caplog.text and str(cut) in caplog.text
    assert "1 video(s) cut short" in ds.report()
    for i in range(len(ds)):  # every indexed frame decodes
        assert frame_number(ds[i][0].permute(1, 2, 0).numpy()) == i


def _noisy(i: int, size: tuple[int, int]) -> np.ndarray:
    """A frame that compresses badly (so the file is long enough to cut in the middle)."""
    a = frame_pixels(i, size)
    noise = np.random.default_rng(i).integers(0, 24, size=(size[0] // 4, size[1], 3), dtype=np.uint8)
    a[-size[0] // 4:] = noise
    return a
