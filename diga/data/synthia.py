"""SYNTHIA-RAND-CITYSCAPES: ``root/RGB/0000000.png`` and ``root/GT/LABELS/0000000.png`` -- 16-bit
3-channel PNGs holding the class id in the first (red) channel and the instance id in the second."""

from __future__ import annotations

from diga.classes import SYNTHIA_ID_TO_TRAINID

from .base import FlatPairedDataset
from .common import IdMapper

# Valid raw ids: 0 void and the 22 SYNTHIA classes (parking-slot, road-work and lane marking are
# ignored by design and not counted as unknown).
SYNTHIA_LABEL_IDS = range(23)


class SynthiaDataset(FlatPairedDataset):
    """SYNTHIA-RAND-CITYSCAPES (1280x760). ``split`` is ignored; use ``list_file`` for a subset.
    Use ``label_space=SYNTHIA16`` (or SYNTHIA13) for the standard protocols."""

    name = "synthia"
    image_subdir = "RGB"
    label_subdir = "GT/LABELS"
    label_channel = 0

    def _make_mapper(self) -> IdMapper:
        return IdMapper.from_mapping(SYNTHIA_ID_TO_TRAINID, SYNTHIA_LABEL_IDS,
                                     then=self.label_space.from_cityscapes19(), source="SYNTHIA")
