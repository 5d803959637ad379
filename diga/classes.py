"""Label spaces: class names, colours and the raw-id -> trainId maps of each dataset.

Everything inside diga speaks *trainIds* (0..C-1, 255 = ignore). Datasets convert their raw ids
with the lookup tables here; a label space of fewer classes (SYNTHIA's 16 or 13) is reached from
the 19 Cityscapes trainIds with :meth:`LabelSpace.from_cityscapes19`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .errors import ConfigError

IGNORE_INDEX = 255

CITYSCAPES_CLASSES: tuple[str, ...] = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)

# Official Cityscapes labelId -> colour (cityscapesScripts labels.py): the one colour table. GTA5
# label PNGs carry it as their palette; the trainId palette below is read from it.
CITYSCAPES_LABEL_COLORS: dict[int, tuple[int, int, int]] = {
    0: (0, 0, 0), 1: (0, 0, 0), 2: (0, 0, 0), 3: (0, 0, 0), 4: (0, 0, 0), 5: (111, 74, 0),
    6: (81, 0, 81), 7: (128, 64, 128), 8: (244, 35, 232), 9: (250, 170, 160),
    10: (230, 150, 140), 11: (70, 70, 70), 12: (102, 102, 156), 13: (190, 153, 153),
    14: (180, 165, 180), 15: (150, 100, 100), 16: (150, 120, 90), 17: (153, 153, 153),
    18: (153, 153, 153), 19: (250, 170, 30), 20: (220, 220, 0), 21: (107, 142, 35),
    22: (152, 251, 152), 23: (70, 130, 180), 24: (220, 20, 60), 25: (255, 0, 0),
    26: (0, 0, 142), 27: (0, 0, 70), 28: (0, 60, 100), 29: (0, 0, 90), 30: (0, 0, 110),
    31: (0, 80, 100), 32: (0, 0, 230), 33: (119, 11, 32),
}

# Official Cityscapes labelId -> trainId (cityscapesScripts labels.py); GTA5 uses the same ids.
# Ids not listed (unlabeled, ego vehicle, ..., parking, rail track, guard rail, bridge, tunnel,
# polegroup, caravan, trailer, license plate) are ignored.
CITYSCAPES_ID_TO_TRAINID: dict[int, int] = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11,
    25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}

#: Colour of each Cityscapes trainId (0 road ... 18 bicycle).
CITYSCAPES_PALETTE: tuple[tuple[int, int, int], ...] = tuple(
    CITYSCAPES_LABEL_COLORS[label_id]
    for label_id, _ in sorted(CITYSCAPES_ID_TO_TRAINID.items(), key=lambda item: item[1])
)

# SYNTHIA (RAND-CITYSCAPES) class ids -> Cityscapes trainIds. SYNTHIA ids: 1 sky, 2 building,
# 3 road, 4 sidewalk, 5 fence, 6 vegetation, 7 pole, 8 car, 9 traffic sign, 10 pedestrian,
# 11 bicycle, 12 motorcycle, 13 parking-slot, 14 road-work, 15 traffic light, 16 terrain,
# 17 rider, 18 truck, 19 bus, 20 train, 21 wall, 22 lanemarking. Parking-slot, road-work and
# lane marking are ignored, as in the standard protocol.
SYNTHIA_ID_TO_TRAINID: dict[int, int] = {
    3: 0, 4: 1, 2: 2, 21: 3, 5: 4, 7: 5, 15: 6, 9: 7, 6: 8, 16: 9, 1: 10, 10: 11, 17: 12,
    8: 13, 18: 14, 19: 15, 20: 16, 12: 17, 11: 18,
}

# The SYNTHIA protocols: 16 classes (no terrain, truck, train) and the 13-class subset (also no
# wall, fence, pole).
SYNTHIA16_CLASSES = tuple(c for c in CITYSCAPES_CLASSES if c not in ("terrain", "truck", "train"))
SYNTHIA13_CLASSES = tuple(c for c in SYNTHIA16_CLASSES if c not in ("wall", "fence", "pole"))


def label_png_palette() -> list[int]:
    """The 768-value ``PIL.Image.putpalette`` list of GTA5-style label PNGs (index = labelId)."""
    return [v for i in range(256) for v in CITYSCAPES_LABEL_COLORS.get(i, (0, 0, 0))]


def colorize(labels: np.ndarray, palette: Sequence[Sequence[int]]) -> np.ndarray:
    """(H, W) class ids -> (H, W, 3) uint8 colours of ``palette``; ids beyond it (255 = ignore)
    are black."""
    pal = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)[:255]
    lut = np.zeros((256, 3), dtype=np.uint8)
    lut[: len(pal)] = pal
    return lut[np.asarray(labels, dtype=np.uint8)]


def id_lut(mapping: dict[int, int], size: int = 65536) -> np.ndarray:
    """A lookup table raw id -> trainId; ids outside ``mapping`` map to IGNORE_INDEX."""
    lut = np.full(size, IGNORE_INDEX, dtype=np.uint8)
    for raw, train in mapping.items():
        lut[raw] = train
    return lut


@dataclass(frozen=True)
class LabelSpace:
    """A set of training classes with their names and colours."""

    name: str
    classes: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def palette(self) -> tuple[tuple[int, int, int], ...]:
        return tuple(CITYSCAPES_PALETTE[CITYSCAPES_CLASSES.index(c)] for c in self.classes)

    def from_cityscapes19(self) -> np.ndarray:
        """A 256-entry LUT from Cityscapes trainIds (and 255) to this space's trainIds."""
        lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
        for i, name in enumerate(CITYSCAPES_CLASSES):
            if name in self.classes:
                lut[i] = self.classes.index(name)
        return lut

    def to_cityscapes_label_ids(self) -> np.ndarray:
        """A 256-entry LUT from this space's trainIds to official Cityscapes labelIds (what the
        Cityscapes evaluation scripts read); ignore and unknown ids -> 0 (unlabeled)."""
        label_id = {CITYSCAPES_CLASSES[train]: raw for raw, train in CITYSCAPES_ID_TO_TRAINID.items()}
        lut = np.zeros(256, dtype=np.uint8)
        for i, name in enumerate(self.classes):
            lut[i] = label_id[name]
        return lut

    def subset_indices(self, classes: tuple[str, ...]) -> list[int]:
        """Indices of ``classes`` in this space (e.g. the SYNTHIA 13 inside the 16)."""
        return [self.classes.index(c) for c in classes]

    def colorize(self, labels: np.ndarray) -> np.ndarray:
        """(H, W) trainIds -> (H, W, 3) uint8 colours; ignore pixels are black."""
        return colorize(labels, self.palette)


CITYSCAPES19 = LabelSpace("cityscapes19", CITYSCAPES_CLASSES)
SYNTHIA16 = LabelSpace("synthia16", SYNTHIA16_CLASSES)
SYNTHIA13 = LabelSpace("synthia13", SYNTHIA13_CLASSES)

LABEL_SPACES: dict[str, LabelSpace] = {s.name: s for s in (CITYSCAPES19, SYNTHIA16, SYNTHIA13)}


def get_label_space(name: str) -> LabelSpace:
    try:
        return LABEL_SPACES[name]
    except KeyError:
        raise ConfigError(
            f"unknown label space {name!r}; choose one of {', '.join(LABEL_SPACES)}"
        ) from None
