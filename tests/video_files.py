"""Small videos made with PyAV for the video tests: a moving bar over a grey level that encodes
the frame's number (it survives compression), and a red corner that shows the orientation."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

LEVEL_STEP = 12  # grey level of frame i: 12 * i (frames 0..20 stay below 255)


def frame_pixels(i: int, size: tuple[int, int] = (64, 128)) -> np.ndarray:
    """Frame ``i``: grey ``12 * i`` with a white bar moving right and a red top-left corner."""
    h, w = size
    a = np.full((h, w, 3), LEVEL_STEP * i % 256, np.uint8)
    x = (i * 7) % max(w - 8, 1)
    a[h // 2:, x:x + 8] = 255
    a[: h // 4, : w // 8] = (255, 0, 0)
    return a


def frame_number(pixels: np.ndarray) -> int:
    """The frame number encoded by :func:`frame_pixels`, read from an unrotated frame's grey area."""
    h, w = pixels.shape[:2]
    return int(round(float(pixels[h // 4: h // 2, w // 2:, 1].mean()) / LEVEL_STEP))


def make_video(path: Path, n: int = 12, size: tuple[int, int] = (64, 128), fps: int = 10, *,
               codec: str = "libx264", pts: list[int] | None = None, time_base: Fraction | None = None,
               rotation: int | None = None, audio: bool = False, faststart: bool = False, gop: int | None = None,
               frame=frame_pixels) -> Path:
    """Write ``n`` frames of ``frame(i, size)``; ``pts`` + ``time_base`` give irregular (VFR)
    timestamps; ``rotation`` sets the display matrix (counter-clockwise degrees); ``gop``: a key
    frame every ``gop`` frames."""
    import av

    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as c:
        s = c.add_stream(codec, rate=fps)
        s.width, s.height = size[1], size[0]
        s.pix_fmt = "yuv420p"
        if time_base is not None:
            s.time_base = s.codec_context.time_base = time_base
        if rotation is not None:
            s.set_display_rotation(rotation)
        if gop is not None:
            s.codec_context.gop_size = gop
            s.options = {"x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0"}
        a = c.add_stream("aac", rate=8000) if audio else None
        for i in range(n):
            f = av.VideoFrame.from_ndarray(frame(i, size), format="rgb24")
            if pts is not None:
                f.pts, f.time_base = pts[i], time_base
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
        if a is not None:
            samples = np.zeros((1, 1024), np.float32)
            for k in range(8):
                af = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
                af.sample_rate, af.pts = 8000, k * 1024
                for p in a.encode(af):
                    c.mux(p)
            for p in a.encode():
                c.mux(p)
    return path


def make_empty_video(path: Path) -> Path:
    """A video file whose header is written but that holds no frame at all."""
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = 128, 64, "yuv420p"
        c.start_encoding()
        for p in s.encode():
            c.mux(p)
    return path


def has_display_rotation() -> bool:
    """Whether this PyAV can write a display matrix (``VideoStream.set_display_rotation``)."""
    import av

    return hasattr(av.video.stream.VideoStream, "set_display_rotation")
