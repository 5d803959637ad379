"""Batched photometric augmentation with per-sample random parameters (DiGA's ``aug``).

Written as plain batched tensor ops rather than kornia: kornia's pipeline measured ~12 ms per call
with 0.36-1.9 s spikes (random sub-batch shapes trigger new kernel selection) against ~1 ms for the
same ops hand-batched (a kornia 0.5-style pipeline timed on an H100-class GPU). Every op runs on the whole batch and each sample picks
its result with ``torch.where``, so shapes never depend on the random draws and nothing syncs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..data.transforms import from_caffe_space, to_caffe_space
from . import kornia_ops
from ._colour import hsv_sector_weights, per_sample
from ._rng import rand

# ITU-R 601 luma weights, as torchvision's rgb_to_grayscale.
_GRAY = (0.2989, 0.587, 0.114)


@dataclass
class PhotometricConfig:
    """Photometric augmentation settings; defaults are the DiGA paper's."""

    brightness: float = 0.4  # factor ~ U[1-b, 1+b]
    contrast: float = 0.4  # factor ~ U[1-c, 1+c]
    saturation: float = 0.2  # factor ~ U[1-s, 1+s]
    hue: float = 0.1  # shift ~ U[-h, h] (fraction of the hue circle)
    jitter_p: float = 0.5  # the four jitter ops are applied together with this probability
    grayscale_p: float = 0.3
    blur_kernel: int = 3
    blur_sigma: float = 2.0
    blur_p: float = 0.8
    sharpness_factor: float = 0.5  # torchvision ops: this factor; kornia ops: per image ~ U[0, factor]
    sharpness_p: float = 0.3
    ops: str = "torchvision"  # the ops' semantics: torchvision's, or kornia 0.5.8's (the authors'; kornia_ops.py)


# The ops' semantics (PhotometricConfig.ops, the augment_ops setting).
AUGMENT_OPS = ("kornia", "torchvision")


# Domain generalisation: the authors' DG script (domain_generalization/train_DiGA_DG.py) leaves the
# sharpness op out of its augmentation; every other op and probability is the paper's.
GENERALIZATION_PHOTOMETRIC = PhotometricConfig(sharpness_p=0.0)


def rgb_to_gray(x: torch.Tensor, weights: tuple[float, float, float] = _GRAY) -> torch.Tensor:
    """(B,3,H,W) -> (B,1,H,W) luma."""
    r, g, b = x.unbind(-3)
    return (weights[0] * r + weights[1] * g + weights[2] * b).unsqueeze(-3)


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """(…,3,H,W) RGB in [0,1] -> HSV with every channel in [0,1] (torchvision's formulas)."""
    r, g, b = x.unbind(-3)
    maxc = x.amax(-3)
    minc = x.amin(-3)
    eqc = maxc == minc
    cr = maxc - minc
    ones = torch.ones_like(maxc)
    s = cr / torch.where(eqc, ones, maxc)
    crd = torch.where(eqc, ones, cr)  # grey pixels: hue is arbitrary, avoid 0/0
    rc, gc, bc = (maxc - r) / crd, (maxc - g) / crd, (maxc - b) / crd
    is_r = maxc == r
    is_g = (maxc == g) & ~is_r
    is_b = ~is_g & ~is_r
    h = is_r * (bc - gc) + is_g * (2.0 + rc - bc) + is_b * (4.0 + gc - rc)
    h = torch.remainder(h / 6.0, 1.0)
    return torch.stack((h, s, maxc), dim=-3)


def hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """(…,3,H,W) HSV in [0,1] -> RGB, via the closed form ``v - v*s*clamp(min(k, 4-k), 0, 1)``."""
    h, s, v = x.unsqueeze(-3).unbind(-4)  # each (…,1,H,W)
    return v - v * s * hsv_sector_weights(h)


def adjust_brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Per-sample brightness: ``x * f`` (f of shape (B,))."""
    return (x * per_sample(factor)).clamp(0.0, 1.0)


def adjust_contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Per-sample contrast: blend with the image's mean grey level."""
    mean = rgb_to_gray(x).mean(dim=(-3, -2, -1), keepdim=True)
    f = per_sample(factor)
    return (f * x + (1.0 - f) * mean).clamp(0.0, 1.0)


def adjust_saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Per-sample saturation: blend with the grayscale image."""
    f = per_sample(factor)
    return (f * x + (1.0 - f) * rgb_to_gray(x)).clamp(0.0, 1.0)


def adjust_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Per-sample hue rotation by ``shift`` (fraction of the circle, in [-0.5, 0.5])."""
    hsv = rgb_to_hsv(x)
    h = torch.remainder(hsv[:, :1] + per_sample(shift), 1.0)
    return hsv_to_rgb(torch.cat((h, hsv[:, 1:]), dim=1)).clamp(0.0, 1.0)


def gaussian_blur(x: torch.Tensor, kernel_size: int = 3, sigma: float = 2.0) -> torch.Tensor:
    """Depthwise Gaussian blur with reflect padding (torchvision's kernel and padding)."""
    # Built on-device with linspace (no host->device copy); same kernel as torchvision's.
    lim = (kernel_size - 1) / 2.0
    t = torch.linspace(-lim, lim, kernel_size, device=x.device, dtype=x.dtype)
    k1 = torch.softmax(-0.5 * (t / sigma) ** 2, dim=0)
    c = x.shape[1]
    k2 = (k1[:, None] * k1[None, :]).expand(c, 1, kernel_size, kernel_size)
    pad = kernel_size // 2
    return F.conv2d(F.pad(x, (pad, pad, pad, pad), mode="reflect"), k2, groups=c)


def adjust_sharpness(x: torch.Tensor, factor: float | torch.Tensor, clamp_smoothed: bool = False) -> torch.Tensor:
    """torchvision's adjust_sharpness: blend with a smoothed image (border pixels unchanged), clamped
    to [0, 1]. ``clamp_smoothed``: kornia's instead, which clamps the smoothed image and not the blend
    (the same on images in [0, 1]; not on the authors' network input, which goes below 0). ``factor``:
    one for the batch or one per sample (B,)."""
    if isinstance(factor, torch.Tensor):
        factor = per_sample(factor)
    if x.shape[-1] <= 2 or x.shape[-2] <= 2:
        return x
    c = x.shape[1]
    # [[1,1,1],[1,5,1],[1,1,1]] / 13 built from on-device fills (no host->device copy).
    k = F.pad(torch.full((1, 1), 4.0 / 13.0, device=x.device, dtype=x.dtype), (1, 1, 1, 1)) + 1.0 / 13.0
    inner = F.conv2d(x, k.expand(c, 1, 3, 3), groups=c)
    if clamp_smoothed:
        inner = inner.clamp(0.0, 1.0)
    degenerate = x.clone()
    degenerate[..., 1:-1, 1:-1] = inner
    sharpened = factor * x + (1.0 - factor) * degenerate
    return sharpened if clamp_smoothed else sharpened.clamp(0.0, 1.0)


def photometric_augment(x: torch.Tensor, cfg: PhotometricConfig | None = None,
                        generator: torch.Generator | None = None, unit_range: bool = True) -> torch.Tensor:
    """Colour jitter, grayscale, blur and sharpness with per-sample random draws; output in [0,1].

    ``cfg.ops`` "kornia": the jitter and the sharpness factor as kornia 0.5.8 computes and draws them
    (``kornia_ops``), its op order drawn once per call.

    ``unit_range=False``: ``x`` is not an image in [0, 1] but the authors' network input, which their
    code augments as it is; values are then clamped only where kornia's ops clamp them (the colour
    jitter; the sharpness op's smoothed image), and the output is not.
    """
    cfg = cfg or PhotometricConfig()
    b = x.shape[0]
    # All random numbers of the call in one draw: 4 apply-decisions + 4 jitter factors per sample.
    u = rand((b, 8), x, generator)
    apply_jitter, apply_gray, apply_blur, apply_sharp = (u[:, i] < p for i, p in enumerate(
        (cfg.jitter_p, cfg.grayscale_p, cfg.blur_p, cfg.sharpness_p)))
    f_bright = 1.0 + cfg.brightness * (2.0 * u[:, 4] - 1.0)
    f_contrast = 1.0 + cfg.contrast * (2.0 * u[:, 5] - 1.0)
    f_sat = 1.0 + cfg.saturation * (2.0 * u[:, 6] - 1.0)
    f_hue = cfg.hue * (2.0 * u[:, 7] - 1.0)
    f_bright, f_contrast, f_sat, f_hue = (f.to(x.dtype) for f in (f_bright, f_contrast, f_sat, f_hue))
    kornia = cfg.ops == "kornia"
    if not kornia and cfg.ops != "torchvision":
        raise ValueError(f"ops must be one of {', '.join(AUGMENT_OPS)}, got {cfg.ops!r}")
    sharpness = cfg.sharpness_factor
    if kornia:  # drawn after the common numbers, so that the torchvision ops' stream stays as it was
        extra = rand((4 + b,), x, generator)
        order = extra[:4].argsort()
        sharpness = (cfg.sharpness_factor * extra[4:]).to(x.dtype)

    def pick(mask: torch.Tensor, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
        return torch.where(per_sample(mask), new, old)

    out = x
    if cfg.jitter_p > 0:
        jit = (kornia_ops.color_jitter(out, f_bright, f_contrast, f_sat, f_hue, order) if kornia
               else _torchvision_jitter(out, cfg, f_bright, f_contrast, f_sat, f_hue))
        out = pick(apply_jitter, jit, out)
    gray_weights = kornia_ops.GRAY if kornia else _GRAY
    if cfg.grayscale_p > 0:
        out = pick(apply_gray, rgb_to_gray(out, gray_weights).expand_as(out), out)
    if cfg.blur_p > 0 and cfg.blur_sigma > 0:
        out = pick(apply_blur, gaussian_blur(out, cfg.blur_kernel, cfg.blur_sigma), out)
    if cfg.sharpness_p > 0:
        out = pick(apply_sharp, adjust_sharpness(out, sharpness, clamp_smoothed=kornia or not unit_range), out)
    return out.clamp(0.0, 1.0) if unit_range else out


def _torchvision_jitter(jit: torch.Tensor, cfg: PhotometricConfig, f_bright: torch.Tensor, f_contrast: torch.Tensor,
                        f_sat: torch.Tensor, f_hue: torch.Tensor) -> torch.Tensor:
    """Colour jitter in torchvision's default order (brightness, contrast, saturation, hue), fixed
    rather than permuted per call; an op with a zero range is left out."""
    if cfg.brightness > 0:
        jit = adjust_brightness(jit, f_bright)
    if cfg.contrast > 0:
        jit = adjust_contrast(jit, f_contrast)
    if cfg.saturation > 0:
        jit = adjust_saturation(jit, f_sat)
    if cfg.hue > 0:
        jit = adjust_hue(jit, f_hue)
    return jit


def blend(x_aug: torch.Tensor, x: torch.Tensor, beta: float | torch.Tensor) -> torch.Tensor:
    """``beta * x_aug + (1 - beta) * x``."""
    return beta * x_aug + (1.0 - beta) * x


# Where the second view is augmented and blended: on RGB images in [0, 1] ("unit"), or on the
# authors' network input as their code does ("authors", see augment_and_blend_on_authors_input).
BLEND_SPACES = ("authors", "unit")


def to_authors_input(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] RGB (B,3,H,W) -> the authors' network input: BGR, ``(255 x - mean) / 128`` (about [-1, 1]).

    With ``input_norm`` caffe the network is fed this same tensor in RGB order (``INPUT_NORMS["caffe"]``,
    the same means and divisor), so the blended view reaches it in the value range the authors' does."""
    return to_caffe_space(x).flip(1)


def from_authors_input(z: torch.Tensor) -> torch.Tensor:
    """The inverse of ``to_authors_input``, not clamped: a blended view may leave [0, 1]."""
    return from_caffe_space(z.flip(1))


def augment_and_blend_on_authors_input(x: torch.Tensor, beta: float | torch.Tensor,
                                       cfg: PhotometricConfig | None = None,
                                       generator: torch.Generator | None = None) -> torch.Tensor:
    """The second view as the authors' code computes it, for and in [0, 1] RGB images (values may leave [0, 1]).

    Their code augments the network input ``z`` itself (BGR, so grayscale and hue see the channels
    swapped), maps the result by ``2y - 1`` as if it were an image in [0, 1], then blends:
    ``beta * (2 aug(z) - 1) + (1 - beta) * z``. Where no op changes a pixel this is
    ``(1 + beta) z - beta``: more contrast and darker (x 1.4 and -0.4 at beta 0.4).
    """
    z = to_authors_input(x)
    augmented = photometric_augment(z, cfg, generator, unit_range=False)
    return from_authors_input(blend(2.0 * augmented - 1.0, z, beta))


def augment_and_blend(x: torch.Tensor, beta: float | torch.Tensor = 0.4,
                      cfg: PhotometricConfig | None = None,
                      generator: torch.Generator | None = None, space: str = "unit") -> torch.Tensor:
    """DiGA's ``x_aug = beta * aug(x) + (1 - beta) * x`` on [0, 1] RGB images (``space="unit"``), or as
    the authors' code computes it on their network input (``"authors"``); [0, 1] RGB in and out."""
    if space == "authors":
        return augment_and_blend_on_authors_input(x, beta, cfg, generator)
    if space != "unit":
        raise ValueError(f"space must be one of {', '.join(BLEND_SPACES)}, got {space!r}")
    return blend(photometric_augment(x, cfg, generator), x, beta)


__all__ = [
    "PhotometricConfig", "GENERALIZATION_PHOTOMETRIC", "AUGMENT_OPS", "photometric_augment", "augment_and_blend",
    "blend", "rgb_to_gray",
    "BLEND_SPACES", "to_authors_input", "from_authors_input", "augment_and_blend_on_authors_input",
    "rgb_to_hsv", "hsv_to_rgb", "adjust_brightness", "adjust_contrast", "adjust_saturation",
    "adjust_hue", "gaussian_blur", "adjust_sharpness",
]
