"""The base class of all datasets: sample list, reading, id mapping, transform."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from diga.classes import CITYSCAPES19, IGNORE_INDEX, LabelSpace

from .common import (
    LAYOUTS,
    TITLES,
    IdMapper,
    check_same_size,
    layout_hint,
    read_image,
    read_label,
    resolve_label_space,
)
from .errors import DatasetError, list_names

log = logging.getLogger("diga.data")

Sample = tuple[Path, Path | None]
Transform = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class SegmentationDataset(Dataset):
    """``dataset[i] -> (image, label)``: (3, H, W) uint8 RGB and (H, W) int64 trainIds of
    :attr:`label_space` (255 = ignore; all 255 for unlabelled samples).

    Subclasses set :attr:`name` and implement :meth:`_find_samples` and :meth:`_make_mapper`.
    ``on_size_mismatch``: ``"error"`` (default) raises :class:`DatasetError` when an image and its
    label differ in size; ``"resize"`` resizes the label (nearest) to the image and counts it in
    :attr:`resized_labels`.
    """

    name: str = "dataset"
    label_channel: int | None = None  # channel of a multi-channel label holding the id
    exif: bool = False  # apply EXIF orientation to images
    has_splits: bool = False  # whether ``split`` selects files (Cityscapes) or is ignored
    # How DataLoader workers over this dataset start (None: the platform's default, fork on Linux).
    worker_start_method: str | None = None

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        label_space: LabelSpace | str = CITYSCAPES19,
        transform: Transform | None = None,
        list_file: str | os.PathLike | None = None,
        *,
        on_size_mismatch: str = "error",
    ):
        if on_size_mismatch not in ("error", "resize"):
            raise ValueError(
                f"on_size_mismatch must be 'error' or 'resize', got {on_size_mismatch!r}")
        self.root = Path(root).expanduser()
        self.split = split
        self.label_space = resolve_label_space(label_space)
        self.transform = transform
        self.list_file = Path(list_file).expanduser() if list_file is not None else None
        self.on_size_mismatch = on_size_mismatch
        self.resized_labels = 0
        self.samples: list[Sample] = self._find_samples()
        self.has_labels: bool = bool(self.samples) and all(lb is not None for _, lb in self.samples)
        self.mapper: IdMapper = self._make_mapper()

    # -- to implement -------------------------------------------------------------------------

    def _find_samples(self) -> list[Sample]:
        raise NotImplementedError

    def _make_mapper(self) -> IdMapper:
        raise NotImplementedError

    # -- reading ------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image_path, label_path = self.samples[index]
        image = read_image(image_path, exif=self.exif)
        label = self._load_label(image, image_path, label_path)
        if self.transform is not None:
            image, label = self.transform(image, label)
        return image, label

    def _load_label(self, image: torch.Tensor, image_path: Path,
                    label_path: Path | None) -> torch.Tensor:
        h, w = image.shape[-2:]
        if label_path is None:
            return torch.full((h, w), IGNORE_INDEX, dtype=torch.int64)
        raw = read_label(label_path, self.label_channel)
        if raw.shape != (h, w) and self.on_size_mismatch == "error":
            check_same_size(image, raw, image_path, label_path)
        label = self.mapper(raw, label_path)
        if label.shape != (h, w):
            from torchvision.transforms.v2 import InterpolationMode
            from torchvision.transforms.v2 import functional as F

            log.warning("label %s is %dx%d but image %s is %dx%d; label resized (nearest)",
                        label_path, label.shape[1], label.shape[0], image_path, w, h)
            self.resized_labels += 1
            label = F.resize(label[None], [h, w], interpolation=InterpolationMode.NEAREST)[0]
        return label.to(torch.int64)

    def image_size(self, index: int = 0) -> tuple[int, int]:
        """(H, W) of sample ``index``'s image as the dataset returns it (EXIF orientation applied when
        the dataset applies it), from its header (video frames override this)."""
        from .decode import image_file_size

        return image_file_size(self.samples[index][0], exif=self.exif)

    def read_raw_label(self, index: int) -> np.ndarray | None:
        """The raw ids of sample ``index``'s label, before mapping (None if unlabelled)."""
        label_path = self.samples[index][1]
        return None if label_path is None else read_label(label_path, self.label_channel)

    # -- reporting ----------------------------------------------------------------------------

    @property
    def unknown_ids(self) -> dict[int, int]:
        """Raw label ids met so far that the dataset does not know: id -> pixel count."""
        return dict(self.mapper.unknown_pixels)

    def report(self) -> str:
        text = f"{self!r}; {self.mapper.summary()}"
        if self.resized_labels:
            text += f"; {self.resized_labels} label(s) resized to their image"
        return text

    def __repr__(self) -> str:
        split = f", split={self.split!r}" if self.has_splits else ""
        labels = "labelled" if self.has_labels else "unlabelled"
        return (f"{type(self).__name__}(root={str(self.root)!r}{split}, {len(self)} samples, "
                f"{labels}, label_space={self.label_space.name!r})")

    # -- helpers for subclasses ---------------------------------------------------------------

    def _layout_error(self, problem: str) -> DatasetError:
        layout = LAYOUTS.get(self.name)
        expected = f" (expected {TITLES[self.name]} layout: {layout})" if layout else ""
        return DatasetError(f"{problem}{expected}{layout_hint(self.root, self.name)}")

    def _pair(
        self,
        images: Iterable[Path],
        image_dir: Path,
        label_dir: Path,
        label_name: Callable[[Path], Path],
        existing_labels: Iterable[Path] | None,
    ) -> list[Sample]:
        """Pair each image with ``label_dir / label_name(image relative to image_dir)``.

        ``existing_labels``: the label files found by scanning ``label_dir`` (then labels that no
        image claims are reported too), or None to check each expected label on disk (list files).
        Images without labels and labels without images raise one :class:`DatasetError` listing
        both.
        """
        existing = set(existing_labels) if existing_labels is not None else None
        pairs: list[Sample] = []
        missing: list[str] = []
        for image in images:
            try:
                rel = image.relative_to(image_dir)
            except ValueError:
                raise DatasetError(
                    f"image {image} (from list file {self.list_file}) is not inside {image_dir}"
                ) from None
            label = label_dir / label_name(rel)
            if (label in existing) if existing is not None else label.is_file():
                pairs.append((image, label))
            else:
                missing.append(rel.as_posix())
        problems = []
        if missing:
            problems.append(
                f"{len(missing)} image(s) in {image_dir} have no label in {label_dir} "
                f"({list_names(missing)})"
            )
        if existing is not None:
            claimed = {lb for _, lb in pairs}
            orphans = sorted(p.relative_to(label_dir).as_posix() for p in existing - claimed)
            if orphans:
                problems.append(
                    f"{len(orphans)} label(s) in {label_dir} have no image in {image_dir} "
                    f"({list_names(orphans)})"
                )
        if problems:
            raise DatasetError(f"{TITLES.get(self.name, self.name)} root {self.root}: "
                               + "; ".join(problems))
        return pairs


class FlatPairedDataset(SegmentationDataset):
    """A root with one folder of images and one of labels of the same file names
    (GTA5: ``images/`` + ``labels/``; SYNTHIA: ``RGB/`` + ``GT/LABELS/``)."""

    image_subdir: str = "images"
    label_subdir: str = "labels"

    def _find_samples(self) -> list[Sample]:
        from .common import read_list_file, require_root, scan_files

        root = require_root(self.root, self.name)
        image_dir, label_dir = root / self.image_subdir, root / self.label_subdir
        if not any(root.iterdir()):
            raise self._layout_error(f"{TITLES[self.name]} root {root} is empty")
        for sub, path in ((self.image_subdir, image_dir), (self.label_subdir, label_dir)):
            if not path.is_dir():
                raise self._layout_error(f"{TITLES[self.name]} root {root} has no {sub}/ folder")
        if self.list_file is not None:
            images = read_list_file(self.list_file, [image_dir, root])
            existing = None
        else:
            images = scan_files(image_dir, (".png",))
            existing = scan_files(label_dir, (".png",))
        if not images:
            raise self._layout_error(f"no images found under {image_dir}")
        return self._pair(images, image_dir, label_dir, lambda rel: rel.with_suffix(".png"),
                          existing)


def worker_start_method(dataset: Dataset) -> str | None:
    """The ``worker_start_method`` of ``dataset`` or of the dataset it wraps (``Subset.dataset``,
    ``.base`` of the pseudo-label views), for ``DataLoader(multiprocessing_context=...)``."""
    while dataset is not None:
        method = getattr(dataset, "worker_start_method", None)
        if method:
            return method
        dataset = getattr(dataset, "dataset", None) or getattr(dataset, "base", None)
    return None
