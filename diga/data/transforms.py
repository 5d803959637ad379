"""Paired geometric transforms of (image, label) and the ImageNet normalisation.

Transforms take and return ``(image, label)``: a (3, H, W) uint8 tensor and an (H, W) int64
tensor of trainIds. They use ``torchvision.transforms.v2`` on ``tv_tensors.Image`` /
``tv_tensors.Mask`` (the mask is resized with nearest neighbour and padded with 255 = ignore).
Photometric augmentation and normalisation happen later, batched on the GPU (:func:`normalize`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as F

from diga.classes import IGNORE_INDEX

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
# The Caffe ImageNet pixel means (R, G, B on the 0-255 scale) and the divisor of the authors' loaders,
# which feed the DeepLab-V2 network BGR ``(255 x - mean) / 128``.
PIXEL_MEAN: tuple[float, float, float] = (122.67891434, 116.66876762, 104.00698793)
PIXEL_SCALE = 128.0
# Each input normalisation as (mean, std) of RGB images in [0, 1]: what checkpoints record and every
# consumer (training, evaluation, the predictor, exports, the demo) applies. "caffe" is the authors'
# ``(255 x - mean) / 128`` in RGB order: the DeepLab init file's first convolution, which reads BGR,
# is loaded with its input channels reversed (diga/models/weights.py), the same network function.
INPUT_NORMS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
    "caffe": (tuple(m / 255.0 for m in PIXEL_MEAN), (PIXEL_SCALE / 255.0,) * 3),
}


def _pixel_mean(like: torch.Tensor) -> torch.Tensor:
    """PIXEL_MEAN (R, G, B) as (1,3,1,1) on ``like``'s device, built from fills (no host->device copy)."""
    return torch.cat([like.new_full((1, 1, 1, 1), m) for m in PIXEL_MEAN], dim=1)


def to_caffe_space(x01: torch.Tensor) -> torch.Tensor:
    """[0, 1] RGB (B,3,H,W) -> ``(255 x - PIXEL_MEAN) / 128`` in RGB order (about [-1, 1]): the authors'
    pixel space, which their network input (BGR), the blended views and the translator work in."""
    return (x01 * 255.0 - _pixel_mean(x01)) / PIXEL_SCALE


def from_caffe_space(y: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`to_caffe_space`, not clamped."""
    return (y * PIXEL_SCALE + _pixel_mean(y)) / 255.0


def input_norm_stats(name: str) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """(mean, std) of the input normalisation ``name`` (imagenet or caffe)."""
    if name not in INPUT_NORMS:
        raise ValueError(f"input_norm must be one of {', '.join(INPUT_NORMS)} (got {name!r})")
    return INPUT_NORMS[name]


def normalize(x: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN,
              std: Sequence[float] = IMAGENET_STD) -> torch.Tensor:
    """(B, 3, H, W) or (3, H, W) float images in [0, 1] -> ImageNet-normalised (new tensor)."""
    if not x.is_floating_point():
        raise TypeError(f"normalize expects a float tensor in [0, 1], got {x.dtype}; "
                        "convert uint8 images with x.float() / 255 first")
    if x.dim() not in (3, 4) or x.shape[-3] != 3:
        raise ValueError(f"normalize expects (B, 3, H, W) or (3, H, W), got {tuple(x.shape)}")
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(3, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(3, 1, 1)
    return (x - m) / s


def _pair_size(value, what: str) -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, int):
        value = (value, value)
    value = tuple(int(v) for v in value)
    if len(value) != 2 or min(value) < 1:
        raise ValueError(f"{what} must be (height, width) of positive ints, got {value!r}")
    return value


def _wrap(image: torch.Tensor, label: torch.Tensor) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
    if image.dim() != 3 or label.dim() != 2 or image.shape[-2:] != label.shape:
        raise ValueError(f"expected image (3, H, W) and label (H, W) of the same size, got "
                         f"{tuple(image.shape)} and {tuple(label.shape)}")
    # trainIds are 0..255: transform the mask as uint8 (8x less memory than int64); maps that pack
    # more than one label per pixel (pseudo-label + ground truth) keep a wider integer type.
    wide = label.dtype != torch.uint8 and bool(label.max() > 255) if label.numel() else False
    return tv_tensors.Image(image), tv_tensors.Mask(label.to(torch.int32 if wide else torch.uint8))


def _unwrap(image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return image.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor).to(torch.int64)


# How a training image is brought to the base size: resized to it exactly (aspect ratio changed), or
# by one factor, the smallest that makes it cover the base size (aspect ratio kept).
BASE_RESIZES = ("cover", "stretch")
# What the crop does where the randomly scaled image is smaller than it: pad (image 0, label 255 =
# ignore), stretch the whole image to the crop (the authors' code), or rescale the image, aspect kept,
# just enough for the crop to fit.
CROP_FILLS = ("stretch", "pad", "rescale")
# How the random rescale draws its factor: one for both sides (aspect ratio kept), or one per side
# (the authors' code: height and width each by U[0.7, 1], so the aspect ratio changes too).
SCALE_MODES = ("iso", "axis")
# The check a redrawn crop must pass (``crop_retry``): at least this many classes (ignore excluded)
# each covering more than this share of the crop (the authors' GTA5 and SYNTHIA loaders).
RETRY_MIN_CLASSES = 2
RETRY_MIN_SHARE = 0.02


def crop_passes(label: torch.Tensor) -> bool:
    """Whether at least RETRY_MIN_CLASSES labels other than ignore each cover more than
    RETRY_MIN_SHARE of ``label``'s pixels (ignore pixels count in the total)."""
    values, counts = torch.unique(label, return_counts=True)
    share = counts.double() / label.numel()
    return int(((share > RETRY_MIN_SHARE) & (values != IGNORE_INDEX)).sum()) >= RETRY_MIN_CLASSES


def _resize_pair(img: tv_tensors.Image, mask: tv_tensors.Mask,
                 size: list[int]) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
    """Image resized with antialiased bilinear filtering, label with nearest neighbour."""
    return (F.resize(img, size, antialias=True),
            F.resize(mask, size, interpolation=InterpolationMode.NEAREST))


def covering_size(size: tuple[int, int], base: tuple[int, int]) -> tuple[int, int]:
    """``size`` (height, width) scaled by the one factor that makes it just cover ``base``."""
    (h, w), (bh, bw) = size, base
    factor = max(bh / h, bw / w)
    return max(bh, math.ceil(h * factor - 1e-6)), max(bw, math.ceil(w * factor - 1e-6))


class TrainTransform:
    """Optional resize to ``base_size`` (exactly, ``base_resize="stretch"``, or keeping the aspect
    ratio, ``"cover"``), random rescale by a factor in ``scale`` (one for both sides,
    ``scale_mode="iso"``, or one per side, ``"axis"``), random crop of ``crop`` (where the
    image is smaller: ``crop_fill``, see CROP_FILLS), random horizontal flip. Sizes are (height,
    width). Randomness comes from ``torch``'s generator (seeded per DataLoader worker).

    ``crop_retry`` N > 0: the rescale, crop and flip are drawn up to N times, and the first draw whose
    label passes :func:`crop_passes` is kept (none passes: the last); 0: one draw, unchecked."""

    def __init__(self, crop: tuple[int, int] | int, scale: tuple[float, float] = (0.5, 1.5),
                 base_size: tuple[int, int] | None = None, hflip: bool = True,
                 base_resize: str = "stretch", crop_fill: str = "pad", scale_mode: str = "iso",
                 crop_retry: int = 0):
        self.crop = _pair_size(crop, "crop")
        self.base_size = _pair_size(base_size, "base_size")
        lo, hi = (float(s) for s in scale)
        if not 0 < lo <= hi:
            raise ValueError(f"scale must be (min, max) with 0 < min <= max, got {scale!r}")
        if base_resize not in BASE_RESIZES:
            raise ValueError(f"base_resize must be one of {', '.join(BASE_RESIZES)}, got {base_resize!r}")
        if crop_fill not in CROP_FILLS:
            raise ValueError(f"crop_fill must be one of {', '.join(CROP_FILLS)}, got {crop_fill!r}")
        if scale_mode not in SCALE_MODES:
            raise ValueError(f"scale_mode must be one of {', '.join(SCALE_MODES)}, got {scale_mode!r}")
        if isinstance(crop_retry, bool) or not isinstance(crop_retry, int) or crop_retry < 0:
            raise ValueError(f"crop_retry must be an integer >= 0, got {crop_retry!r}")
        self.crop_retry = crop_retry
        self.scale, self.scale_mode = (lo, hi), scale_mode
        self.hflip = hflip
        self.base_resize, self.crop_fill = base_resize, crop_fill
        self._crop = v2.RandomCrop(self.crop, pad_if_needed=True,
                                   fill={tv_tensors.Image: 0, tv_tensors.Mask: IGNORE_INDEX})

    def __call__(self, image: torch.Tensor,
                 label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        img, mask = _wrap(image, label)
        if self.base_size is not None:
            size = self.base_size
            if self.base_resize == "cover":
                size = covering_size(tuple(img.shape[-2:]), self.base_size)
            if tuple(img.shape[-2:]) != size:
                img, mask = _resize_pair(img, mask, list(size))
        for _ in range(max(self.crop_retry - 1, 0)):
            out = self._random_crop(img, mask)
            if crop_passes(out[1]):
                return _unwrap(*out)
        return _unwrap(*self._random_crop(img, mask))

    def _random_crop(self, img: tv_tensors.Image,
                     mask: tv_tensors.Mask) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        """One draw of the random rescale, crop and flip."""
        lo, hi = self.scale
        fy = lo + (hi - lo) * float(torch.rand(()))
        fx = lo + (hi - lo) * float(torch.rand(())) if self.scale_mode == "axis" else fy
        if (fy, fx) != (1.0, 1.0):
            h, w = img.shape[-2:]
            img, mask = _resize_pair(img, mask, [max(1, round(h * fy)), max(1, round(w * fx))])
        img, mask = self._fill(img, mask)
        img, mask = self._crop(img, mask)
        if self.hflip and float(torch.rand(())) < 0.5:
            img, mask = F.horizontal_flip(img), F.horizontal_flip(mask)
        return img, mask

    def _fill(self, img: tv_tensors.Image, mask: tv_tensors.Mask) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        """An image smaller than the crop, stretched or rescaled to fit it (``pad``: left to the crop)."""
        h, w = img.shape[-2:]
        if self.crop_fill == "pad" or (h >= self.crop[0] and w >= self.crop[1]):
            return img, mask
        size = self.crop if self.crop_fill == "stretch" else covering_size((h, w), self.crop)
        return _resize_pair(img, mask, list(size))

    def __repr__(self) -> str:
        return (f"TrainTransform(crop={self.crop}, scale={self.scale}, scale_mode={self.scale_mode!r}, "
                f"base_size={self.base_size}, "
                f"hflip={self.hflip}, base_resize={self.base_resize!r}, crop_fill={self.crop_fill!r}, "
                f"crop_retry={self.crop_retry})")


class EvalTransform:
    """Resize only the image to ``size`` (height, width); the label stays at full resolution so
    that predictions are upsampled and scored against the original annotation. ``None``: no-op."""

    def __init__(self, size: tuple[int, int] | None = None):
        self.size = _pair_size(size, "size")

    def __call__(self, image: torch.Tensor,
                 label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.size is not None and tuple(image.shape[-2:]) != self.size:
            image = F.resize(tv_tensors.Image(image), list(self.size), antialias=True)
            image = image.as_subclass(torch.Tensor)
        return image, label

    def __repr__(self) -> str:
        return f"EvalTransform(size={self.size})"
