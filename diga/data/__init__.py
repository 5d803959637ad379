"""The dataset layer: GTA5, SYNTHIA, Cityscapes, BDD100K, Mapillary Vistas, plain image folders and video
frames as (image, label) pairs.

``build_dataset("gta5:/data/GTA5")`` -> a :class:`~diga.data.base.SegmentationDataset` whose items
are ``(image, label)``: a (3, H, W) uint8 RGB tensor and an (H, W) int64 tensor of trainIds
(255 = ignore). Normalisation and photometric augmentation are left to the training engine.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from diga.classes import CITYSCAPES19, LabelSpace

from .base import SegmentationDataset
from .bdd100k import BDD100KDataset
from .cityscapes import CityscapesDataset
from .common import (
    IMAGE_EXTENSIONS,
    IdMapper,
    decode_image_rgb,
    detect_layout,
    read_image,
    read_label,
)
from .errors import DatasetError
from .folder import ImageFolderDataset
from .gta5 import GTA5Dataset
from .mapillary import MapillaryDataset, check_version
from .splits import SUBSET_OPTIONS, apply_subset, check_subset_options, take_subset
from .synthia import SynthiaDataset
from .transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    EvalTransform,
    TrainTransform,
    normalize,
)
from .video import VideoFrameDataset
from .video_decode import is_video_file

DATASETS: dict[str, type[SegmentationDataset]] = {
    "gta5": GTA5Dataset,
    "synthia": SynthiaDataset,
    "cityscapes": CityscapesDataset,
    "folder": ImageFolderDataset,
    "video": VideoFrameDataset,
    "bdd100k": BDD100KDataset,
    "mapillary": MapillaryDataset,
}

__all__ = [
    "BDD100KDataset", "DATASETS", "IMAGENET_MEAN", "IMAGENET_STD", "IMAGE_EXTENSIONS", "CityscapesDataset",
    "DatasetError", "EvalTransform", "GTA5Dataset", "IdMapper", "ImageFolderDataset", "MapillaryDataset",
    "SegmentationDataset", "SynthiaDataset", "TrainTransform", "VideoFrameDataset", "build_dataset",
    "decode_image_rgb", "normalize", "parse_spec", "parse_spec_options", "read_image", "read_label",
]


# Options a spec may carry after the path, ``KIND:PATH?name=value&...``, per dataset kind:
# name -> (dataset keyword, converter of the value, the value as the help shows it). Every kind of
# still images also takes the subset options of :mod:`.splits` (?fraction=, ?seed=, ?part=, ?list=).
SPEC_OPTIONS: dict[str, dict[str, tuple[str, Any, str]]] = {
    **{kind: dict(SUBSET_OPTIONS) for kind in ("gta5", "synthia", "cityscapes", "bdd100k")},
    "mapillary": {"version": ("version", check_version, "1.2|2.0"), **SUBSET_OPTIONS},
    "folder": {"labels": ("label_root", Path, "PATH"), "map": ("label_map", Path, "PATH"), **SUBSET_OPTIONS},
    "video": {"fps": ("fps", float, "NUMBER")},
}
# A query after the last '?': name=value pairs joined by '&' (anything else belongs to the path).
_QUERY = re.compile(r"[A-Za-z_]\w*=[^&]*(?:&[A-Za-z_]\w*=[^&]*)*")


def parse_spec(spec: str) -> tuple[str, Path]:
    """``"gta5:/data/GTA5"`` -> ``("gta5", Path("/data/GTA5"))``. The kind is case-insensitive;
    the path is split at the first colon and ``~`` is expanded; options (``?labels=DIR``) are
    checked and dropped (see :func:`parse_spec_options`)."""
    kind, path, _ = parse_spec_options(spec)
    return kind, path


def parse_spec_options(spec: str) -> tuple[str, Path, dict[str, Any]]:
    """Like :func:`parse_spec`, plus the spec's options as dataset keywords:
    ``"folder:/frames?labels=/frames_gt"`` -> ``("folder", Path("/frames"), {"label_root": Path("/frames_gt")})``,
    ``"video:drive.mp4?fps=2"`` -> ``("video", Path("drive.mp4"), {"fps": 2.0})``."""
    choices = ", ".join(DATASETS)
    if not isinstance(spec, str) or ":" not in spec:
        hint = ""
        if isinstance(spec, (str, os.PathLike)):
            found = detect_layout(Path(spec).expanduser())
            if found is not None:
                hint = f"; {spec} looks like a {found[0]} root, so try {found[0]}:{found[1]}"
            elif is_video_file(spec):
                hint = f"; for a video use video:{spec}"
            else:
                hint = f"; for a plain folder of images use folder:{spec}"
        raise DatasetError(
            f"dataset spec {spec!r} must be KIND:PATH with KIND one of {choices} "
            f"(e.g. gta5:/data/GTA5){hint}"
        )
    kind, path = spec.split(":", 1)
    kind = kind.strip().lower()
    if kind not in DATASETS:
        raise DatasetError(
            f"unknown dataset kind {kind!r} in {spec!r}; choose one of {choices}"
        )
    path, options = _split_options(path, kind, spec)
    if not path.strip():
        raise DatasetError(f"dataset spec {spec!r} has no path after '{kind}:'")
    return kind, Path(path).expanduser(), options


def _split_options(path: str, kind: str, spec: str) -> tuple[str, dict[str, Any]]:
    allowed = SPEC_OPTIONS.get(kind, {})
    head, sep, query = path.rpartition("?")
    if not sep or not allowed or not _QUERY.fullmatch(query):
        return path, {}  # a '?' not followed by name=value pairs is part of the path
    options = {}
    for item in query.split("&"):
        name, _, value = item.partition("=")
        if name not in allowed or not value.strip():
            raise DatasetError(f"dataset spec {spec!r}: unknown or empty option {item!r}; {kind} accepts "
                               + ", ".join(f"?{n}={shown}" for n, (_, _, shown) in allowed.items()))
        keyword, convert, _ = allowed[name]
        if convert is Path:
            options[keyword] = Path(value).expanduser()
            continue
        try:
            options[keyword] = convert(value)
        except ValueError as exc:
            problem = "is not a number" if convert is float else f"is wrong: {exc}"
            raise DatasetError(f"dataset spec {spec!r}: option {name}={value!r} {problem}") from None
    check_subset_options(options, spec)
    return head, options


def build_dataset(
    spec: str,
    split: str = "train",
    label_space: LabelSpace | str = CITYSCAPES19,
    transform=None,
    list_file: str | os.PathLike | None = None,
    **kwargs,
) -> SegmentationDataset:
    """Build a dataset from a ``KIND:PATH`` spec. ``split`` matters for Cityscapes, BDD100K and
    Mapillary. Extra keywords go to the dataset class (``label_root=`` for ``folder``,
    ``on_size_mismatch=``); ``?fraction=`` keeps a subset (:mod:`.splits`)."""
    kind, root, options = parse_spec_options(spec)
    subset = take_subset(options)
    if "list_file" in options:
        if list_file is not None:
            raise DatasetError(f"dataset spec {spec!r} names a list file and list_file={list_file} is given too")
        list_file = options.pop("list_file")
    kwargs = {**options, **kwargs}
    if "label_root" in kwargs and kind != "folder":
        raise TypeError(f"label_root= applies to folder datasets only, not {kind}")
    dataset = DATASETS[kind](root, split=split, label_space=label_space, transform=transform,
                             list_file=list_file, **kwargs)
    if subset is not None:
        apply_subset(dataset, subset, kind)
    return dataset
