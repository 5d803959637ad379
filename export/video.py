"""Segment a video: frames stream from the decoder through the Predictor into an overlay video.

``predict_video(predictor, "drive.mp4", out)`` writes ``out/drive_overlay.mp4`` (and, with
``frames=True``, ``out/drive_frames/drive_t000012.500_labels.png`` per frame). Frames are decoded
(:mod:`diga.data.video_decode`: upright, in order), predicted ``batch`` at a time and encoded at
once, so memory does not grow with the length of the video.

The overlay video keeps the input's size (upright; a dimension is padded by one pixel where H.264
needs an even one) and its timing: each frame keeps its timestamp, so constant and variable frame
rates come out as they went in. It is H.264 (``libx264``, which PyAV's wheels ship) in MP4, else
MPEG-4 Part 2; the audio track is dropped (the result says so).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from rich.console import Console

from diga.data.video_decode import (
    VIDEO_EXTENSIONS,
    Frame,
    FrameStream,
    VideoDecodeError,
    frame_name,
    is_video_file,
)
from diga.io import temp_beside
from diga.progress import progress_bar

from .errors import PredictorError
from .images import OutputNamer

__all__ = ["VIDEO_EXTENSIONS", "VideoResult", "VideoWriter", "describe", "is_video", "predict_video", "predict_videos",
           "video_codec"]

FALLBACK_RATE = Fraction(25)  # for streams that declare no frame rate at all


def is_video(path: str | os.PathLike) -> bool:
    """Whether ``diga predict`` treats ``path`` as a video (by its extension)."""
    return is_video_file(path)


@lru_cache(maxsize=1)
def video_codec() -> str:
    """``libx264`` when this PyAV build has it (browsers play it), else ``mpeg4``."""
    import av

    try:
        av.codec.Codec("libx264", "w")
        return "libx264"
    except Exception:  # noqa: BLE001 - any failure to find the encoder means: not available
        return "mpeg4"


class VideoWriter:
    """An MP4 file written frame by frame from (H, W, 3) uint8 RGB arrays with timestamps."""

    def __init__(self, path: str | os.PathLike, size: tuple[int, int], rate: Fraction | None,
                 time_base: Fraction) -> None:
        import av

        self.path = Path(path)
        self.codec = video_codec()
        h, w = size
        self.size = (h + h % 2, w + w % 2)  # 4:2:0 chroma needs even sizes
        self.padded = self.size != (h, w)
        self.rate = Fraction(rate).limit_denominator(1001 * 1000) if rate else FALLBACK_RATE
        self.time_base = time_base  # of the timestamps given to write()
        # The encoder's time base: the input's, so frames keep their exact timestamps (a coarser
        # 1/rate would merge the close frames of a variable-rate video); MPEG-4 Part 2 allows
        # denominators up to 65535 only (MPEG-TS uses 1/90000).
        self.codec_time_base = (time_base if self.codec == "libx264" or time_base.denominator <= 65535
                                else Fraction(1, 60000))
        self.container = av.open(str(self.path), mode="w", format="mp4", options={"movflags": "+faststart"})
        self.stream = self.container.add_stream(self.codec, rate=self.rate)
        self.stream.width, self.stream.height = self.size[1], self.size[0]
        self.stream.pix_fmt = "yuv420p"
        self.stream.time_base = self.stream.codec_context.time_base = self.codec_time_base
        if self.codec == "libx264":
            self.stream.options = {"crf": "20", "preset": "veryfast"}
        else:
            self.stream.bit_rate = max(2_000_000, int(self.size[0] * self.size[1] * float(self.rate) * 0.2))
        self._last_pts: int | None = None
        self.frames = 0

    def write(self, rgb: np.ndarray, pts: int) -> None:
        """One frame shown at ``pts`` (in ``time_base`` units); timestamps must increase, and a
        repeated one is moved one tick on."""
        import av

        if self.codec_time_base != self.time_base:
            pts = round(pts * self.time_base / self.codec_time_base)
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1
        self._last_pts = pts
        h, w = rgb.shape[:2]
        if (h, w) != self.size:
            rgb = np.pad(rgb, ((0, self.size[0] - h), (0, self.size[1] - w), (0, 0)), mode="edge")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts, frame.time_base = pts, self.codec_time_base
        for packet in self.stream.encode(frame):
            self.container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder and finish the file (a valid video even after an error mid-way)."""
        if self.container is None:
            return
        try:
            for packet in self.stream.encode():
                self.container.mux(packet)
        finally:
            self.container.close()
            self.container = None


@dataclass
class VideoResult:
    """What :func:`predict_video` wrote and what the user should know about it."""

    source: Path
    overlay: Path
    frames: int  # frames segmented and written
    size: tuple[int, int]  # (H, W) of the written frames
    rate: Fraction | None
    codec: str
    frames_dir: Path | None = None
    notes: list[str] = field(default_factory=list)  # e.g. the audio was dropped
    problems: list[str] = field(default_factory=list)  # damage met: some frames could not be decoded


class _OverlayWriter:
    """Predictions of a frame stream -> overlay video (+ label PNGs), the writer opened on the first frame."""

    def __init__(self, predictor: Any, reader: FrameStream, tmp: Path, alpha: float, frames_dir: Path | None,
                 on_frame: Callable[[Frame, Any], None] | None, label_ids: np.ndarray | None = None) -> None:
        self.predictor, self.reader, self.tmp, self.alpha = predictor, reader, tmp, alpha
        self.frames_dir, self.on_frame, self.label_ids = frames_dir, on_frame, label_ids
        self.writer: VideoWriter | None = None
        self.start: int | None = None
        self.frames = 0

    def write(self, batch: list[Frame]) -> None:
        for frame, pred in zip(batch, self.predictor.predict([f.pixels for f in batch])):
            if self.writer is None:
                self.start = frame.pts
                self.writer = VideoWriter(self.tmp, frame.pixels.shape[:2], self.reader.rate, self.reader.time_base)
            self.writer.write(pred.overlay(self.alpha), frame.pts - self.start)
            if self.frames_dir is not None:
                self.frames_dir.mkdir(exist_ok=True)
                name = frame_name(self.reader.path, frame.seconds)
                if self.label_ids is None:
                    Image.fromarray(pred.labels, mode="L").save(self.frames_dir / f"{name}_labels.png")
                else:  # --format cityscapes: label ids, named like its still images' <stem>.png
                    Image.fromarray(self.label_ids[pred.labels], mode="L").save(self.frames_dir / f"{name}.png")
            if self.on_frame is not None:
                self.on_frame(frame, pred)
            self.frames += 1

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _limit_note(frames: int, seconds: float, max_frames: int | None, max_seconds: float | None) -> str:
    limits = [f"{max_frames} frames" if max_frames is not None else "",
              f"{max_seconds:g} s" if max_seconds is not None else ""]
    return (f"only the first {frames} frames ({seconds:.1f} s) were segmented: the limit is "
            + " or ".join(x for x in limits if x))


def predict_video(
    predictor: Any,
    path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    alpha: float = 0.5,
    frames: bool = False,
    batch: int | None = None,
    console: Console | None = None,
    show_progress: bool = True,
    max_frames: int | None = None,
    max_seconds: float | None = None,
    max_pixels: int | None = None,
    namer: OutputNamer | None = None,
    on_frame: Callable[[Frame, Any], None] | None = None,
    label_ids: np.ndarray | None = None,
) -> VideoResult:
    """Segment every frame of ``path`` (up to ``max_frames`` / ``max_seconds``) into an overlay video.

    ``predictor``: a :class:`~diga.export.Predictor` (anything with its ``predict``). A file that
    is no readable video, or whose frames exceed ``max_pixels``, raises :class:`PredictorError`
    before anything is written; damage met on the way (a file cut short) ends up in ``problems``,
    with the frames before it written. ``on_frame(frame, prediction)`` is called after each frame
    is encoded. ``label_ids``: a train-id -> label-id table; the frames' PNGs then hold label ids.
    """
    path, out_dir = Path(path), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    namer = namer or OutputNamer(out_dir)
    stem = namer.stem(path)
    target = namer.path(stem, "_overlay.mp4")
    tmp = temp_beside(target, ".mp4")  # unique per writer; a killed run's temp is found by remove_stale_temps
    try:
        reader = FrameStream(path)
    except VideoDecodeError as e:
        raise PredictorError(str(e)) from None
    bs = batch or getattr(predictor, "batch_size", None) or 4
    notes: list[str] = []
    with reader:
        out = _OverlayWriter(predictor, reader, tmp, alpha, namer.path(stem, "_frames") if frames else None, on_frame,
                             label_ids)
        total = reader.declared_frames or None
        if max_frames is not None:
            total = min(total or max_frames, max_frames)
        try:
            with progress_bar(console, enabled=show_progress, rate=True) as progress:
                task = progress.add_task(f"{path.name}: frames", total=total)
                pending: list[Frame] = []
                for frame in reader:
                    if max_pixels is not None and frame.pixels.shape[0] * frame.pixels.shape[1] > max_pixels:
                        h, w = frame.pixels.shape[:2]
                        raise PredictorError(f"video file {path} has {w}x{h} frames; at most {max_pixels:,} "
                                             "pixels per frame are accepted here")
                    seen = out.frames + len(pending)
                    if (max_frames is not None and seen >= max_frames) or (
                            max_seconds is not None and frame.seconds >= max_seconds):
                        notes.append(_limit_note(seen, frame.seconds, max_frames, max_seconds))
                        break
                    pending.append(frame)
                    if len(pending) >= bs:
                        out.write(pending)
                        progress.advance(task, len(pending))
                        pending = []
                if pending:
                    out.write(pending)
                    progress.advance(task, len(pending))
        except BaseException as e:
            out.close()
            tmp.unlink(missing_ok=True)
            if isinstance(e, VideoDecodeError):  # not one frame could be decoded
                raise PredictorError(str(e)) from None
            raise
        out.close()
        problems = []
        if reader.skipped_packets:
            problems.append(f"{path}: {reader.skipped_packets} damaged packet(s) could not be decoded (is the file "
                            f"cut short or corrupt?); the overlay video holds the {out.frames} frame(s) that did")
        if reader.has_audio:
            notes.append("the audio track was dropped: the overlay video has no sound")
        if reader.rotation:
            notes.append(f"rotation metadata applied: frames turned {reader.rotation} degrees "
                         "counter-clockwise, written upright")
    writer = out.writer
    if writer is None:  # FrameStream raises before this when no frame decodes
        raise PredictorError(f"video file {path} holds no video frames")
    if writer.padded:
        notes.append(f"frames padded by one pixel to {writer.size[1]}x{writer.size[0]} (H.264 needs even sizes)")
    os.replace(tmp, target)
    return VideoResult(path, target, out.frames, writer.size, reader.rate, writer.codec, out.frames_dir, notes,
                       problems)


CODEC_NAMES = {"libx264": "H.264", "mpeg4": "MPEG-4 Part 2 (this PyAV build has no H.264 encoder)"}


def describe(result: VideoResult) -> str:
    """One line: what was read and where the overlay went."""
    rate = f"{float(result.rate):.3g} fps" if result.rate else "unknown fps"
    h, w = result.size
    text = (f"{result.source.name}: {result.frames} frame(s), {rate}, {w}x{h} -> {result.overlay} "
            f"({CODEC_NAMES.get(result.codec, result.codec)})")
    return text + (f"; label PNGs in {result.frames_dir}" if result.frames_dir else "")


def predict_videos(predictor: Any, paths: list[Path], out_dir: str | os.PathLike, *, namer: OutputNamer | None = None,
                   alpha: float = 0.5, frames: bool = False, label_ids: np.ndarray | None = None,
                   console: Console | None = None, log: Callable[[str], None] = print, warn: Callable[[str], None] = print) -> list[str]:
    """:func:`predict_video` for each video in turn, saying what it wrote (``log``) and what went
    wrong (``warn``); returns the failures, one line each (a bad video does not stop the others)."""
    failures: list[str] = []
    for path in paths:
        try:
            result = predict_video(predictor, path, out_dir, alpha=alpha, frames=frames, console=console,
                                   namer=namer, label_ids=label_ids)
        except PredictorError as e:
            warn(str(e))
            failures.append(str(e))
            continue
        log(describe(result))
        for note in result.notes:
            log(f"  note: {note}")
        for problem in result.problems:
            warn(problem)
            failures.append(problem)
    return failures
