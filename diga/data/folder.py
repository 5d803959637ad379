"""Any directory tree of images (e.g. target-domain photos for adaptation or inference)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from diga.classes import CITYSCAPES19, IGNORE_INDEX, LabelSpace

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
    it are counted and ignored), or of your own ids when ``label_map`` (a JSON file, see
    :func:`read_label_map`) says which class each id is. Unlabelled images are turned upright by
    their EXIF orientation; labelled ones are used as stored, like their labels. ``split`` is
    ignored.
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
        label_map: str | os.PathLike | None = None,
        *,
        on_size_mismatch: str = "error",
    ):
        self.label_root = Path(label_root).expanduser() if label_root is not None else None
        if label_map is not None and self.label_root is None:
            raise DatasetError(f"a label map ({label_map}) needs labels: give the label folder too")
        self.label_map = Path(label_map).expanduser() if label_map is not None else None
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
                log.warning("image folder %s is read as unlabelled images%s", root, layout_hint(root, "folder"))
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
        if self.label_map is not None:
            mapping = read_label_map(self.label_map, self.label_space)
            return IdMapper.from_mapping(mapping, source=f"{self.label_map.name}")
        return IdMapper.identity(self.label_space.num_classes, source=self.label_space.name)


def read_label_map(path: Path, space: LabelSpace) -> dict[int, int]:
    """A JSON object from the ids in your label PNGs to classes: ``{"7": "road", "26": "car",
    "0": 255}`` — a class name of the label space, its train id, or 255 (ignore). Ids not listed
    are ignored and counted as unknown."""
    try:
        raw = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise DatasetError(f"label map {path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetError(f"label map {path} is not valid JSON: {e}") from None
    if not isinstance(raw, dict) or not raw:
        raise DatasetError(f"label map {path} must be a non-empty JSON object {{\"your id\": \"class name\"}}")
    names = {name: i for i, name in enumerate(space.classes)}
    mapping, problems = {}, []
    for key, value in raw.items():
        try:
            source_id = int(key)
        except ValueError:
            problems.append(f"key {key!r} is not an integer label id")
            continue
        if not 0 <= source_id < IdMapper.SIZE:
            problems.append(f"label id {source_id} is outside 0..{IdMapper.SIZE - 1}")
        elif isinstance(value, str) and value in names:
            mapping[source_id] = names[value]
        elif isinstance(value, int) and not isinstance(value, bool) and (
                0 <= value < space.num_classes or value == IGNORE_INDEX):
            mapping[source_id] = value
        else:
            problems.append(f"{key}: {value!r} is neither a class of {space.name} nor a train id "
                            f"0..{space.num_classes - 1} or {IGNORE_INDEX}")
    if problems:
        raise DatasetError(f"label map {path}: " + "; ".join(problems[:5])
                           + f" (classes: {', '.join(space.classes)})")
    return mapping
