"""Shared reading helpers of the dataset layer: images, labels, id maps, file lists, layouts.

Images are decoded by the one decoder of the project, :mod:`diga.data.decode` (its policy for
transparency, EXIF, bit depths and colour modes is documented there); this module turns its
failures into :class:`DatasetError`. Labels are read here: they hold class *ids*, so palette PNGs
give their indices and 16-bit PNGs keep all 16 bits.

One label-decoder pitfall: ``decode_png(..., UNCHANGED)`` returns garbage for palette/grayscale
PNGs of 1, 2 or 4 bits per pixel (it does not unpack them; Pillow writes 4-bit palettes by itself
when the palette has at most 16 colours). Such labels are read with Pillow instead.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import numpy as np
import torch

from diga.classes import IGNORE_INDEX, LabelSpace, get_label_space, id_lut

from . import decode
from .errors import DatasetError, list_names

log = logging.getLogger("diga.data")

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg")


# --------------------------------------------------------------------------------------------
# Images


def read_bytes(path: str | os.PathLike, what: str = "image") -> bytes:
    """The contents of ``path``; missing, unreadable or empty files raise :class:`DatasetError`."""
    try:
        return decode.read_image_file(path, what)
    except decode.ImageDecodeError as exc:
        raise DatasetError(str(exc)) from None


def decode_image_rgb(data: bytes, path: str | os.PathLike = "<bytes>", exif: bool = False,
                     what: str = "image") -> torch.Tensor:
    """Decode image bytes to a (3, H, W) uint8 RGB tensor (:func:`diga.data.decode.decode_image`).

    ``exif`` defaults to False here: dataset labels are stored in the images' pixel order.
    """
    try:
        return decode.decode_image(data, path, exif=exif, what=what).pixels
    except decode.ImageDecodeError as exc:
        raise DatasetError(str(exc)) from None


def read_image(path: str | os.PathLike, exif: bool = False) -> torch.Tensor:
    """Read an image file as a (3, H, W) uint8 RGB tensor; bad files raise :class:`DatasetError`."""
    return decode_image_rgb(read_bytes(path, "image"), path, exif=exif)


# --------------------------------------------------------------------------------------------
# Labels


def read_label(path: str | os.PathLike, channel: int | None = None) -> np.ndarray:
    """Read a label image as an (H, W) array of raw ids (uint8, or uint16 for 16-bit PNGs).

    Palette PNGs give their *indices* (not colours). ``channel`` picks one channel of a
    multi-channel label (SYNTHIA: 0, the red channel, holds the class id); without it a label
    must be single-channel (gray, palette, or gray+alpha) or have identical channels.
    """
    path = Path(path)
    data = read_bytes(path, "label")
    try:
        arr = _label_samples(data, path)
    except decode.ImageDecodeError as exc:
        raise DatasetError(str(exc)) from None
    if channel is not None:
        if arr.shape[0] <= channel:
            if arr.shape[0] == 1:  # an already single-channel id image is fine too
                return np.ascontiguousarray(arr[0])
            raise DatasetError(
                f"label file {path} has {arr.shape[0]} channel(s); expected the class id in "
                f"channel {channel}"
            )
        return np.ascontiguousarray(arr[channel])
    if arr.shape[0] in (1, 2):  # gray / palette indices (+ alpha, ignored)
        return np.ascontiguousarray(arr[0])
    if all(np.array_equal(arr[0], arr[c]) for c in range(1, min(arr.shape[0], 3))):
        return np.ascontiguousarray(arr[0])
    raise DatasetError(
        f"label file {path} is a colour image ({arr.shape[0]} different channels); expected a "
        "single-channel PNG of ids (palette or grayscale), not a colour-coded visualisation"
    )


def _label_samples(data: bytes, path: Path) -> np.ndarray:
    """The stored samples of a label file, (C, H, W)."""
    info = decode.check_png(data, path, "label") if data.startswith(decode.PNG_SIGNATURE) else None
    deep_color = info is not None and info.bit_depth == 16 and info.color_type in (2, 6)
    if deep_color and not decode.HAS_TORCHVISION_IO:  # pragma: no cover - depends on torchvision
        raise DatasetError(
            f"cannot read label file {path}: 16-bit colour PNGs need torchvision.io "
            "(Pillow keeps only the high byte of each sample)"
        )
    # Pillow cannot read 16-bit colour at all, so those go to torchvision in any case.
    if info is not None and info.bit_depth >= 8 and (decode.torchvision_reads_png() or deep_color):
        return decode.decode_png_unchanged(data, path, "label")
    im = decode.open_image(data, path, "label")
    try:
        decode.load_image(im, data, path, "label")
        if im.mode in ("P", "L", "1", "I", "I;16", "I;16L", "I;16B", "I;16N"):
            arr = np.asarray(im)[None]
            return arr.astype(np.uint8) if arr.dtype == bool else arr
        if im.mode in ("PA", "LA", "La"):
            return np.asarray(im.getchannel(0))[None]
        if im.mode in ("RGB", "RGBA", "RGBX"):
            return np.asarray(im).transpose(2, 0, 1)
        raise DatasetError(
            f"cannot read label file {path}: colour mode {im.mode!r}; expected a palette, "
            "grayscale or (for SYNTHIA) 16-bit RGB PNG of class ids"
        )
    finally:
        im.close()


def check_same_size(image: torch.Tensor, label: np.ndarray | torch.Tensor,
                    image_path: Path, label_path: Path) -> None:
    """Raise :class:`DatasetError` naming both files and both sizes when they differ."""
    ih, iw = image.shape[-2:]
    lh, lw = label.shape[-2:]
    if (ih, iw) != (lh, lw):
        raise DatasetError(
            f"image and label sizes differ: image {image_path} is {iw}x{ih} (WxH) but label "
            f"{label_path} is {lw}x{lh}"
        )


# --------------------------------------------------------------------------------------------
# Raw id -> trainId with counting of unknown ids


class IdMapper:
    """Maps raw label ids to trainIds through a LUT and counts ids it does not know.

    ``lut``: uint8 array, raw id -> trainId (255 = ignore). ``known``: bool array of the raw ids
    that are valid for the dataset (including those deliberately ignored, such as Cityscapes'
    *parking*); any other id is *unknown*: mapped to 255 and counted in :attr:`unknown_pixels`
    (id -> pixel count), with :attr:`files_with_unknown` and a log warning the first time each
    id is met. Counts are per process: each DataLoader worker keeps its own copy.
    """

    SIZE = 65536

    def __init__(self, lut: np.ndarray, known: np.ndarray, source: str = "label"):
        self.lut = np.full(self.SIZE, IGNORE_INDEX, dtype=np.uint8)
        self.lut[: len(lut)] = np.asarray(lut, dtype=np.uint8)
        self.known = np.zeros(self.SIZE, dtype=bool)
        self.known[: len(known)] = np.asarray(known, dtype=bool)
        self.source = source
        self.unknown_pixels: Counter[int] = Counter()
        self.unknown_examples: dict[int, str] = {}
        self.files_with_unknown = 0
        # Fast path: known ids exactly 0..n-1 -> "all known" is "max < n".
        n = int(np.argmin(self.known)) if not self.known.all() else self.SIZE
        self._known_below = n if not self.known[n:].any() else None

    @classmethod
    def from_mapping(cls, mapping: Mapping[int, int], known_ids: Iterable[int] | None = None,
                     then: np.ndarray | None = None, source: str = "label") -> IdMapper:
        """From a raw id -> trainId dict (e.g. CITYSCAPES_ID_TO_TRAINID), optionally followed by a
        trainId -> trainId LUT ``then`` (e.g. ``LabelSpace.from_cityscapes19()``)."""
        lut = id_lut(dict(mapping), cls.SIZE)
        if then is not None:
            lut = np.asarray(then, dtype=np.uint8)[lut]
        known = np.zeros(cls.SIZE, dtype=bool)
        known[list(known_ids if known_ids is not None else mapping)] = True
        return cls(lut, known, source)

    @classmethod
    def identity(cls, num_classes: int, source: str = "label") -> IdMapper:
        """Labels that already hold trainIds 0..num_classes-1 (and 255)."""
        lut = np.full(cls.SIZE, IGNORE_INDEX, dtype=np.uint8)
        lut[:num_classes] = np.arange(num_classes, dtype=np.uint8)
        known = np.zeros(cls.SIZE, dtype=bool)
        known[:num_classes] = True
        known[IGNORE_INDEX] = True
        return cls(lut, known, source)

    def __call__(self, raw: np.ndarray, path: str | os.PathLike | None = None) -> torch.Tensor:
        """(H, W) raw ids -> (H, W) uint8 tensor of trainIds."""
        raw = np.asarray(raw)
        outside = None
        if raw.dtype not in (np.uint8, np.uint16):  # e.g. int32 from Pillow's mode "I"
            wide = raw.astype(np.int64)
            outside = (wide < 0) | (wide >= self.SIZE)
            raw = np.where(outside, 0, wide).astype(np.uint16)
        out = np.take(self.lut[:256] if raw.dtype == np.uint8 else self.lut, raw)
        if outside is not None and outside.any():
            out[outside] = IGNORE_INDEX
            bad = np.concatenate([wide[outside], self._unknown(raw[~outside]).astype(np.int64)])
        else:
            bad = self._unknown(raw)
        if bad.size:
            self._count(bad, path)
        return torch.from_numpy(out)

    def _unknown(self, raw: np.ndarray) -> np.ndarray:
        """The unknown ids among ``raw`` (flat, with repeats)."""
        if raw.size == 0:
            return raw.ravel()
        if self._known_below is not None:
            if int(raw.max()) < self._known_below:
                return raw.ravel()[:0]
            return raw[raw >= self._known_below]
        bad = ~np.take(self.known[:256] if raw.dtype == np.uint8 else self.known, raw)
        return raw[bad]

    def _count(self, ids: np.ndarray, path) -> None:
        values, counts = np.unique(ids, return_counts=True)
        new = [int(v) for v in values if int(v) not in self.unknown_pixels]
        for v, c in zip(values.tolist(), counts.tolist()):
            self.unknown_pixels[int(v)] += int(c)
            self.unknown_examples.setdefault(int(v), str(path))
        self.files_with_unknown += 1
        if new:
            log.warning("%s %s: ids %s are not valid %s ids; mapped to ignore (255)",
                        "label", path, new, self.source)

    def reset(self) -> None:
        self.unknown_pixels.clear()
        self.unknown_examples.clear()
        self.files_with_unknown = 0

    def summary(self) -> str:
        if not self.unknown_pixels:
            return f"no unknown {self.source} label ids"
        parts = ", ".join(f"{i}: {n} px (e.g. {self.unknown_examples[i]})"
                          for i, n in sorted(self.unknown_pixels.items()))
        return (f"unknown {self.source} label ids mapped to 255 in {self.files_with_unknown} "
                f"label file(s): {parts}")


def resolve_label_space(label_space: LabelSpace | str) -> LabelSpace:
    if isinstance(label_space, str):
        return get_label_space(label_space)
    if not isinstance(label_space, LabelSpace):
        raise TypeError(f"label_space must be a LabelSpace or its name, got {label_space!r}")
    return label_space


# --------------------------------------------------------------------------------------------
# Finding files


def _hidden(name: str) -> bool:
    return name.startswith(".")  # also macOS "._x.png" resource forks, .ipynb_checkpoints


def scan_files(directory: Path, extensions: Iterable[str] = IMAGE_EXTENSIONS,
               recursive: bool = False, suffix: str | None = None,
               warn: Callable[[str], None] | None = None) -> list[Path]:
    """Files under ``directory`` whose extension is in ``extensions`` (case-insensitive) and whose
    name ends with ``suffix`` (if given), sorted by relative path. Hidden files/folders skipped;
    broken symbolic links of such names skipped, and named to ``warn`` (default: the log)."""
    exts = tuple(e.lower() for e in extensions)
    found: list[Path] = []
    broken: list[Path] = []

    def keep(name: str) -> bool:
        return (not _hidden(name) and os.path.splitext(name)[1].lower() in exts
                and (suffix is None or name.endswith(suffix)))

    def sort(path: str) -> None:
        if os.path.isfile(path):
            found.append(Path(path))
        elif os.path.islink(path) and not os.path.exists(path):
            broken.append(Path(path))

    if recursive:
        seen: set[str] = set()
        for dirpath, dirnames, filenames in os.walk(directory, followlinks=True):
            real = os.path.realpath(dirpath)
            if real in seen:  # symlink loop
                dirnames[:] = []
                continue
            seen.add(real)
            dirnames[:] = [d for d in dirnames if not _hidden(d)]
            for f in filenames:
                if keep(f):
                    sort(os.path.join(dirpath, f))
    else:
        with os.scandir(directory) as it:
            for e in it:  # the entry's own type: no stat per regular file
                if not keep(e.name):
                    continue
                if e.is_file():
                    found.append(Path(e.path))
                elif e.is_symlink() and not os.path.exists(e.path):
                    broken.append(Path(e.path))
    if broken:
        names = sorted(p.relative_to(directory).as_posix() for p in broken)
        (warn or log.warning)(f"{directory}: skipped {list_names(names, limit=5)} "
                              "(broken symbolic links: their targets do not exist)")
    return sorted(found, key=lambda p: p.relative_to(directory).as_posix())


def read_list_file(list_file: str | os.PathLike, base_dirs: Iterable[Path]) -> list[Path]:
    """Image paths named in a split list (one name or relative path per line, ``#`` comments).

    Each entry is looked up under each of ``base_dirs`` in turn (e.g. ``images/`` then the root);
    a line with extra columns (``image label``) uses its first column if the whole line is not a
    file. Entries not found raise :class:`DatasetError` listing them.
    """
    list_file = Path(list_file).expanduser()
    base_dirs = list(base_dirs)
    try:
        text = list_file.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DatasetError(f"list file {list_file} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read list file {list_file}: {exc}") from None
    entries = [ln.strip() for ln in text.splitlines()]
    entries = [e for e in entries if e and not e.startswith("#")]
    if not entries:
        raise DatasetError(f"list file {list_file} lists no images (it is empty)")

    def find(name: str) -> Path | None:
        p = Path(name)
        if p.is_absolute():
            return p if p.is_file() else None
        for base in base_dirs:
            if (base / p).is_file():
                return base / p
        return None

    paths, missing = [], []
    for entry in entries:
        hit = find(entry)
        if hit is None and len(entry.split()) > 1:
            hit = find(entry.split()[0])
        if hit is None:
            missing.append(entry)
        else:
            paths.append(hit)
    if missing:
        where = " or ".join(str(b) for b in base_dirs)
        raise DatasetError(
            f"list file {list_file}: {list_names(missing)} not found under {where}"
        )
    return paths


# --------------------------------------------------------------------------------------------
# Layout recognition


TITLES = {"gta5": "GTA5", "synthia": "SYNTHIA", "cityscapes": "Cityscapes", "folder": "folder",
          "bdd100k": "BDD100K", "mapillary": "Mapillary Vistas"}
LAYOUTS = {
    "gta5": "images/*.png + labels/*.png",
    "synthia": "RGB/*.png + GT/LABELS/*.png",
    "cityscapes": "leftImg8bit/SPLIT/CITY/*_leftImg8bit.png + gtFine/SPLIT/CITY/*_gtFine_labelIds.png",
    "bdd100k": "images/10k/SPLIT/*.jpg + labels/sem_seg/masks/SPLIT/*.png, or "
               "seg/images/SPLIT/*.jpg + seg/labels/SPLIT/*_train_id.png",
    "mapillary": "training/images/*.jpg + training/labels/*.png (v1.2) or "
                 "training/v2.0/labels/*.png (v2.0); validation/ alike",
}


def detect_layout(path: Path) -> tuple[str, Path] | None:
    """Recognise a dataset root (or a sub-folder of one): ``(kind, root)`` or None."""
    try:
        if (path / "leftImg8bit").is_dir():
            return "cityscapes", path
        if (path / "RGB").is_dir() and (path / "GT").is_dir():
            return "synthia", path
        if (path / "images" / "10k").is_dir() or (path / "seg" / "images").is_dir():
            return "bdd100k", path
        if (path / "training" / "images").is_dir() or (path / "validation" / "images").is_dir():
            return "mapillary", path
        if (path / "images").is_dir() and (path / "labels").is_dir():
            return "gta5", path
        parent = path.parent
        if path.name in ("images", "labels") and (parent / "images" / "10k").is_dir():
            return "bdd100k", parent
        if path.name in ("leftImg8bit", "gtFine") and (parent / "leftImg8bit").is_dir():
            return "cityscapes", parent
        if path.name == "RGB" and (parent / "GT").is_dir():
            return "synthia", parent
        if path.name == "GT" and (parent / "RGB").is_dir():
            return "synthia", parent
        if path.name in ("images", "labels") and (parent / "images").is_dir() \
                and (parent / "labels").is_dir():
            return "gta5", parent
        if parent.name == "leftImg8bit" and (parent.parent / "leftImg8bit").is_dir():
            return "cityscapes", parent.parent  # a split folder leftImg8bit/train
    except OSError:
        return None
    return None


def layout_hint(path: Path, expected: str) -> str:
    """'; this looks like a Cityscapes root (...); use cityscapes:PATH' or ''."""
    found = detect_layout(path)
    if found is None:
        return ""
    kind, root = found
    if kind == expected and root == path:
        return ""
    if root == path:
        return f"; this looks like a {TITLES[kind]} root ({LAYOUTS[kind]}); use {kind}:{root}"
    return (f"; this looks like a folder inside the {TITLES[kind]} root {root}; "
            f"use {kind}:{root}")


def require_root(root: Path, kind: str) -> Path:
    """``root`` must be an existing directory."""
    if not root.exists():
        raise DatasetError(f"{TITLES[kind]} root {root} does not exist")
    if not root.is_dir():
        raise DatasetError(f"{TITLES[kind]} root {root} is not a directory")
    return root
