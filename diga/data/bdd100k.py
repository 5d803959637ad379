"""BDD100K semantic segmentation: the "10K" images with their label masks, in either official layout.

Current release (``bdd100k_images_10k.zip`` + ``bdd100k_sem_seg_labels_trainval.zip``)::

    ROOT/images/10k/{train,val,test}/NAME.jpg
    ROOT/labels/sem_seg/masks/{train,val}/NAME.png

Earlier release (``bdd100k_seg.zip``), ROOT being the folder that holds ``seg/`` or ``seg/`` itself::

    ROOT/seg/images/{train,val,test}/NAME.jpg
    ROOT/seg/labels/{train,val}/NAME_train_id.png

The masks already hold the 19 Cityscapes trainIds (255 = ignore), which is how the authors' loader
reads them (``domain_adaptation/Synthia/util/loader/BDDLoader.py`` in fy-vision/DiGA, whose
16-class table is the SYNTHIA16 reduction that ``label_space`` applies here). The test split ships
without masks and is read as unlabelled images.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import NamedTuple

from diga.classes import CITYSCAPES_CLASSES, IGNORE_INDEX

from .base import Sample, SegmentationDataset
from .common import IdMapper, read_list_file, require_root, scan_files
from .errors import DatasetError

log = logging.getLogger("diga.data")


class BDDLayout(NamedTuple):
    """Where one release keeps images and masks (both hold a folder per split) and how masks are named."""

    images: str
    labels: str
    label_suffix: str


# In the order they are recognised: the current release first, then the earlier ``seg/`` one
# (given as its parent, or as the ``seg/`` folder itself, whose images/ has no 10k/ inside).
BDD_LAYOUTS: tuple[BDDLayout, ...] = (
    BDDLayout("images/10k", "labels/sem_seg/masks", ".png"),
    BDDLayout("seg/images", "seg/labels", "_train_id.png"),
    BDDLayout("images", "labels", "_train_id.png"),
)

BDD_TRAIN_IDS = {i: i for i in range(len(CITYSCAPES_CLASSES))}


class BDD100KDataset(SegmentationDataset):
    """BDD100K's 10K segmentation images (1280x720): splits ``train`` (7000), ``val`` (1000) and
    ``test`` (2000, unlabelled). List files name images relative to the split folder or the root."""

    name = "bdd100k"
    has_splits = True

    def _find_samples(self) -> list[Sample]:
        root = require_root(self.root, self.name)
        layout = self._detect_layout(root)
        split_root = root / layout.images
        image_dir = split_root / self.split
        if not image_dir.is_dir():
            splits = sorted(d.name for d in split_root.iterdir() if d.is_dir())
            raise DatasetError(
                f"BDD100K split {self.split!r} not found: no folder {image_dir} "
                f"(available splits: {', '.join(splits) if splits else 'none'})"
            )
        if self.list_file is not None:
            images = read_list_file(self.list_file, [image_dir, root])
        else:
            images = scan_files(image_dir, (".jpg", ".jpeg"))
        if not images:
            raise self._layout_error(f"no .jpg images found under {image_dir}")
        label_dir = root / layout.labels / self.split
        if not label_dir.is_dir():
            log.warning("BDD100K root %s has no %s/%s/ folder: the %s split is unlabelled",
                        root, layout.labels, self.split, self.split)
            return [(image, None) for image in images]
        existing = None if self.list_file is not None else scan_files(
            label_dir, (".png",), suffix=layout.label_suffix)
        return self._pair(images, image_dir, label_dir,
                          lambda rel: rel.with_name(rel.stem + layout.label_suffix), existing)

    def _detect_layout(self, root: Path) -> BDDLayout:
        for layout in BDD_LAYOUTS:
            if (root / layout.images).is_dir() and (layout.images != "images"
                                                    or (root / "labels").is_dir()):
                return layout
        if not any(root.iterdir()):
            raise self._layout_error(f"BDD100K root {root} is empty")
        raise self._layout_error(f"BDD100K root {root} has neither images/10k/ nor seg/images/")

    def _make_mapper(self) -> IdMapper:
        return IdMapper.from_mapping(BDD_TRAIN_IDS, [*BDD_TRAIN_IDS, IGNORE_INDEX],
                                     then=self.label_space.from_cityscapes19(), source="BDD100K")
