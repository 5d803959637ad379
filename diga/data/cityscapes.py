"""Cityscapes: ``root/leftImg8bit/{split}/{city}/{city}_{seq}_{frame}_leftImg8bit.png`` with
``root/gtFine/{split}/{city}/{city}_{seq}_{frame}_gtFine_labelIds.png`` (8-bit labelIds)."""

from __future__ import annotations

import logging
from pathlib import Path

from diga.classes import CITYSCAPES_ID_TO_TRAINID

from .base import Sample, SegmentationDataset
from .common import IdMapper, read_list_file, require_root, scan_files
from .errors import DatasetError, list_names
from .gta5 import CITYSCAPES_LABEL_IDS

log = logging.getLogger("diga.data")

IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_SUFFIX = "_gtFine_labelIds.png"


def label_name(rel: Path) -> Path:
    """``aachen/aachen_000000_000019_leftImg8bit.png`` -> ``aachen/..._gtFine_labelIds.png``."""
    return rel.parent / (rel.name[: -len(IMAGE_SUFFIX)] + LABEL_SUFFIX)


class CityscapesDataset(SegmentationDataset):
    """Cityscapes fine annotations. Without a ``gtFine/{split}`` folder (a target-domain copy of
    the images only) the dataset is unlabelled: ``has_labels`` is False and labels are all 255.
    List files name images relative to ``leftImg8bit/{split}`` (``frankfurt/..._leftImg8bit.png``)
    or to the root."""

    name = "cityscapes"
    has_splits = True

    def _find_samples(self) -> list[Sample]:
        root = require_root(self.root, self.name)
        image_root = root / "leftImg8bit"
        if not image_root.is_dir():
            if not any(root.iterdir()):
                raise self._layout_error(f"Cityscapes root {root} is empty")
            raise self._layout_error(f"Cityscapes root {root} has no leftImg8bit/ folder")
        split_dir = image_root / self.split
        if not split_dir.is_dir():
            splits = sorted(d.name for d in image_root.iterdir() if d.is_dir())
            raise DatasetError(
                f"Cityscapes split {self.split!r} not found: no folder {split_dir} "
                f"(available splits: {', '.join(splits) if splits else 'none'})"
            )
        if self.list_file is not None:
            images = read_list_file(self.list_file, [split_dir, root, image_root])
            wrong = [str(p) for p in images if not p.name.endswith(IMAGE_SUFFIX)]
            if wrong:
                raise DatasetError(
                    f"list file {self.list_file}: expected *{IMAGE_SUFFIX} images, got "
                    f"{list_names(wrong)}"
                )
        else:
            images = scan_files(split_dir, (".png",), recursive=True, suffix=IMAGE_SUFFIX)
        if not images:
            raise self._layout_error(f"no *{IMAGE_SUFFIX} images found under {split_dir}")
        label_dir = root / "gtFine" / self.split
        if not label_dir.is_dir():
            log.warning("Cityscapes root %s has no gtFine/%s/ folder: the %s split is unlabelled",
                        root, self.split, self.split)
            return [(image, None) for image in images]
        existing = None if self.list_file is not None else scan_files(
            label_dir, (".png",), recursive=True, suffix=LABEL_SUFFIX)
        return self._pair(images, split_dir, label_dir, label_name, existing)

    def _make_mapper(self) -> IdMapper:
        return IdMapper.from_mapping(CITYSCAPES_ID_TO_TRAINID, CITYSCAPES_LABEL_IDS,
                                     then=self.label_space.from_cityscapes19(), source="Cityscapes")
