"""Mapillary Vistas, its classes mapped to the 19 Cityscapes classes.

Official layouts (``train`` reads ``training/``, ``val`` reads ``validation/``, ``test`` reads
``testing/``, which has no labels)::

    v1.2 release:  ROOT/training/images/KEY.jpg + ROOT/training/labels/KEY.png
    v2.0 release:  ROOT/training/images/KEY.jpg + ROOT/training/v2.0/labels/KEY.png
                   (and the v1.2 labels again in ROOT/training/v1.2/labels/KEY.png)

Labels are 8-bit palette PNGs whose indices are class ids: 0..65 in v1.2 (65 classes plus
"unlabeled"), 0..123 in v2.0 (the order of the release's ``config_v1.2.json`` /
``config_v2.0.json``). ``version="1.2"`` or ``"2.0"`` (spec ``?version=2.0``) picks the labels;
without it the v1.2 labels are used when present (the authors' protocol), else the v2.0 ones.

Mapping source: the v1.2 table follows the authors' 19-class loader,
``semi-supervised_segmentation/util/loader/MapillaryLoader.py`` in fy-vision/DiGA (its 16-class
twin ``domain_adaptation/Synthia/util/loader/MapillaryLoader.py`` is the same table reduced to
SYNTHIA16, which ``label_space`` does here). Their loader reads v1.2 only; the v2.0 table is ours:
every v2.0 class that refines one the authors map keeps its Cityscapes class (the v1.2 "general"
lane marking, split into the v2.0 continuous/discrete markings, stays road; zebra crossings stay
ignored as in v1.2; every traffic-light kind is traffic light; the front-facing sign kinds are
traffic sign, their backs stay ignored), and two v2.0 classes follow the Cityscapes definitions:
garage is building and a person group is person. Everything else is ignored (255).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from diga.classes import CITYSCAPES19, CITYSCAPES_CLASSES, LabelSpace

from .base import Sample, SegmentationDataset, Transform
from .common import IdMapper, read_list_file, require_root, scan_files
from .errors import DatasetError

log = logging.getLogger("diga.data")

SPLIT_FOLDERS = {"train": "training", "val": "validation", "test": "testing",
                 "training": "training", "validation": "validation", "testing": "testing"}
VERSIONS = ("1.2", "2.0")
# Label folders of each version inside a split folder, in the order they are looked for.
LABEL_FOLDERS = {"1.2": ("labels", "v1.2/labels"), "2.0": ("v2.0/labels",)}
NUM_IDS = {"1.2": 66, "2.0": 124}

# (Mapillary class id, Mapillary class name, Cityscapes class) of every class that is not ignored.
MAPILLARY_V12: tuple[tuple[int, str, str], ...] = (
    (13, "construction--flat--road", "road"),
    (24, "marking--general", "road"),
    (41, "object--manhole", "road"),
    (2, "construction--barrier--curb", "sidewalk"),
    (15, "construction--flat--sidewalk", "sidewalk"),
    (17, "construction--structure--building", "building"),
    (6, "construction--barrier--wall", "wall"),
    (3, "construction--barrier--fence", "fence"),
    (45, "object--support--pole", "pole"),
    (47, "object--support--utility-pole", "pole"),
    (48, "object--traffic-light", "traffic light"),
    (50, "object--traffic-sign--front", "traffic sign"),
    (30, "nature--vegetation", "vegetation"),
    (29, "nature--terrain", "terrain"),
    (27, "nature--sky", "sky"),
    (19, "human--person", "person"),
    (20, "human--rider--bicyclist", "rider"),
    (21, "human--rider--motorcyclist", "rider"),
    (22, "human--rider--other-rider", "rider"),
    (55, "object--vehicle--car", "car"),
    (61, "object--vehicle--truck", "truck"),
    (54, "object--vehicle--bus", "bus"),
    (58, "object--vehicle--on-rails", "train"),
    (57, "object--vehicle--motorcycle", "motorcycle"),
    (52, "object--vehicle--bicycle", "bicycle"),
)

_V20_MARKINGS = (
    (35, "marking--continuous--dashed"), (36, "marking--continuous--solid"),
    (37, "marking--continuous--zigzag"), (38, "marking--discrete--ambiguous"),
    (39, "marking--discrete--arrow--left"), (40, "marking--discrete--arrow--other"),
    (41, "marking--discrete--arrow--right"), (42, "marking--discrete--arrow--split-left-or-straight"),
    (43, "marking--discrete--arrow--split-right-or-straight"), (44, "marking--discrete--arrow--straight"),
    (46, "marking--discrete--give-way-row"), (47, "marking--discrete--give-way-single"),
    (48, "marking--discrete--hatched--chevron"), (49, "marking--discrete--hatched--diagonal"),
    (50, "marking--discrete--other-marking"), (51, "marking--discrete--stop-line"),
    (52, "marking--discrete--symbol--bicycle"), (53, "marking--discrete--symbol--other"),
    (54, "marking--discrete--text"), (55, "marking-only--continuous--dashed"),
    (57, "marking-only--discrete--other-marking"), (58, "marking-only--discrete--text"),
)  # not 45 / 56: the zebra crossings, ignored like v1.2's marking--crosswalk-zebra

MAPILLARY_V20: tuple[tuple[int, str, str], ...] = (
    (21, "construction--flat--road", "road"),
    *((i, name, "road") for i, name in _V20_MARKINGS),
    (74, "object--manhole", "road"),
    (4, "construction--barrier--curb", "sidewalk"),
    (24, "construction--flat--sidewalk", "sidewalk"),
    (27, "construction--structure--building", "building"),
    (28, "construction--structure--garage", "building"),
    (12, "construction--barrier--wall", "wall"),
    (5, "construction--barrier--fence", "fence"),
    (85, "object--support--pole", "pole"),
    (88, "object--support--utility-pole", "pole"),
    (90, "object--traffic-light--general-single", "traffic light"),
    (91, "object--traffic-light--pedestrians", "traffic light"),
    (92, "object--traffic-light--general-upright", "traffic light"),
    (93, "object--traffic-light--general-horizontal", "traffic light"),
    (94, "object--traffic-light--cyclists", "traffic light"),
    (95, "object--traffic-light--other", "traffic light"),
    (99, "object--traffic-sign--direction-front", "traffic sign"),
    (100, "object--traffic-sign--front", "traffic sign"),
    (101, "object--traffic-sign--information-parking", "traffic sign"),
    (103, "object--traffic-sign--temporary-front", "traffic sign"),
    (64, "nature--vegetation", "vegetation"),
    (63, "nature--terrain", "terrain"),
    (61, "nature--sky", "sky"),
    (30, "human--person--individual", "person"),
    (31, "human--person--person-group", "person"),
    (32, "human--rider--bicyclist", "rider"),
    (33, "human--rider--motorcyclist", "rider"),
    (34, "human--rider--other-rider", "rider"),
    (108, "object--vehicle--car", "car"),
    (114, "object--vehicle--truck", "truck"),
    (107, "object--vehicle--bus", "bus"),
    (111, "object--vehicle--on-rails", "train"),
    (110, "object--vehicle--motorcycle", "motorcycle"),
    (105, "object--vehicle--bicycle", "bicycle"),
)

MAPILLARY_TABLES = {"1.2": MAPILLARY_V12, "2.0": MAPILLARY_V20}


def mapillary_to_train_ids(version: str) -> dict[int, int]:
    """Mapillary class id -> Cityscapes trainId of the classes that are kept (others: ignore)."""
    return {i: CITYSCAPES_CLASSES.index(cls) for i, _, cls in MAPILLARY_TABLES[version]}


def check_version(version: str | None) -> str | None:
    """``"1.2"``, ``"v2.0"``, ``"2"`` -> ``"1.2"`` / ``"2.0"``; None stays None (detect)."""
    if version is None:
        return None
    text = str(version).strip().lower().removeprefix("v")
    text = {"1": "1.2", "2": "2.0"}.get(text, text)
    if text not in VERSIONS:
        raise DatasetError(f"Mapillary Vistas version {version!r}: expected 1.2 or 2.0")
    return text


class MapillaryDataset(SegmentationDataset):
    """Mapillary Vistas (images of many sizes; 18000 training, 2000 validation). :attr:`version`
    says which labels were read. List files name images relative to ``training/images`` (for
    ``train``), the split folder or the root."""

    name = "mapillary"
    has_splits = True

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        label_space: LabelSpace | str = CITYSCAPES19,
        transform: Transform | None = None,
        list_file: str | os.PathLike | None = None,
        version: str | None = None,
        *,
        on_size_mismatch: str = "error",
    ):
        self.requested_version = check_version(version)
        self.version = self.requested_version or VERSIONS[0]
        super().__init__(root, split, label_space, transform, list_file,
                         on_size_mismatch=on_size_mismatch)

    def _find_samples(self) -> list[Sample]:
        root = require_root(self.root, self.name)
        folder = SPLIT_FOLDERS.get(self.split)
        if folder is None:
            raise DatasetError(f"Mapillary Vistas split {self.split!r}: expected train, val or test "
                               "(the folders training/, validation/, testing/)")
        image_dir = root / folder / "images"
        if not image_dir.is_dir():
            if not any(root.iterdir()):
                raise self._layout_error(f"Mapillary Vistas root {root} is empty")
            raise self._layout_error(f"Mapillary Vistas root {root} has no {folder}/images/ folder")
        if self.list_file is not None:
            images = read_list_file(self.list_file, [image_dir, root / folder, root])
        else:
            images = scan_files(image_dir, (".jpg", ".jpeg"))
        if not images:
            raise self._layout_error(f"no .jpg images found under {image_dir}")
        label_dir = self._label_dir(root, folder)
        if label_dir is None:
            return [(image, None) for image in images]
        existing = None if self.list_file is not None else scan_files(label_dir, (".png",))
        return self._pair(images, image_dir, label_dir, lambda rel: rel.with_suffix(".png"), existing)

    def _label_dir(self, root: Path, folder: str) -> Path | None:
        """The label folder of the requested (or detected) version; sets :attr:`version`."""
        versions = (self.requested_version,) if self.requested_version else VERSIONS
        looked = [(v, root / folder / sub) for v in versions for sub in LABEL_FOLDERS[v]]
        found = [(v, path) for v, path in looked if path.is_dir()]
        if found:
            self.version, label_dir = found[0]
            if len({v for v, _ in found}) > 1:
                log.info("Mapillary Vistas root %s has labels of versions %s: reading v%s (?version= "
                         "chooses)", root, ", ".join(sorted({v for v, _ in found})), self.version)
            return label_dir
        if folder == "testing":
            return None  # the test split ships without labels
        which = f"v{self.requested_version} " if self.requested_version else ""
        raise self._layout_error(
            f"Mapillary Vistas root {root} has no {which}label folder for {folder}/: looked for "
            + ", ".join(f"{path.relative_to(root)}/" for _, path in looked)
        )

    def _make_mapper(self) -> IdMapper:
        return IdMapper.from_mapping(mapillary_to_train_ids(self.version), range(NUM_IDS[self.version]),
                                     then=self.label_space.from_cityscapes19(),
                                     source=f"Mapillary Vistas v{self.version}")

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f", version={self.version!r})"
