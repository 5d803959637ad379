"""Semi-supervised splits: a seeded, stable fraction of a dataset's images, or the rest of them.

``cityscapes:/data/cs?fraction=1/16`` keeps 1/16 of the images (rounded up: 186 of Cityscapes'
2975), ``...?fraction=1/16&part=unlabelled`` the other 2789, ``&seed=N`` draws another subset.
The choice depends only on the images' paths relative to the dataset root, the fraction and the
seed -- not on the order the files are listed on disk nor on where the dataset is mounted -- so
every run, and every process of a distributed run, gets the same images. Each image is ranked by
a hash of (seed, relative path) and the lowest ranks are kept, so adding images to a dataset
leaves the earlier choice mostly in place.

The images of the part are written as a list file (one path relative to the root per line) under
``$DIGA_CACHE/splits/`` (default ``~/.cache/diga``); ``?list=FILE`` reads such a file, or your own,
back.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from ..io import atomic_write_text, cache_dir
from .errors import DatasetError

log = logging.getLogger("diga.data")

PARTS = ("labelled", "unlabelled")
_PART_NAMES = {"labelled": "labelled", "labeled": "labelled",
               "unlabelled": "unlabelled", "unlabeled": "unlabelled"}


def parse_fraction(text: str) -> Fraction:
    """``"1/16"`` or ``"0.25"`` -> a Fraction in (0, 1]; anything else raises ValueError."""
    try:
        value = Fraction(str(text).strip())
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"expected a fraction such as 1/16, 1/8, 1/4, 1/2 or 0.25, got {text!r}") from None
    if not 0 < value <= 1:
        raise ValueError(f"expected a fraction above 0 and at most 1 (such as 1/16 or 0.25), got {text!r}")
    return value


def parse_part(text: str) -> str:
    """``labelled`` (the chosen fraction) or ``unlabelled`` (the rest); US spellings accepted."""
    part = _PART_NAMES.get(str(text).strip().lower())
    if part is None:
        raise ValueError(f"expected {' or '.join(PARTS)}, got {text!r}")
    return part


def parse_seed(text: str) -> int:
    try:
        return int(str(text).strip())
    except ValueError:
        raise ValueError(f"expected an integer seed, got {text!r}") from None


@dataclass(frozen=True)
class Subset:
    """Which part of a dataset to keep: the ``fraction`` chosen with ``seed``, or the rest."""

    fraction: Fraction
    seed: int = 0
    part: str = "labelled"

    @property
    def tag(self) -> str:
        """``labelled-1-16-seed0``: names the list file."""
        return f"{self.part}-{self.fraction.numerator}-{self.fraction.denominator}-seed{self.seed}"

    def describe(self) -> str:
        rest = " (the rest)" if self.part == "unlabelled" else ""
        return f"{self.part} part{rest} of fraction {self.fraction}, seed {self.seed}"


# Spec options (``KIND:PATH?fraction=1/16&part=unlabelled``) -> dataset keyword, converter, shown value.
SUBSET_OPTIONS: dict[str, tuple[str, Any, str]] = {
    "fraction": ("fraction", parse_fraction, "FRACTION"),
    "seed": ("seed", parse_seed, "INTEGER"),
    "part": ("part", parse_part, "|".join(PARTS)),
    "list": ("list_file", Path, "FILE"),
}


def check_subset_options(options: Mapping[str, Any], spec: str) -> None:
    """``?seed=`` and ``?part=`` only mean something beside ``?fraction=``."""
    alone = [name for name in ("seed", "part") if name in options]
    if alone and "fraction" not in options:
        raise DatasetError(f"dataset spec {spec!r}: ?{' and ?'.join(alone)}= need ?fraction= "
                           "(e.g. ?fraction=1/16&part=unlabelled)")


def take_subset(options: dict[str, Any]) -> Subset | None:
    """Remove the subset keywords from parsed spec ``options``; the Subset they describe, or None."""
    fraction = options.pop("fraction", None)
    seed, part = options.pop("seed", 0), options.pop("part", "labelled")
    return None if fraction is None else Subset(fraction, seed, part)


def choose(names: Sequence[str], fraction: Fraction, seed: int = 0) -> set[str]:
    """The ``ceil(len * fraction)`` names of lowest hash rank under ``seed`` (repeats count once)."""
    unique = sorted(set(names))
    count = math.ceil(len(unique) * fraction)
    return set(sorted(unique, key=lambda name: (_rank(name, seed), name))[:count])


def _rank(name: str, seed: int) -> bytes:
    return hashlib.sha256(f"{seed}\0{name}".encode()).digest()


def relative_name(path: Path, root: Path) -> str:
    """``path`` relative to the dataset ``root`` (a single-image root: its file name)."""
    try:
        return path.relative_to(root).as_posix() if path != root else path.name
    except ValueError:
        return path.as_posix()


def apply_subset(dataset, subset: Subset, kind: str) -> Path:
    """Keep ``subset`` of ``dataset.samples`` (in their order) and write its list file; its path.

    The path is also kept as ``dataset.subset_list``.
    """
    root = dataset.root
    names = [relative_name(image, root) for image, _ in dataset.samples]
    chosen = choose(names, subset.fraction, subset.seed)
    keep = subset.part == "labelled"
    kept = [(sample, name) for sample, name in zip(dataset.samples, names) if (name in chosen) == keep]
    if not kept:
        raise DatasetError(
            f"{kind}:{root}: the {subset.describe()} has no images ({len(set(names))} in all, "
            f"{len(chosen)} chosen); choose a smaller fraction"
        )
    dataset.samples = [sample for sample, _ in kept]
    dataset.has_labels = all(label is not None for _, label in dataset.samples)
    path = subset_list_path(kind, root, dataset.split, subset, dataset.list_file)
    write_list_file(path, sorted({name for _, name in kept}))
    dataset.subset_list = path
    log.info("%s:%s: %d of %d images (%s), listed in %s", kind, root, len(kept), len(names),
             subset.describe(), path)
    return path


def subset_list_path(kind: str, root: Path, split: str, subset: Subset, list_file: Path | None = None) -> Path:
    """Where the list of a subset is written: one folder per dataset root (and list file)."""
    source = f"{Path(root).resolve()}\0{Path(list_file).resolve() if list_file else ''}"
    digest = hashlib.sha256(source.encode()).hexdigest()[:10]
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(root).name) or "root"
    return cache_dir() / "splits" / f"{kind}-{safe}-{digest}" / f"{split}-{subset.tag}.txt"


def write_list_file(path: Path, names: Sequence[str]) -> None:
    """One name per line, written atomically and only when it changes (every run rebuilds it)."""
    text = "".join(f"{name}\n" for name in names)
    try:
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, text)
    except OSError as exc:
        raise DatasetError(f"cannot write the split list {path}: {exc}; set DIGA_CACHE to a writable "
                           "folder") from None
