"""Builders of tiny datasets in the exact official layouts and file formats (for tests)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from diga.classes import label_png_palette

# GTA5 label PNGs carry the official Cityscapes colours by labelId as their palette.
GTA5_PALETTE = label_png_palette()


def write_png16(path: Path, arr: np.ndarray) -> None:
    """Write an (H, W, C) array as a 16-bit PNG (C = 1 gray, 3 RGB, 4 RGBA), the way SYNTHIA's
    GT/LABELS files are stored (Pillow cannot write 16-bit colour PNGs)."""
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    h, w, c = arr.shape
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + tag + data
                + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))

    Path(path).write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def rgb_for(ids: np.ndarray, seed: int = 0) -> np.ndarray:
    """A deterministic RGB image whose pixels encode ``ids`` (R = id; G, B from seed/position)."""
    ids = np.asarray(ids)
    h, w = ids.shape
    img = np.zeros((h, w, 3), dtype=np.uint8)
    img[..., 0] = ids.astype(np.uint8)
    img[..., 1] = (np.arange(h)[:, None] * 7 + seed) % 256
    img[..., 2] = (np.arange(w)[None, :] * 11 + seed) % 256
    return img


def write_palette_label(path: Path, ids: np.ndarray) -> None:
    """A GTA5-style label: 8-bit palette PNG whose indices are Cityscapes labelIds."""
    im = Image.fromarray(np.asarray(ids, dtype=np.uint8), mode="P")
    im.putpalette(GTA5_PALETTE)
    im.save(path)


def make_gta5(root: Path, labels: dict[str, np.ndarray]) -> Path:
    """``root/images/NAME`` (RGB PNG) + ``root/labels/NAME`` (palette PNG of labelIds)."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    for i, (name, ids) in enumerate(labels.items()):
        Image.fromarray(rgb_for(ids, i)).save(root / "images" / name)
        write_palette_label(root / "labels" / name, ids)
    return root


def make_synthia(root: Path, labels: dict[str, np.ndarray]) -> Path:
    """``root/RGB/NAME`` (RGB PNG) + ``root/GT/LABELS/NAME`` (16-bit RGB PNG: R = class id,
    G = instance id, B = 0)."""
    (root / "RGB").mkdir(parents=True, exist_ok=True)
    (root / "GT" / "LABELS").mkdir(parents=True, exist_ok=True)
    (root / "GT" / "COLOR").mkdir(parents=True, exist_ok=True)
    for i, (name, ids) in enumerate(labels.items()):
        ids = np.asarray(ids)
        Image.fromarray(rgb_for(ids, i)).save(root / "RGB" / name)
        gt = np.zeros(ids.shape + (3,), dtype=np.uint16)
        gt[..., 0] = ids
        gt[..., 1] = 1000 + np.arange(ids.size).reshape(ids.shape)  # instance ids > 255
        write_png16(root / "GT" / "LABELS" / name, gt)
    return root


def make_cityscapes(root: Path, frames: dict[str, np.ndarray], split: str = "train",
                    labels: bool = True) -> Path:
    """``frames``: ``{"aachen/aachen_000000_000019": labelIds}`` ->
    ``leftImg8bit/{split}/aachen/aachen_000000_000019_leftImg8bit.png`` (RGB) and
    ``gtFine/{split}/aachen/aachen_000000_000019_gtFine_labelIds.png`` (8-bit gray)."""
    for i, (stem, ids) in enumerate(frames.items()):
        img = root / "leftImg8bit" / split / f"{stem}_leftImg8bit.png"
        img.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb_for(ids, i)).save(img)
        if labels:
            lab = root / "gtFine" / split / f"{stem}_gtFine_labelIds.png"
            lab.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.asarray(ids, dtype=np.uint8), mode="L").save(lab)
            # the other gtFine files, which the loader must skip
            colors = np.asarray(GTA5_PALETTE, dtype=np.uint8).reshape(256, 3)
            Image.fromarray(colors[np.asarray(ids, dtype=np.uint8)]).save(
                lab.with_name(f"{Path(stem).name}_gtFine_color.png"))
            lab.with_name(f"{Path(stem).name}_gtFine_polygons.json").write_text("{}")
    return root
