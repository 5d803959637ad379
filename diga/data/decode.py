"""The one image decoder: the bytes of an image file -> (3, H, W) uint8 RGB, under one policy.

The datasets (:mod:`diga.data.common`), ``diga predict`` and the Predictor
(:mod:`diga.export.images`) and the web demo (:mod:`diga.demo.inputs`) all decode through
:func:`decode_image`, so a file gives the same pixels -- hence the same labels -- everywhere.

Policy:

* formats: PNG, JPEG, WebP, BMP, TIFF, GIF and PPM/PGM; anything else is "not an image";
* transparency (RGBA, gray + alpha, palette or colour-key transparency) is composited on
  **white**: ``out = round((c * a + 255 * (255 - a)) / 255)``, what a viewer shows on a light
  page. A fully transparent pixel is white whatever colour the file stores under it;
* EXIF orientation is applied (``exif=True``, the default: the image comes out upright, as
  viewers show it); ``exif=False`` keeps the stored pixel order, for datasets whose label maps
  are stored unrotated;
* 16-bit samples keep their high byte (``v >> 8``); 32-bit integer samples are clipped to 16
  bits first; floating-point samples are scaled by 255 when they lie in [0, 1], else clipped;
* grayscale (1, 8 or 16 bits) is replicated to three channels, palettes are expanded, CMYK,
  YCbCr, LAB and HSV are converted to RGB;
* multi-frame files (GIF, APNG, TIFF, MPO) give their first frame.

:class:`DecodedImage` lists which of these conversions happened (``notes``). Every failure is an
:class:`ImageDecodeError` naming the file; its ``kind`` and ``reason`` let callers word it their
own way (:class:`~diga.data.errors.DatasetError`, ``PredictorError``, a message in the demo).

Backends: ``torchvision.io`` (libpng / libjpeg-turbo) decodes PNG and JPEG -- the fastest for
8-bit RGB and the only one at hand that reads 16-bit colour PNGs (Pillow keeps only the high
byte of those, which breaks SYNTHIA's 16-bit labels). Pillow reads the header of every file (format,
size, mode, frames) and decodes everything else: other formats, PNGs with a ``tRNS`` chunk
(torchvision ignores colour-key transparency), and all images if ``torchvision.io`` loses its
codecs (they are deprecated since torchvision 0.29). Pitfalls handled here:

* torchvision 0.29 emits a ``DeprecationWarning`` on *every* call of its image functions; it is
  silenced around our calls only.
* torchvision 0.29's ``decode_png`` *crashes the process* (segfault: libpng longjmps into a dead
  frame) on any libpng error met while reading rows -- a CRC mismatch or a bad zlib stream in
  IDAT, i.e. any bit flip in the pixel data. Every PNG is therefore checked first
  (:func:`check_png`): chunk layout, the CRC of every chunk (about 1 ms for a 4 MB GTA5 frame,
  against ~33 ms to decode it) and the presence of IHDR/IDAT/IEND (truncation). Only a file whose
  CRCs were computed over already corrupt compressed data (a broken writer) can still get
  through; ``DIGA_PNG_DECODER=pillow`` in the environment decodes all PNGs with Pillow instead
  (about 20% slower, always safe).
"""

from __future__ import annotations

import io
import os
import re
import struct
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import DigaError

try:  # torchvision's codecs are deprecated (0.29) and may disappear: Pillow takes over then.
    from torchvision.io import ImageReadMode, decode_jpeg, decode_png

    HAS_TORCHVISION_IO = True
except ImportError:  # pragma: no cover - depends on the installed torchvision
    HAS_TORCHVISION_IO = False

# "torchvision" (default, fast) or "pillow" (slower; never hands a PNG to libpng via torchvision)
PNG_DECODER = os.environ.get("DIGA_PNG_DECODER", "torchvision").strip().lower()

#: Pillow format names the decoder accepts (Pillow's other decoders are never used).
FORMATS: tuple[str, ...] = ("PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF", "PPM")
FORMAT_NAMES = "PNG, JPEG, WebP, BMP, TIFF, GIF or PPM"

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_MAGIC = ((PNG_SIGNATURE, "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"),
          (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"BM", "BMP"))
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_DEEP_GRAY_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N", "F")


class ImageDecodeError(DigaError, ValueError):
    """An image that cannot be read or decoded; ``str(e)`` names the file and says why.

    ``kind`` is one of ``missing``, ``unreadable``, ``empty``, ``not_image``, ``corrupt``,
    ``too_large``, ``unsupported``; ``reason`` is the cause without the file's name, worded to
    follow ``"<name>: "``.
    """

    def __init__(self, message: str, kind: str, reason: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.reason = reason


@dataclass(frozen=True)
class DecodedImage:
    """A decoded image and the conversions the policy applied to it."""

    pixels: torch.Tensor  # (3, H, W) uint8, contiguous
    format: str  # Pillow's name of the file format: "PNG", "JPEG", ...
    notes: tuple[str, ...] = ()  # e.g. "transparency ignored (composited on white)"

    @property
    def size(self) -> tuple[int, int]:
        """(H, W)."""
        return int(self.pixels.shape[1]), int(self.pixels.shape[2])

    def hwc(self) -> np.ndarray:
        """The pixels as an (H, W, 3) uint8 array."""
        return np.ascontiguousarray(self.pixels.permute(1, 2, 0).numpy())


# --------------------------------------------------------------------------------------------
# Files and PNG structure


def read_image_file(path: str | os.PathLike, what: str = "image") -> bytes:
    """The contents of ``path``; missing, unreadable or empty files raise :class:`ImageDecodeError`."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageDecodeError(f"{what} file {path} does not exist", "missing",
                               "cannot be read (no such file)") from None
    except IsADirectoryError:
        raise ImageDecodeError(f"{what} file {path} is a directory, expected an image file",
                               "unreadable", "cannot be read (it is a directory)") from None
    except OSError as exc:
        why = exc.strerror or str(exc)
        raise ImageDecodeError(f"cannot read {what} file {path}: {why}", "unreadable",
                               f"cannot be read ({why})") from None
    if not data:
        raise _empty(path, what)
    return data


class PngInfo(NamedTuple):
    width: int
    height: int
    bit_depth: int
    color_type: int  # 0 gray, 2 RGB, 3 palette, 4 gray+alpha, 6 RGBA
    transparency: bool = False  # a tRNS chunk (palette alpha or a colour key); set by check_png


def png_info(data: bytes) -> PngInfo | None:
    """The IHDR fields of a PNG, or None when ``data`` is not a PNG (or its header is cut)."""
    if len(data) < 29 or not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    width, height, bit_depth, color_type = struct.unpack(">IIBB", data[16:26])
    return PngInfo(width, height, bit_depth, color_type)


def pixel_limit() -> int:
    """The default ceiling on width x height: Pillow's own hard limit (decompression bombs)."""
    return 2 * (Image.MAX_IMAGE_PIXELS or 89_478_485)


def check_png(data: bytes, name: str | os.PathLike, what: str = "image",
              max_pixels: int | None = None) -> PngInfo:
    """Validate a PNG's size, chunk structure and CRCs (the module docstring says why)."""
    info = png_info(data)
    if info is None:
        raise _broken(name, what, data, "PNG header (IHDR) missing or cut short")
    if info.width == 0 or info.height == 0:
        raise _broken(name, what, data, f"image size {info.width}x{info.height}")
    _check_pixels(info.width, info.height, max_pixels, name, what)
    view = memoryview(data)
    pos, size = 8, len(data)
    seen_idat = seen_trns = False
    while True:
        if pos + 12 > size:
            raise _broken(name, what, data, "no IEND chunk: the file is cut short")
        length = int.from_bytes(view[pos:pos + 4], "big")
        tag = bytes(view[pos + 4:pos + 8])
        end = pos + 12 + length
        if end > size:
            raise _broken(name, what, data, f"{tag.decode('latin-1')!r} chunk at byte {pos} is cut short")
        if zlib.crc32(view[pos + 4:end - 4]) != int.from_bytes(view[end - 4:end], "big"):
            raise _broken(name, what, data, f"CRC mismatch in {tag.decode('latin-1')!r} chunk at byte {pos}")
        if tag == b"IDAT":
            seen_idat = True
        elif tag == b"tRNS":
            seen_trns = True
        elif tag == b"IEND":
            break
        pos = end
    if not seen_idat:
        raise _broken(name, what, data, "no IDAT (pixel data) chunk")
    return info._replace(transparency=seen_trns)


def torchvision_reads_png() -> bool:
    """Whether PNGs go to torchvision's libpng decoder (else Pillow; see ``DIGA_PNG_DECODER``)."""
    return HAS_TORCHVISION_IO and PNG_DECODER != "pillow"


# --------------------------------------------------------------------------------------------
# The decoder


def decode_image(data: bytes, name: str | os.PathLike = "<bytes>", *, exif: bool = True,
                 max_pixels: int | None = None, what: str = "image") -> DecodedImage:
    """Decode image bytes to RGB under the module's policy; ``name`` is used in error messages.

    ``exif``: apply the EXIF orientation. ``max_pixels``: refuse larger images before decoding
    them (default :func:`pixel_limit`).
    """
    if not data:
        raise _empty(name, what)
    png = check_png(data, name, what, max_pixels) if data.startswith(PNG_SIGNATURE) else None
    im = open_image(data, name, what, max_pixels)
    try:
        notes = _notes(im, png)
        if HAS_TORCHVISION_IO and (im.format in ("JPEG", "MPO") or (
                png is not None and torchvision_reads_png() and not png.transparency)):
            pixels = _decode_torchvision(data, name, what, png, exif)
        else:
            pixels = _decode_pillow(im, data, name, what, exif)
        fmt = im.format or "unknown"
    finally:
        im.close()
    if pixels.shape[0] == 4:
        pixels = composite_on_white(pixels)
    return DecodedImage(pixels.contiguous(), fmt, tuple(notes))


def decode_image_file(path: str | os.PathLike, *, exif: bool = True,
                      max_pixels: int | None = None) -> DecodedImage:
    """:func:`read_image_file` then :func:`decode_image`."""
    return decode_image(read_image_file(path), path, exif=exif, max_pixels=max_pixels)


def image_file_size(path: str | os.PathLike, *, exif: bool = True) -> tuple[int, int]:
    """(H, W) of the image file at ``path`` as :func:`decode_image_file` would return it, from its
    header alone: sides swapped when ``exif`` and its EXIF orientation turns it by 90 degrees."""
    with Image.open(path) as im:
        h, w = im.height, im.width
        if exif and im.getexif().get(0x0112) in (5, 6, 7, 8):  # transposed or turned by 90/270
            h, w = w, h
    return h, w


def decode_pil(im: Image.Image) -> DecodedImage:
    """An in-memory PIL image converted under the same policy (no EXIF step: its pixels are used
    as given)."""
    pixels = _pil_pixels(im, getattr(im, "filename", "") or "<PIL image>")
    if pixels.shape[0] == 4:
        pixels = composite_on_white(pixels)
    return DecodedImage(pixels.contiguous(), im.format or "PIL", tuple(_notes(im, None)))


def composite_on_white(rgba: torch.Tensor) -> torch.Tensor:
    """(4, H, W) uint8 RGBA -> (3, H, W) uint8 RGB over a white background (the alpha policy)."""
    rgb, alpha = rgba[:3], rgba[3:]
    if bool((alpha == 255).all()):
        return rgb
    a = alpha.to(torch.int32)
    # (x + 127) // 255 rounds x / 255 to nearest; no tie is possible since 255 is odd.
    return ((rgb.to(torch.int32) * a + 255 * (255 - a) + 127) // 255).to(torch.uint8)


def open_image(data: bytes, name: str | os.PathLike, what: str = "image",
               max_pixels: int | None = None) -> Image.Image:
    """Pillow's lazily decoded image of ``data`` (header read, size checked, pixels not decoded)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data), formats=list(FORMATS))
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(f"cannot read {what} file {name}: {exc}", "too_large",
                               "the image is too large to decode safely") from None
    except UnidentifiedImageError:
        if _sniff(data) is not None:
            raise _broken(name, what, data, "the decoder cannot identify it") from None
        raise _not_image(name, what, data) from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as exc:
        raise _broken(name, what, data, str(exc) or type(exc).__name__) from None
    w, h = im.size
    if w == 0 or h == 0:
        im.close()
        raise _broken(name, what, data, f"image size {w}x{h}")
    try:
        _check_pixels(w, h, max_pixels, name, what)
    except ImageDecodeError:
        im.close()
        raise
    return im


def load_image(im: Image.Image, data: bytes, name: str | os.PathLike, what: str = "image") -> None:
    """Decode the pixels of an :func:`open_image` result; codec failures -> :class:`ImageDecodeError`."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Truncated File Read": refused below anyway
            im.load()
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(f"cannot read {what} file {name}: {exc}", "too_large",
                               "the image is too large to decode safely") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, struct.error) as exc:
        raise _broken(name, what, data, str(exc) or type(exc).__name__) from None


def decode_png_unchanged(data: bytes, name: str | os.PathLike, what: str = "image") -> np.ndarray:
    """A checked PNG's samples as stored, (C, H, W) uint8 or uint16 (torchvision; for label ids).

    Only for bit depths of 8 and 16: torchvision returns garbage for 1, 2 and 4-bit PNGs here."""
    try:
        with _quiet_torchvision():
            return decode_png(_as_tensor(data), ImageReadMode.UNCHANGED).numpy()
    except RuntimeError as exc:
        raise _broken(name, what, data, _clean_codec_error(exc)) from None


# --------------------------------------------------------------------------------------------
# Backends


def _decode_torchvision(data: bytes, name, what: str, png: PngInfo | None, exif: bool) -> torch.Tensor:
    alpha = png is not None and png.color_type in (4, 6)
    mode = ImageReadMode.RGB_ALPHA if alpha else ImageReadMode.RGB
    try:
        with _quiet_torchvision():
            buf = _as_tensor(data)
            if png is not None:
                img = decode_png(buf, mode, apply_exif_orientation=exif)
            else:
                img = decode_jpeg(buf, mode, apply_exif_orientation=exif)
    except RuntimeError as exc:
        raise _broken(name, what, data, _clean_codec_error(exc)) from None
    if img.dtype != torch.uint8:  # 16-bit PNG
        img = (img.to(torch.int32) >> 8).to(torch.uint8)
    return img


def _decode_pillow(im: Image.Image, data: bytes, name, what: str, exif: bool) -> torch.Tensor:
    load_image(im, data, name, what)
    if exif:
        im = ImageOps.exif_transpose(im)
    return _pil_pixels(im, name)


def _pil_pixels(im: Image.Image, name) -> torch.Tensor:
    """(3 or 4, H, W) uint8 from a loaded PIL image; 4 channels when it carries transparency."""
    mode = im.mode
    if mode in _DEEP_GRAY_MODES:
        raw = np.asarray(im)
        gray = _deep_to_uint8(raw)
        planes = [gray] * 3
        key = im.info.get("transparency")
        if isinstance(key, int):  # a 16-bit gray colour key
            planes.append(np.where(raw == key, 0, 255).astype(np.uint8))
        arr = np.stack(planes)
    else:
        target = "RGBA" if mode in _ALPHA_MODES or "transparency" in im.info else "RGB"
        try:
            arr = np.asarray(im.convert(target)).transpose(2, 0, 1)
        except (ValueError, OSError) as exc:
            raise ImageDecodeError(
                f"cannot convert image {name} from colour mode {mode!r} to RGB: {exc}", "unsupported",
                f"colour mode {mode} cannot be converted to RGB ({exc})") from None
    return torch.from_numpy(np.ascontiguousarray(arr))


def _deep_to_uint8(arr: np.ndarray) -> np.ndarray:
    """High-bit-depth samples (16-bit ints, 32-bit ints, floats) -> uint8."""
    if arr.dtype == np.uint8:
        return arr
    if np.issubdtype(arr.dtype, np.floating):
        arr = np.nan_to_num(arr.astype(np.float64))
        scale = 255.0 if arr.size and arr.min() >= 0.0 and arr.max() <= 1.0 else 1.0
        return np.clip(arr * scale + 0.5, 0, 255).astype(np.uint8)
    return (np.clip(arr.astype(np.int64), 0, 65535) >> 8).astype(np.uint8)


def _notes(im: Image.Image, png: PngInfo | None) -> list[str]:
    """The conversions the policy applies to ``im`` (read from its header, before decoding)."""
    mode, notes = im.mode, []
    frames = int(getattr(im, "n_frames", 1) or 1)
    if frames > 1:
        notes.append(f"{frames} frames, only the first one is used")
    if (png is not None and png.bit_depth == 16) or mode.startswith("I;16"):
        notes.append("16-bit samples, reduced to 8 bits")
    elif mode == "I":
        notes.append("32-bit samples, reduced to 8 bits")
    elif mode == "F":
        notes.append("floating-point samples, reduced to 8 bits")
    if mode in ("1", "L", "LA", "La") or mode in _DEEP_GRAY_MODES:
        notes.append("grayscale image, converted to RGB (the model expects colour photos)")
    elif mode == "CMYK":
        notes.append("CMYK image, converted to RGB (colours may be slightly off)")
    elif mode not in ("RGB", "RGBA", "RGBa", "RGBX", "P", "PA"):
        notes.append(f"{mode} image, converted to RGB")
    if mode in _ALPHA_MODES or "transparency" in im.info:
        notes.append("transparency ignored (composited on white)")
    return notes


# --------------------------------------------------------------------------------------------
# Small helpers


@contextmanager
def _quiet_torchvision() -> Iterator[None]:
    """Silence torchvision's per-call deprecation warning of its image codecs (0.29+)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torchvision\.")
        warnings.filterwarnings("ignore", message=r".*image decoding and encoding capabilities")
        yield


def _as_tensor(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def _clean_codec_error(exc: Exception) -> str:
    """torchvision's C++ errors start with 'func, /path/to/file.cpp:79, '; keep the reason."""
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return re.sub(r"^.*?\.cpp:\d+,\s*", "", msg)


def _sniff(data: bytes) -> str | None:
    """The image format announced by the first bytes (tells corrupt images from non-images)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return next((kind for magic, kind in _MAGIC if data.startswith(magic)), None)


def _check_pixels(w: int, h: int, max_pixels: int | None, name, what: str) -> None:
    limit = max_pixels or pixel_limit()
    if w * h > limit:
        reason = (f"the image is too large ({w}x{h} = {w * h / 1e6:.1f} MP; the limit is "
                  f"{limit / 1e6:.1f} MP)")
        raise ImageDecodeError(f"cannot read {what} file {name}: {reason}", "too_large", reason)


def _empty(name, what: str) -> ImageDecodeError:
    return ImageDecodeError(f"{what} file {name} is empty (0 bytes); expected an image file", "empty",
                            "the file is empty (0 bytes)")


def _not_image(name, what: str, data: bytes) -> ImageDecodeError:
    reason = f"not an image (the formats read are {FORMAT_NAMES})"
    return ImageDecodeError(f"cannot read {what} file {name}: {reason}; the file starts with "
                            f"{data[:8]!r}, {len(data)} bytes", "not_image", reason)


def _broken(name, what: str, data: bytes, detail: str) -> ImageDecodeError:
    fmt = _sniff(data)
    if fmt is None:
        return _not_image(name, what, data)
    return ImageDecodeError(
        f"cannot read {what} file {name}: corrupt or truncated {fmt} ({detail}; {len(data)} bytes)",
        "corrupt", f"the image file is corrupt or truncated ({fmt}: {detail})")
