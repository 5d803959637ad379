"""Decoding and validating what users upload to the demo.

Pure functions: bytes or a path in, an RGB ``uint8`` array (plus readable notices) out, or a
:class:`DemoInputError` whose message can be shown as is in the UI. Nothing here writes files.

Pixels come from the project's one decoder, :mod:`diga.data.decode` -- the same as ``diga
predict`` and the datasets, so the demo and the CLI segment a file identically. Its policy:
PNG, JPEG, WebP, BMP, TIFF, GIF and PPM/PGM; EXIF orientation applied; transparency composited
on white; 16-bit samples reduced to their high byte; grayscale, palette, CMYK and other colour
modes converted to RGB; the first frame of multi-frame files. Each conversion becomes a notice.

The demo adds its upload limits: files above ``max_bytes`` and images above ``hard_max_pixels``
or smaller than ``min_side`` pixels are refused; images above ``max_pixels`` are downscaled (with
a notice).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from diga.data import decode
from diga.errors import DigaError
from diga.export.images import safe_stem  # the one output-name rule, used for the downloads

__all__ = ["DemoInputError", "LoadedImage", "decode_image", "fit_pixels", "read_bytes", "safe_stem"]

#: Default pixel budget of one image: a Cityscapes frame (2048 x 1024).
MAX_PIXELS = 2048 * 1024
#: Images above this are refused outright (decoding them would cost too much memory).
HARD_MAX_PIXELS = 50_000_000
#: Largest file read (the web server has its own upload limit, usually lower).
MAX_BYTES = 50 * 1024 * 1024
MIN_SIDE = 16


class DemoInputError(DigaError, ValueError):
    """A user's file that cannot be used; ``str(e)`` is a readable, complete message."""


@dataclass
class LoadedImage:
    """A decoded RGB image and what was done to it on the way."""

    array: np.ndarray  # (H, W, 3) uint8
    name: str
    notices: list[str] = field(default_factory=list)
    original_size: tuple[int, int] = (0, 0)  # (H, W) before any downscaling

    @property
    def size(self) -> tuple[int, int]:
        return int(self.array.shape[0]), int(self.array.shape[1])


def _human_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def _too_big(name: str, size: int, max_bytes: int) -> DemoInputError:
    return DemoInputError(f"{name}: file too large ({_human_bytes(size)}; the limit is {_human_bytes(max_bytes)})")


def read_bytes(source: bytes | str | Path, max_bytes: int = MAX_BYTES, name: str | None = None) -> tuple[bytes, str]:
    """The raw bytes of ``source`` and a display name; refuses missing, empty and huge files."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, name = bytes(source), name or "upload"
        if len(data) > max_bytes:
            raise _too_big(name, len(data), max_bytes)
    else:
        path = Path(source)
        name = name or path.name
        try:
            size = path.stat().st_size  # checked before reading the file into memory
        except OSError:
            size = 0  # reading it below says why
        if size > max_bytes:
            raise _too_big(name, size, max_bytes)
        try:
            data = decode.read_image_file(path)
        except decode.ImageDecodeError as e:
            raise DemoInputError(f"{name}: {e.reason}") from None
    if not data:
        raise DemoInputError(f"{name}: the file is empty")
    return data, name


def fit_pixels(size: tuple[int, int], max_pixels: int) -> tuple[int, int]:
    """(W, H) scaled down (aspect kept) so that W * H <= max_pixels; unchanged if it fits."""
    w, h = size
    if w * h <= max_pixels:
        return w, h
    s = math.sqrt(max_pixels / (w * h))
    nw, nh = max(1, int(w * s)), max(1, int(h * s))
    while nw * nh > max_pixels:  # rounding guard
        nw, nh = max(1, nw - 1), max(1, nh - 1)
    return nw, nh


def decode_image(
    source: bytes | str | Path,
    *,
    name: str | None = None,
    max_pixels: int = MAX_PIXELS,
    hard_max_pixels: int = HARD_MAX_PIXELS,
    max_bytes: int = MAX_BYTES,
    min_side: int = MIN_SIDE,
) -> LoadedImage:
    """Decode ``source`` (bytes or a path) to an RGB uint8 image, or raise :class:`DemoInputError`.

    Images above ``max_pixels`` are downscaled (aspect kept) with a notice."""
    data, name = read_bytes(source, max_bytes=max_bytes, name=name)
    try:
        decoded = decode.decode_image(data, name, exif=True, max_pixels=hard_max_pixels)
    except decode.ImageDecodeError as e:
        raise DemoInputError(f"{name}: {e.reason}") from None
    notes = [f"{name}: {note}" for note in decoded.notes]
    arr = decoded.hwc()
    h, w = decoded.size
    if min(w, h) < min_side:
        raise DemoInputError(f"{name}: the image is too small ({w}×{h}; at least {min_side}×{min_side} pixels)")
    nw, nh = fit_pixels((w, h), max_pixels)
    if (nw, nh) != (w, h):
        small = Image.fromarray(arr).resize((nw, nh), Image.Resampling.LANCZOS, reducing_gap=2.0)
        arr = np.ascontiguousarray(np.asarray(small, dtype=np.uint8))
        notes.append(f"{name}: large image ({w}×{h}) downscaled to {nw}×{nh} "
                     f"(limit {max_pixels / 1e6:.1f} MP); the masks have the reduced size")
    return LoadedImage(arr, name, notes, original_size=(h, w))
