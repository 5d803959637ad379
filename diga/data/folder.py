"""Any directory tree of images (e.g. target-domain photos for adaptation or inference)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from diga.classes import CITYSCAPES19, LabelSpace

from .base import Sample, SegmentationDataset, Transform
from .common import (
    IMAGE_EXTENSIONS,
    IdMapper,
    detect_layout,
    layout_hint,
    read_list_file,
    scan_files,
)
from .errors import DatasetError

log = logging.getLogger("diga.data")


class ImageFolderDataset(SegmentationDataset):
    """All .jpg/.jpeg/.png files under ``root`` (case-insensitive, recursive, sorted by relative
    path; hidden files and folders skipped), or the single image ``root`` itself.

    Unlabelled (labels all 255) unless ``label_root`` is given: a parallel tree holding, for
    ``root/a/b.jpg``, the label ``label_root/a/b.png`` of trainIds of ``label_space`` (ids outside
    it are counted and ignored). Unlabelled images are turned upright by their EXIF orientation;
    labelled ones are used as stored, like their labels. ``split`` is ignored.
    """

    name = "folder"

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        label_space: LabelSpace | str = CITYSCAPES19,
        transform: Transform | None = None,
        list_file: str | os.PathLike | None = None,
        label_root: str | os.PathLike | None = None,
        *,
        on_size_mismatch: str = "error",
    ):
        self.label_root = Path(label_root).expanduser() if label_root is not None else None
        self.exif = self.label_root is None
        super().__init__(root, split, label_space, transform, list_file,
                         on_size_mismatch=on_size_mismatch)

    def _find_samples(self) -> list[Sample]:
        root = self.root
        if not root.exists():
            raise DatasetError(f"image folder {root} does not exist")
        if root.is_file():
            if root.suffix.lower() not in IMAGE_EXTENSIONS:
                raise DatasetError(f"{root} is not a .jpg/.jpeg/.png image or a folder of them")
            images, image_dir = [root], root.parent
        else:
            image_dir = root
            if self.list_file is not None:
                images = read_list_file(self.list_file, [root])
            else:
                images = scan_files(root, IMAGE_EXTENSIONS, recursive=True)
            if not images:
                raise DatasetError(
                    f"no images (.jpg/.jpeg/.png) found under {root}{layout_hint(root, 'folder')}"
                )
            found = detect_layout(root)
            if found is not None and found[1] == root and self.label_root is None:
                log.warning("image folder %s looks like a %s root%s", root, found[0],
                            layout_hint(root, "folder"))
        if self.label_root is None:
            return [(image, None) for image in images]
        label_root = self.label_root
        if not label_root.exists():
            raise DatasetError(f"label folder {label_root} does not exist")
        if root.is_file():
            label = (label_root if label_root.is_file()
                     else label_root / root.with_suffix(".png").name)
            return self._pair([root], image_dir, label.parent, lambda rel: Path(label.name), None)
        if not label_root.is_dir():
            raise DatasetError(f"label folder {label_root} is not a directory")
        existing = None if self.list_file is not None else scan_files(
            label_root, (".png",), recursive=True)
        return self._pair(images, image_dir, label_root, lambda rel: rel.with_suffix(".png"),
                          existing)

    def _make_mapper(self) -> IdMapper:
        return IdMapper.identity(self.label_space.num_classes, source=self.label_space.name)
