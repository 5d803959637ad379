"""Inference at any resolution: the ``whole``, ``resize`` and ``slide`` modes, in one place.

* ``whole``: the image as it is (the network sees its own size, or what the caller's ``fit``
  makes of it, e.g. a fixed export size).
* ``resize``: the image rescaled, aspect kept, to the training scale recorded in the checkpoint
  (``train_size``: the size training images had before the random rescale and crop); the
  logits are resized back to the image.
* ``slide``: overlapping windows of the training crop (``crop``) with a stride of 2/3 of the
  window, logits averaged where windows overlap -- MMSegmentation's ``slide_inference``: the
  last window of a row/column is shifted back inside the image, a count map divides the summed
  logits, and a window larger than the image is padded (zeros after normalisation, the mean
  colour) so every backend call has the window's shape.
* ``auto``: :func:`auto_mode` picks one from the image size vs the training scale.

:func:`plan_inference` decides the geometry of a mode for one image size and
:func:`infer_logits` runs a plan around any ``run(x) -> logits`` callable: the evaluation wraps
the model (with its multi-scale fusion), the Predictor wraps a deployment backend, so every
backend and ``diga evaluate`` compute the same thing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from .errors import ConfigError

MODES = ("whole", "resize", "slide")
AUTO = "auto"
MODE_CHOICES = (AUTO, *MODES)
#: ``auto`` runs an image whole when its pixel count over the training scale's is in this range and
#: resizes it otherwise. Measured (docs/BENCHMARKS.md, "Inference modes at any resolution"): larger
#: images lose 2.4 mIoU whole at 1.44x the pixels (resize keeps it), under 1 at 1.21x; smaller ones
#: only below half the pixels; slide was never the best of the three there.
WHOLE_RANGE = (0.5, 1.25)
AUTO_OUTSIDE = "resize"
#: Slide stride as a fraction of the window (MMSegmentation's Cityscapes configs: 512x1024 / 341x683).
SLIDE_STRIDE = 2 / 3
DEFAULT_TRAIN_SIZE = (512, 1024)

Size = tuple[int, int]
Run = Callable[[torch.Tensor], torch.Tensor]


def _size(value: Any) -> Size | None:
    if value is None:
        return None
    h, w = (int(v) for v in value)
    return (h, w)


def _fmt(size: Sequence[int]) -> str:
    return f"{size[0]}x{size[1]}"


@dataclass(frozen=True)
class TrainingScale:
    """The scale a model was trained at: ``size`` (images before the random rescale) and ``crop``."""

    size: Size
    crop: Size

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> TrainingScale:
        """From checkpoint/export metadata: ``train_size`` and ``crop``; older checkpoints fall back
        to ``input_size`` (the size they were evaluated at) for both."""
        size = _size(meta.get("train_size")) or _size(meta.get("input_size")) or DEFAULT_TRAIN_SIZE
        return cls(size=size, crop=_size(meta.get("crop")) or size)


def check_mode(mode: str, option: str = "mode") -> str:
    """``mode`` if it is one of :data:`MODE_CHOICES`, else a :class:`ConfigError` (a ValueError)
    naming ``option`` and the choices."""
    if mode not in MODE_CHOICES:
        raise ConfigError(f"{option} must be one of {', '.join(MODE_CHOICES)}, got {mode!r}")
    return mode


def auto_mode(image_size: Sequence[int], scale: TrainingScale) -> str:
    """``whole`` when the image's pixel count over the training scale's is within :data:`WHOLE_RANGE`,
    else :data:`AUTO_OUTSIDE`."""
    ratio = (image_size[0] * image_size[1]) / (scale.size[0] * scale.size[1])
    low, high = WHOLE_RANGE
    return "whole" if low <= ratio <= high else AUTO_OUTSIDE


def scaled_size(size: Sequence[int], scale: float) -> Size:
    """``size`` (H, W) times ``scale``, each side rounded to the nearest pixel (halves up), at least 1.

    Exact products (128x256 at 0.5 -> 64x128) are kept as they are; 77x131 at 0.5 -> 39x66.
    """
    h, w = size
    return max(1, math.floor(h * scale + 0.5)), max(1, math.floor(w * scale + 0.5))


def resize_size(image_size: Sequence[int], target: Sequence[int]) -> Size:
    """``image_size`` rescaled, aspect kept, as large as fits in ``target`` with the long sides and the
    short sides compared (MMSegmentation's ``keep_ratio`` rescale); at least 1 pixel per side."""
    h, w = image_size
    return scaled_size(image_size, min(max(target) / max(h, w), min(target) / min(h, w)))


def slide_stride(window: Sequence[int]) -> Size:
    """:data:`SLIDE_STRIDE` of the window, rounded up, at least 1."""
    return max(1, math.ceil(window[0] * SLIDE_STRIDE)), max(1, math.ceil(window[1] * SLIDE_STRIDE))


def slide_windows(size: Sequence[int], window: Sequence[int], stride: Sequence[int]) -> list[tuple[int, int, int, int]]:
    """(y1, y2, x1, x2) of each window over an image of ``size``, as MMSegmentation's slide inference:
    a grid at ``stride``, the last row/column shifted back to end at the image border; a window larger
    than the image is clipped to it (and padded by :func:`slide_logits`)."""
    (h, w), (wh, ww), (sh, sw) = size, window, stride
    rows = max(h - wh + sh - 1, 0) // sh + 1
    cols = max(w - ww + sw - 1, 0) // sw + 1
    boxes = []
    for r in range(rows):
        for c in range(cols):
            y2, x2 = min(r * sh + wh, h), min(c * sw + ww, w)
            boxes.append((max(y2 - wh, 0), y2, max(x2 - ww, 0), x2))
    return boxes


@dataclass(frozen=True)
class InferencePlan:
    """How one image size is run: ``input_size`` is what the network sees (whole/resize); slide runs
    ``window``-sized crops every ``stride`` pixels over the image itself."""

    mode: str
    image_size: Size
    input_size: Size
    scale: TrainingScale
    window: Size | None = None
    stride: Size | None = None
    automatic: bool = False  # chosen by auto_mode

    def describe(self) -> str:
        """E.g. ``slide (image 1024x2048 vs training crop 512x896: windows 512x896, stride 342x598)``."""
        image = _fmt(self.image_size)
        if self.mode == "slide":
            text = (f"slide (image {image} vs training crop {_fmt(self.scale.crop)}: windows {_fmt(self.window)}, "
                    f"stride {_fmt(self.stride)})")
        else:
            text = f"{self.mode} (image {image} vs training scale {_fmt(self.scale.size)}"
            text += f": network input {_fmt(self.input_size)})" if self.input_size != self.image_size else ")"
        return text + (", chosen from the image size" if self.automatic else "")


def plan_inference(mode: str, image_size: Sequence[int], scale: TrainingScale,
                   fit: Callable[[Size], Size] | None = None) -> InferencePlan:
    """The plan of ``mode`` (or ``auto``) for an image of ``image_size``. ``fit`` maps a wanted
    network size to one the model takes (stride rounding, a fixed export size); default: as is."""
    check_mode(mode)
    fit = fit or (lambda s: s)
    image_size = _size(image_size)
    automatic = mode == AUTO
    if automatic:
        mode = auto_mode(image_size, scale)
    if mode == "slide":
        window = tuple(fit(scale.crop))
        return InferencePlan("slide", image_size, image_size, scale, window, slide_stride(window), automatic)
    wanted = resize_size(image_size, scale.size) if mode == "resize" else image_size
    return InferencePlan(mode, image_size, tuple(fit(wanted)), scale, automatic=automatic)


def resize_bilinear(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """(N, C, H, W) float -> ``size``: bilinear, ``align_corners=False``, antialiased when shrinking
    (the Predictor's pre-processing rule, so resizing before or after normalising agrees)."""
    size = (int(size[0]), int(size[1]))
    if tuple(x.shape[-2:]) == size:
        return x
    shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)


def _scores(out: torch.Tensor, num_classes: int | None) -> torch.Tensor:
    """Float logits; a labels-output model's (N, h, w) labels become one-hot votes."""
    if out.dim() == 4:
        return out.float()
    if num_classes is None:
        raise ValueError("a model that outputs labels needs num_classes to average overlapping windows")
    return F.one_hot(out.long().clamp(0, num_classes - 1), num_classes).permute(0, 3, 1, 2).float()


def slide_logits(run: Run, x: torch.Tensor, window: Sequence[int], stride: Sequence[int] | None = None,
                 batch: int = 4, num_classes: int | None = None) -> torch.Tensor:
    """(N, C, H, W) logits of ``run`` over overlapping windows of the normalised batch ``x``, averaged
    where windows overlap. ``batch``: images per ``run`` call (windows of all ``N`` images)."""
    n, _, h, w = x.shape
    wh, ww = int(window[0]), int(window[1])
    boxes = slide_windows((h, w), (wh, ww), stride or slide_stride((wh, ww)))
    total: torch.Tensor | None = None
    count = x.new_zeros((1, 1, h, w), dtype=torch.float32)
    per_call = max(1, batch // n)
    for start in range(0, len(boxes), per_call):
        group = boxes[start:start + per_call]
        crops = [F.pad(x[:, :, y1:y2, x1:x2], (0, ww - (x2 - x1), 0, wh - (y2 - y1))) for y1, y2, x1, x2 in group]
        out = _scores(run(torch.cat(crops)), num_classes)
        if total is None:
            total = out.new_zeros((n, out.shape[1], h, w))
        for k, (y1, y2, x1, x2) in enumerate(group):
            total[:, :, y1:y2, x1:x2] += out[k * n:(k + 1) * n, :, : y2 - y1, : x2 - x1]
            count[:, :, y1:y2, x1:x2] += 1
    return total / count.to(total.device)


def infer_logits(run: Run, x: torch.Tensor, plan: InferencePlan, out_size: Sequence[int] | None = None,
                 batch: int = 4, num_classes: int | None = None) -> torch.Tensor:
    """Run ``plan`` on the normalised (N, 3, H, W) batch ``x`` with ``run(x) -> (N, C, h, w)`` logits at
    its input size; float32 logits at ``out_size`` (default: ``x``'s size).

    ``x`` may already be at ``plan.input_size`` (whole/resize; the Predictor resizes while preparing).
    A ``run`` that returns labels (N, h, w) gets them back resized by nearest neighbour (whole/resize)
    or voted over the windows as one-hot scores (slide, which needs ``num_classes``)."""
    out_size = tuple(int(v) for v in (out_size or x.shape[-2:]))
    if plan.mode == "slide":
        logits = slide_logits(run, x, plan.window, plan.stride, batch, num_classes)
    else:
        logits = run(resize_bilinear(x, plan.input_size))
        if logits.dim() == 3:
            if tuple(logits.shape[-2:]) != out_size:
                logits = F.interpolate(logits[:, None].float(), size=out_size, mode="nearest")[:, 0].to(logits.dtype)
            return logits
        logits = logits.float()
    if tuple(logits.shape[-2:]) != out_size:
        logits = F.interpolate(logits, size=out_size, mode="bilinear", align_corners=False)
    return logits
