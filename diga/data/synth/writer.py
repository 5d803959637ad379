"""Writing the benchmark to disk: the source domain in the GTA5 layout, the target domain in
the Cityscapes layout, and ``benchmark.json`` (written last) that marks a complete set."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import NamedTuple

import numpy as np
from filelock import FileLock
from PIL import Image

from diga.classes import CITYSCAPES19, CITYSCAPES_ID_TO_TRAINID, CITYSCAPES_PALETTE
from diga.io import atomic_write, atomic_write_text
from diga.progress import progress_bar

from . import style as styles
from .conditions import ConditionSpec, describe, parse_conditions, render_conditioned
from .style import SOURCE_STYLE, TARGET_STYLE, StyleConfig

FORMAT_VERSION = 2  # bumped whenever the files change: benchmarks cached under another are redone

TRAINID_TO_LABELID = CITYSCAPES19.to_cityscapes_label_ids()  # ignore -> 0 (unlabeled)

_GTA5_PALETTE = [0] * 768
for _lid, _tid in CITYSCAPES_ID_TO_TRAINID.items():
    _GTA5_PALETTE[3 * _lid: 3 * _lid + 3] = CITYSCAPES_PALETTE[_tid]


def trainid_to_labelid(labels: np.ndarray) -> np.ndarray:
    """Cityscapes trainIds (255 = ignore) -> labelIds (ignore -> 0)."""
    return TRAINID_TO_LABELID[labels]


class _Pair(NamedTuple):
    """One image/label file pair: which draw it is and where it goes."""

    domain: int   # 0 source, 1 target
    split: int    # 0 train, 1 val
    k: int
    image: Path
    label: Path
    layout: str   # "gta5" (palette labels) or "cityscapes" (grayscale labels)


_SUBDIRS = ("source", "source_val", "target")


def _pairs(out: Path, n_train: int, n_val: int) -> Iterator[_Pair]:
    for split_i, (sub, n) in enumerate((("source", n_train), ("source_val", n_val))):
        for k in range(n):
            yield _Pair(0, split_i, k, out / sub / "images" / f"{k:05d}.png",
                        out / sub / "labels" / f"{k:05d}.png", "gta5")
    for split_i, (split, n) in enumerate((("train", n_train), ("val", n_val))):
        for k in range(n):
            stem = f"synthcity_000000_{k:06d}"
            yield _Pair(1, split_i, k,
                        out / "target" / "leftImg8bit" / split / "synthcity" / f"{stem}_leftImg8bit.png",
                        out / "target" / "gtFine" / split / "synthcity" / f"{stem}_gtFine_labelIds.png",
                        "cityscapes")


def _save_png(im: Image.Image, path: Path, **kw) -> None:
    atomic_write(path, lambda tmp: im.save(tmp, format="PNG", **kw), durable=False)  # benchmark.json marks completion


def _write_json(path: Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True))


def _write_pair(pair: _Pair, image: np.ndarray, labels: np.ndarray) -> None:
    """The RGB image and its labelIds: a palette PNG in the GTA5 layout, grayscale otherwise."""
    H, W = labels.shape
    _save_png(Image.fromarray(image, "RGB"), pair.image, compress_level=1)
    ids = trainid_to_labelid(labels)
    if pair.layout == "gta5":
        lbl = Image.frombytes("P", (W, H), ids.tobytes())
        lbl.putpalette(_GTA5_PALETTE)
        _save_png(lbl, pair.label)
    else:
        _save_png(Image.fromarray(ids, "L"), pair.label)


# Parameters written only when set (so that a benchmark without them keeps its exact bytes).
_OPTIONAL_PARAMS = ("conditions",)


def _is_complete(meta: Path, params: dict) -> bool:
    """Whether ``meta`` records a finished benchmark with exactly these parameters."""
    if not meta.is_file():
        return False
    try:
        old = json.loads(meta.read_text())
    except (OSError, ValueError):
        return False
    return (old.get("complete") is True and all(old.get(k) == v for k, v in params.items())
            and all(old.get(k) == params.get(k) for k in _OPTIONAL_PARAMS))


def _domain_styles(source_style: StyleConfig | None, target_style: StyleConfig | None,
                   gap: float | None) -> tuple[StyleConfig, StyleConfig]:
    if gap is not None and target_style is not None:
        raise ValueError("give target_style or gap, not both")
    src = source_style if source_style is not None else SOURCE_STYLE
    if gap is not None:
        return src, styles.target_style(float(gap), src)
    return src, target_style if target_style is not None else TARGET_STYLE


def generate_benchmark(out: Path, n_train: int = 400, n_val: int = 100,
                       size: tuple[int, int] = (128, 256), seed: int = 0,
                       progress: bool = True, *, source_style: StyleConfig | None = None,
                       target_style: StyleConfig | None = None,
                       gap: float | None = None,
                       conditions: Iterable[str | ConditionSpec | tuple[str, float]] = ()) -> Path:
    """Write the two-domain benchmark under ``out`` and return ``out``.

    * ``out/source/{images,labels}/00000.png`` (GTA5 layout, ``n_train`` pairs) and
      ``out/source_val/...`` (``n_val`` pairs): RGB images, palette PNG labels of Cityscapes
      labelIds (ignore -> 0);
    * ``out/target/leftImg8bit/{train,val}/synthcity/synthcity_000000_{k:06d}_leftImg8bit.png`` and
      ``out/target/gtFine/{train,val}/synthcity/..._gtFine_labelIds.png`` (8-bit labelIds);
    * ``out/benchmark.json``: the parameters and ``"complete": true`` (written last).

    A complete benchmark with the same parameters is returned at once. Otherwise the folders
    ``source``, ``source_val`` and ``target`` under ``out`` are removed and rewritten, by one process
    at a time: another one generating ``out`` is waited for (a file lock beside ``out``). Image
    ``k`` of a split is drawn from ``default_rng([seed, domain, split, k])`` so the files depend
    only on the parameters (same seed -> byte-identical files).

    The target domain is drawn in ``target_style`` (default :data:`TARGET_STYLE`); ``gap``
    instead picks the camera style ``target_style(gap)`` of that strength (0 = no domain gap,
    1 = the full gap; not both).

    ``conditions`` (names or ``NAME:STRENGTH`` strings, see :mod:`.conditions`) shift the target
    domain (train and val) further: the same scenes drawn under fog, at night... They are
    applied in their fixed order and recorded as ``"conditions"`` in ``benchmark.json``; with
    none the files are exactly those of a benchmark without them."""
    out = Path(out)
    H, W = int(size[0]), int(size[1])
    if H < 16 or W < 16:
        raise ValueError(f"image size {size} too small (at least 16x16)")
    if n_train < 0 or n_val < 0:
        raise ValueError("n_train and n_val must be >= 0")
    specs = parse_conditions(conditions)
    src, tgt = _domain_styles(source_style, target_style, gap)
    params = {
        "format_version": FORMAT_VERSION, "seed": int(seed), "size": [H, W],
        "n_train": int(n_train), "n_val": int(n_val),
        "source_style": asdict(src), "target_style": asdict(tgt),
    }
    if specs:
        params["conditions"] = describe(specs)
    params = json.loads(json.dumps(params))  # tuples -> lists, as read back
    meta = out / "benchmark.json"
    if _is_complete(meta, params):
        return out
    out.mkdir(parents=True, exist_ok=True)
    # Two runs started at once on a fresh cache removed each other's files as they wrote theirs (one failed,
    # the other marked a benchmark with missing images complete): the second now waits for the first.
    with FileLock(lock_path(out)):
        if not _is_complete(meta, params):
            _write(out, meta, params, n_train, n_val, (H, W), int(seed), src, tgt, specs, progress)
    return out


def lock_path(out: Path) -> Path:
    """The lock the one process writing ``out`` holds: beside it, so that the benchmark's folder holds its
    files alone (and keeps its published checksum)."""
    return out.parent / f".{out.name}.lock"


def _write(out: Path, meta: Path, params: dict, n_train: int, n_val: int, size: tuple[int, int], seed: int,
           src: StyleConfig, tgt: StyleConfig, specs: tuple[ConditionSpec, ...], progress: bool) -> None:
    """Write every file of the benchmark, ``benchmark.json`` last (the caller holds the lock)."""
    _write_json(meta, {**params, "complete": False})
    for sub in _SUBDIRS:
        if (out / sub).is_dir():
            shutil.rmtree(out / sub)

    pairs = list(_pairs(out, n_train, n_val))
    with progress_bar(enabled=progress, transient=True) as bar:
        task = bar.add_task("synthetic benchmark", total=len(pairs))
        for pair in pairs:
            key = (seed, pair.domain, pair.split, pair.k)
            if pair.domain == 0:
                image, labels = render_conditioned(key, size, src)
            else:
                image, labels = render_conditioned(key, size, tgt, specs)
            _write_pair(pair, image, labels)
            bar.advance(task)
    _write_json(meta, {
        **params,
        "layout": {"source": "gta5", "source_val": "gta5", "target": "cityscapes",
                   "city": "synthcity"},
        "complete": True,
    })
