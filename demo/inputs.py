"""Decoding and validating what users upload to the demo.

Pure functions: bytes or a path in, an RGB ``uint8`` array (plus readable notices) out, or a
:class:`DemoInputError` whose message can be shown as is in the UI. Nothing here writes files.

What is accepted and how:

* formats: PNG, JPEG, WebP, BMP, TIFF, GIF and PPM/PGM (Pillow, restricted to these decoders);
  anything else is "not an image";
* truncated or corrupt files are refused (Pillow's ``LOAD_TRUNCATED_IMAGES`` is never turned on);
* grayscale (``L``, ``1``, ``LA``), palette, CMYK, YCbCr, LAB and HSV images are converted to RGB;
  16-bit (``I;16*``) and 32-bit (``I``, ``F``) images are scaled to 8 bits; 16-bit-per-channel RGB
  is reduced to 8 bits; transparent images (RGBA, LA, PA, palette transparency) are composited
  on white -- each conversion comes with a notice;
* EXIF orientation is applied; for multi-frame files (GIF, TIFF) the first frame is used;
* images above ``max_pixels`` are downscaled (with a notice), above ``hard_max_pixels`` refused;
  files above ``max_bytes`` and images smaller than ``min_side`` pixels are refused.
"""

from __future__ import annotations

import io
import math
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from diga.errors import DigaError

#: Default pixel budget of one image: a Cityscapes frame (2048 x 1024).
MAX_PIXELS = 2048 * 1024
#: Images above this are refused outright (decoding them would cost too much memory).
HARD_MAX_PIXELS = 50_000_000
#: Largest file read (the web server has its own upload limit, usually lower).
MAX_BYTES = 50 * 1024 * 1024
MIN_SIDE = 16

FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF", "PPM")
EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".ppm", ".pgm", ".pnm")


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


def read_bytes(source: bytes | str | Path, max_bytes: int = MAX_BYTES, name: str | None = None) -> tuple[bytes, str]:
    """The raw bytes of ``source`` and a display name; refuses missing, empty and huge files."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        name = name or "upload"
    else:
        path = Path(source)
        name = name or path.name
        try:
            size = path.stat().st_size
            if not path.is_file():
                raise DemoInputError(f"{name}: not a file")
            if size > max_bytes:
                raise DemoInputError(
                    f"{name}: file too large ({_human_bytes(size)}; the limit is {_human_bytes(max_bytes)})")
            data = path.read_bytes()
        except DemoInputError:
            raise
        except OSError as e:
            raise DemoInputError(f"{name}: cannot be read ({e.strerror or e})") from None
    if not data:
        raise DemoInputError(f"{name}: the file is empty")
    if len(data) > max_bytes:
        raise DemoInputError(
            f"{name}: file too large ({_human_bytes(len(data))}; the limit is {_human_bytes(max_bytes)})")
    return data, name


_MAGIC = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"),
          (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"BM", "BMP"))


def _sniff(data: bytes) -> str | None:
    """The image format announced by the first bytes (to tell corrupt images from non-images)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return next((kind for magic, kind in _MAGIC if data.startswith(magic)), None)


def _open(data: bytes, name: str, hard_max_pixels: int) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=list(FORMATS))
    except Image.DecompressionBombError:
        raise DemoInputError(f"{name}: the image is far too large to decode safely") from None
    except UnidentifiedImageError:
        kind = _sniff(data)
        if kind:
            raise DemoInputError(f"{name}: looks like a {kind} file but cannot be decoded: "
                                 "it is corrupt or truncated") from None
        raise DemoInputError(
            f"{name}: not an image, or not a format the demo reads "
            f"(use PNG, JPEG, WebP, BMP, TIFF or GIF)") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise DemoInputError(f"{name}: the image file is corrupt ({e})") from None
    w, h = img.size
    if w * h > hard_max_pixels:
        raise DemoInputError(
            f"{name}: the image is too large ({w}×{h} = {w * h / 1e6:.0f} MP; "
            f"the limit is {hard_max_pixels / 1e6:.0f} MP)")
    return img


def _sixteen_bit_rgb(img: Image.Image) -> bool:
    try:
        return any(";16" in str(t.args if hasattr(t, "args") else t[3]) for t in (img.tile or []))
    except Exception:  # noqa: BLE001 - tile layout is a Pillow detail; guessing wrong only drops a notice
        return False


def _to_rgb(img: Image.Image, name: str) -> tuple[Image.Image, list[str]]:
    """Convert any decoded mode to RGB; return the notices that describe the conversion."""
    notes: list[str] = []
    mode = img.mode
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info)
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        if mode.startswith("I;16"):
            arr8 = arr / 257.0
            notes.append(f"{name}: 16-bit grayscale image, scaled to 8 bits and converted to RGB")
        else:
            lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
            arr8 = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
            notes.append(f"{name}: {'floating-point' if mode == 'F' else '32-bit'} grayscale image, "
                         f"stretched to 8 bits and converted to RGB")
        arr8 = np.nan_to_num(arr8, nan=0.0).clip(0, 255).round().astype(np.uint8)
        return Image.fromarray(np.repeat(arr8[..., None], 3, axis=2), "RGB"), notes
    if has_alpha:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        out = Image.alpha_composite(white, rgba).convert("RGB")
        notes.append(f"{name}: transparency ignored (composited on white)")
        if mode in ("LA", "La"):
            notes.append(f"{name}: grayscale image, converted to RGB (the model expects colour photos)")
        return out, notes
    if mode in ("L", "1"):
        notes.append(f"{name}: grayscale image, converted to RGB (the model expects colour photos)")
    elif mode == "CMYK":
        notes.append(f"{name}: CMYK image, converted to RGB (colours may be slightly off)")
    elif mode not in ("RGB", "P"):
        notes.append(f"{name}: {mode} image, converted to RGB")
    return (img if mode == "RGB" else img.convert("RGB")), notes


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
    img = _open(data, name, hard_max_pixels)
    notes: list[str] = []
    try:
        n_frames = int(getattr(img, "n_frames", 1) or 1)
        if n_frames > 1:
            notes.append(f"{name}: {n_frames} frames, only the first one is used")
        sixteen = _sixteen_bit_rgb(img) and img.mode in ("RGB", "RGBA")
        w0, h0 = img.size
        if img.format == "JPEG" and w0 * h0 > max_pixels:
            img.draft("RGB", fit_pixels((w0, h0), max_pixels))  # decode at a reduced scale: cheaper
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img.load()
            img = ImageOps.exif_transpose(img)
    except DemoInputError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError, struct.error) as e:
        msg = str(e)
        if "truncated" in msg.lower():
            raise DemoInputError(f"{name}: the image file is truncated (incomplete upload?)") from None
        raise DemoInputError(f"{name}: the image file is corrupt ({msg or type(e).__name__})") from None
    except Image.DecompressionBombError:
        raise DemoInputError(f"{name}: the image is far too large to decode safely") from None
    if sixteen:
        notes.append(f"{name}: 16 bits per channel, reduced to 8 bits")
    try:
        img, conv_notes = _to_rgb(img, name)
    except (OSError, ValueError) as e:
        raise DemoInputError(f"{name}: colour mode {img.mode} cannot be converted to RGB ({e})") from None
    notes.extend(conv_notes)
    w, h = img.size
    if min(w, h) < min_side:
        raise DemoInputError(f"{name}: the image is too small ({w}×{h}; at least {min_side}×{min_side} pixels)")
    nw, nh = fit_pixels((w, h), max_pixels)
    if (nw, nh) != (w, h):
        img = img.resize((nw, nh), Image.Resampling.LANCZOS, reducing_gap=2.0)
        notes.append(f"{name}: large image ({w0}×{h0}) downscaled to {nw}×{nh} "
                     f"(limit {max_pixels / 1e6:.1f} MP); the masks have the reduced size")
    arr = np.ascontiguousarray(np.asarray(img, dtype=np.uint8))
    if arr.ndim != 3 or arr.shape[2] != 3:  # pragma: no cover - _to_rgb guarantees RGB
        raise DemoInputError(f"{name}: could not be converted to an RGB image")
    return LoadedImage(arr, name, notes, original_size=(h0, w0))


def safe_stem(name: str, fallback: str = "image", max_len: int = 40) -> str:
    """A file-name stem made only of ``[A-Za-z0-9_-]`` from a user-supplied name (for downloads)."""
    stem = Path(str(name).replace("\\", "/")).name
    for ext in EXTENSIONS:
        if stem.lower().endswith(ext):
            stem = stem[: -len(ext)]
            break
    clean = "".join(c if (c.isascii() and (c.isalnum() or c in "-_")) else "_" for c in stem).strip("_-")
    return clean[:max_len] or fallback
