"""GTA5 (Playing for Data, Richter et al. 2016): ``root/images/00001.png`` and
``root/labels/00001.png`` -- palette PNGs whose indices are Cityscapes labelIds."""

from __future__ import annotations

from diga.classes import CITYSCAPES_ID_TO_TRAINID

from .base import FlatPairedDataset
from .common import IdMapper

# Valid raw ids: the Cityscapes labelIds 0..33 (those outside CITYSCAPES_ID_TO_TRAINID are ignored
# by design and not counted as unknown).
CITYSCAPES_LABEL_IDS = range(34)


class GTA5Dataset(FlatPairedDataset):
    """GTA5 frames (1914x1052) with Cityscapes-id labels. ``split`` is ignored (no official split
    folders); use ``list_file`` for a subset."""

    name = "gta5"
    image_subdir = "images"
    label_subdir = "labels"

    def _make_mapper(self) -> IdMapper:
        return IdMapper.from_mapping(CITYSCAPES_ID_TO_TRAINID, CITYSCAPES_LABEL_IDS,
                                     then=self.label_space.from_cityscapes19(), source="GTA5")
