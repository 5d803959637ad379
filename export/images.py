"""Images in and out of the deployment layer: reading, check/calibration images, safe output names."""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from diga.data.decode import ImageDecodeError, composite_on_white, decode_image_file, decode_pil

from .errors import PredictorError

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
#: What ``diga predict`` writes for an input ``STEM.*``: trainIds, colours, overlay.
OUTPUT_SUFFIXES: tuple[str, ...] = ("_labels.png", "_color.png", "_overlay.jpg")


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """An image file as an (H, W, 3) uint8 RGB array, decoded by the project's one decoder
    (:mod:`diga.data.decode`: EXIF orientation applied, transparency composited on white).
    Every failure is a :class:`PredictorError` naming the file."""
    try:
        return decode_image_file(path, exif=True).hwc()
    except ImageDecodeError as e:
        raise PredictorError(str(e)) from None


def as_rgb_array(image, name: str = "image") -> np.ndarray:
    """A path, PIL image or array (H, W), (H, W, 3) or (H, W, 4) -> (H, W, 3) uint8 RGB.

    PIL images and RGBA arrays follow the decoder's policy (alpha composited on white)."""
    if isinstance(image, (str, os.PathLike)):
        return read_rgb(image)
    if isinstance(image, Image.Image):
        try:
            return decode_pil(image).hwc()
        except ImageDecodeError as e:
            raise PredictorError(f"{name}: {e.reason}") from None
    if hasattr(image, "numpy") and not isinstance(image, np.ndarray):  # a torch tensor
        image = image.detach().cpu().numpy()
    if not isinstance(image, np.ndarray):
        raise PredictorError(f"{name}: expected a path, a PIL image or an (H, W, 3) uint8 array, "
                             f"got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise PredictorError(f"{name}: expected a uint8 array (0-255), got {image.dtype}; "
                             "convert with (x * 255).round().astype(np.uint8) for floats in [0, 1]")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4) or min(image.shape[:2]) < 1:
        raise PredictorError(f"{name}: expected an (H, W, 3) RGB array, got shape {image.shape}")
    if image.shape[2] == 4:
        return composite_on_white(torch.from_numpy(image).permute(2, 0, 1)).permute(1, 2, 0).numpy().copy()
    return np.ascontiguousarray(image)


def list_images(paths: Iterable[str | os.PathLike], what: str = "images", out_dir: str | os.PathLike | None = None,
                note: Callable[[str], None] | None = None) -> list[Path]:
    """Files given directly, plus the image files anywhere under given folders (sorted; hidden files
    skipped, broken symbolic links named to ``note`` by :func:`diga.data.common.scan_files`).

    Files found in folders that ``diga predict`` wrote (:func:`is_prediction_output`, with ``out_dir``
    its output folder) are skipped, and ``note`` is told how many: predicting a folder twice must not
    segment its own outputs."""
    from diga.data.common import scan_files

    files: list[Path] = []
    skipped: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            found = scan_files(p, IMAGE_SUFFIXES, recursive=True, warn=note)
            outputs = {f for f in found if is_prediction_output(f, out_dir)}
            skipped += sorted(outputs)
            found = [f for f in found if f not in outputs]
            if not found:
                extra = f" besides {len(outputs)} output(s) of diga predict" if outputs else ""
                raise PredictorError(f"{what}: folder {p} holds no image files ({', '.join(IMAGE_SUFFIXES)}){extra}")
            files.extend(found)
        elif p.exists():
            files.append(p)
        else:
            raise PredictorError(f"{what}: {p} does not exist")
    if not files:
        raise PredictorError(f"no {what} given")
    if skipped and note is not None:
        note(f"skipped {len(skipped)} file(s) written by diga predict ({', '.join('*' + s for s in OUTPUT_SUFFIXES)}), "
             f"e.g. {skipped[0]}")
    # A folder and its sub-folder given together must not segment the same file twice.
    unique: dict[Path, Path] = {}
    for f in files:
        unique.setdefault(f.resolve(), f)
    return list(unique.values())


def is_prediction_output(path: Path, out_dir: str | os.PathLike | None = None) -> bool:
    """Whether ``path`` is a file ``diga predict`` wrote: named ``STEM`` + one of :data:`OUTPUT_SUFFIXES`
    and either inside ``out_dir`` or beside the other two outputs of the same ``STEM``."""
    name = path.name
    suffix = next((s for s in OUTPUT_SUFFIXES if name.endswith(s)), None)
    if suffix is None:
        return False
    if out_dir is not None and Path(out_dir).resolve() in path.resolve().parents:
        return True
    stem = name[: -len(suffix)]
    return all((path.parent / f"{stem}{s}").is_file() for s in OUTPUT_SUFFIXES)


def check_images(folder: str | os.PathLike | None, n: int, size: tuple[int, int],
                 seed: int = 0) -> tuple[list[np.ndarray], str]:
    """Images for parity checks, calibration-free benchmarks: ``n`` from ``folder`` if given, else
    synthetic target-style street scenes (``diga.data.synth``).

    Returns the images and a description of where they came from.
    """
    if folder is not None:
        files = list_images([folder], "check images")[:n]
        return [read_rgb(f) for f in files], f"{len(files)} image(s) from {folder}"
    from diga.data.synth import TARGET_STYLE, render_scene

    images = [render_scene(np.random.default_rng(seed + i), size, TARGET_STYLE)[0] for i in range(n)]
    return images, f"{n} synthetic target-style scene(s) (diga.data.synth, {size[0]}x{size[1]})"


# --------------------------------------------------------------------------------------------
# Output names that stay inside the output folder

_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\:*?\"<>|]")
_MAX_NAME_BYTES = 180  # leaves room for "_overlay.jpg" etc. within the usual 255-byte limit


def safe_stem(name: str, fallback: str = "image") -> str:
    """A file-name stem from an input name: no separators, no '..', no control characters.

    Non-ASCII letters and spaces are kept (NFC-normalised); the result is never empty (``fallback``
    stands in for a name with nothing usable) and never starts with a dot, so it can neither escape
    the output folder nor become a hidden file. The one rule for ``diga predict`` and the demo.
    """
    stem = unicodedata.normalize("NFC", Path(str(name).replace("\\", "/")).stem)
    stem = _UNSAFE.sub("_", stem).strip()
    stem = stem.lstrip(".") or fallback
    stem = stem.replace("..", "_")
    encoded = stem.encode("utf-8")
    if len(encoded) > _MAX_NAME_BYTES:
        stem = encoded[:_MAX_NAME_BYTES].decode("utf-8", errors="ignore").rstrip() or fallback
    return stem


class OutputNamer:
    """Unique, safe stems for a sequence of inputs: duplicates get ``_2``, ``_3``, ..."""

    def __init__(self, out_dir: str | os.PathLike) -> None:
        self.out_dir = Path(out_dir).resolve()
        self._used: set[str] = set()

    def stem(self, source: str | os.PathLike) -> str:
        base = safe_stem(Path(source).name)
        stem, k = base, 1
        while stem.casefold() in self._used:  # casefold: also safe on case-insensitive disks
            k += 1
            stem = f"{base}_{k}"
        self._used.add(stem.casefold())
        return stem

    def path(self, stem: str, suffix: str) -> Path:
        path = self.out_dir / f"{stem}{suffix}"
        if path.resolve().parent != self.out_dir:  # pragma: no cover - safe_stem prevents it
            raise PredictorError(f"output name {stem!r} would leave the output folder {self.out_dir}")
        return path

