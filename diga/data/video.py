"""Frames sampled from videos as an unlabelled target set: ``video:drive.mp4?fps=2``, ``video:DIR``.

Nothing is extracted beforehand: building the dataset reads each video's packet timestamps once
(:func:`~diga.data.video_decode.index_video`, no decoding) and picks the frames shown every
``1/fps`` seconds; an item is decoded when it is read, by seeking (see
:mod:`diga.data.video_decode` for why seeking rather than a frame cache). Each DataLoader worker
opens its own containers, lazily, on first use.

A frame's sample path is ``VIDEO/NAME.frame`` with ``NAME`` = :func:`frame_name` (e.g.
``drive.mp4/drive_t000012.500.frame``): not a file, but a stable name from which pseudo-labels
take theirs.
"""

from __future__ import annotations

import logging
import math
import os
from collections import OrderedDict
from pathlib import Path

import torch

from diga.classes import CITYSCAPES19, IGNORE_INDEX, LabelSpace

from .base import Sample, SegmentationDataset, Transform
from .common import IdMapper, read_list_file, scan_files
from .errors import DatasetError
from .video_decode import (
    VIDEO_EXTENSIONS,
    FrameSeeker,
    VideoDecodeError,
    VideoIndex,
    frame_name,
    index_video,
    is_video_file,
    sample_frames,
)

log = logging.getLogger("diga.data")

DEFAULT_FPS = 2.0
MAX_OPEN_VIDEOS = 4  # containers kept open per process (video:DIR reads many files)

_INDEX_CACHE: dict[tuple[str, int, int], VideoIndex] = {}  # (path, size, mtime) -> index
# Open videos a forked DataLoader worker inherited from its parent: kept referenced and never used.
# Freeing them in the child would join FFmpeg's decoder and scaler threads, which exist only in the
# parent: the worker hangs or crashes (seen with libswscale's slice threads).
_INHERITED: list[OrderedDict] = []


def cached_index(path: Path) -> VideoIndex:
    """:func:`index_video` once per file version and process (stages rebuild the target set)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _INDEX_CACHE:
        _INDEX_CACHE[key] = index_video(path)
    return _INDEX_CACHE[key]


def check_fps(fps: float | str | os.PathLike, where: str = "video") -> float:
    """A positive, finite frames-per-second value (specs give it as text)."""
    try:
        value = float(os.fspath(fps)) if not isinstance(fps, (int, float)) else float(fps)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise DatasetError(f"{where}: fps must be a positive number of frames per second, got {fps!r} "
                           f"(e.g. video:drive.mp4?fps=2)")
    return value


class VideoFrameDataset(SegmentationDataset):
    """The frames of one video, or of every video under a folder (recursive, sorted by relative
    path, hidden files skipped), sampled at ``fps`` frames per second; unlabelled (labels all 255).

    Frames come out upright (rotation metadata applied). A video cut short is used up to where it
    is readable, with a warning; a file that is no readable video is a :class:`DatasetError`.
    ``split`` is ignored; ``list_file`` names videos inside a folder root.
    """

    name = "video"
    # FFmpeg keeps decoder and scaler thread pools that a forked worker inherits in an undefined
    # state: a worker forked after the parent had used FFmpeg segfaulted in the test suite. Spawned
    # workers start clean (the dataset pickles without its open files).
    worker_start_method = "spawn"

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        label_space: LabelSpace | str = CITYSCAPES19,
        transform: Transform | None = None,
        list_file: str | os.PathLike | None = None,
        fps: float | str = DEFAULT_FPS,
        *,
        on_size_mismatch: str = "error",
    ):
        self.fps = check_fps(fps, f"video:{root}")
        self.videos: list[VideoIndex] = []
        self.frames: list[tuple[int, int]] = []  # per sample: (index into videos, pts)
        super().__init__(root, split, label_space, transform, list_file, on_size_mismatch=on_size_mismatch)
        self._seekers: OrderedDict[int, FrameSeeker] = OrderedDict()
        self._pid = os.getpid()

    # -- finding frames ------------------------------------------------------------------------

    def _find_samples(self) -> list[Sample]:
        samples: list[Sample] = []
        for path in self._video_files():
            try:
                index = cached_index(path)
            except VideoDecodeError as e:
                raise DatasetError(str(e)) from None
            if index.cut_short:
                log.warning("video %s seems cut short (%d frame(s) readable%s, %d corrupt packet(s)); "
                            "frames up to %.3f s are used", path, len(index.pts),
                            f" of {index.declared_frames}" if index.declared_frames else "",
                            index.skipped_packets, index.duration)
            video = len(self.videos)
            self.videos.append(index)
            for pts in sample_frames(index.pts, index.time_base, self.fps):
                self.frames.append((video, pts))
                samples.append((path / f"{frame_name(path, index.seconds(pts))}.frame", None))
        return samples

    def _video_files(self) -> list[Path]:
        root = self.root
        kinds = ", ".join(VIDEO_EXTENSIONS)
        if not root.exists():
            raise DatasetError(f"video file or folder {root} does not exist")
        if root.is_file():
            if not is_video_file(root):
                raise DatasetError(f"{root} is not a video file (expected one of {kinds}) or a folder of videos")
            return [root]
        videos = (read_list_file(self.list_file, [root]) if self.list_file is not None
                  else scan_files(root, VIDEO_EXTENSIONS, recursive=True))
        if not videos:
            raise DatasetError(f"no videos ({kinds}) found under {root}")
        return videos

    def _make_mapper(self) -> IdMapper:
        return IdMapper.identity(self.label_space.num_classes, source=self.label_space.name)

    # -- reading -------------------------------------------------------------------------------

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.read_frame(index)
        label = torch.full(image.shape[-2:], IGNORE_INDEX, dtype=torch.int64)
        if self.transform is not None:
            image, label = self.transform(image, label)
        return image, label

    def read_frame(self, index: int) -> torch.Tensor:
        """Sample ``index`` as a (3, H, W) uint8 RGB tensor, upright."""
        video, pts = self.frames[index]
        try:
            pixels = self._seeker(video).frame(pts)
        except VideoDecodeError as e:
            raise DatasetError(str(e)) from None
        return torch.from_numpy(pixels).permute(2, 0, 1).contiguous()

    def image_size(self, index: int = 0) -> tuple[int, int]:
        """(H, W) of sample ``index``, upright."""
        return tuple(self.read_frame(index).shape[-2:])

    def _seeker(self, video: int) -> FrameSeeker:
        if self._pid != os.getpid():  # a forked worker: its own files; the parent's are left alone
            _INHERITED.append(self._seekers)
            self._seekers, self._pid = OrderedDict(), os.getpid()
        seeker = self._seekers.get(video)
        if seeker is None:
            try:
                seeker = FrameSeeker(self.videos[video])
            except VideoDecodeError as e:
                raise DatasetError(str(e)) from None
            self._seekers[video] = seeker
            while len(self._seekers) > MAX_OPEN_VIDEOS:
                self._seekers.popitem(last=False)[1].close()
        self._seekers.move_to_end(video)
        return seeker

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_seekers"] = OrderedDict()  # open containers do not travel to worker processes
        return state

    def report(self) -> str:
        cut = [str(v.path) for v in self.videos if v.cut_short]
        return super().report() + (f"; {len(cut)} video(s) cut short: {', '.join(cut[:5])}" if cut else "")

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(root={str(self.root)!r}, {len(self.videos)} video(s), fps={self.fps:g}, "
                f"{len(self)} frames, unlabelled, label_space={self.label_space.name!r})")
