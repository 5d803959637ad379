"""The colour jitter as kornia 0.5.8 computes it (the release the authors' code pins), batched with
per-sample factors: ``--augment-ops kornia``, the paper presets.

Its semantics differ from the torchvision-style ops of ``augment.py``, not only its numbers:
brightness adds ``factor - 1`` instead of multiplying, contrast multiplies without blending with the
mean grey, saturation scales the HSV saturation instead of blending with the grey image, hue turns the
HSV hue in radians, and the four ops run in an order drawn once per call (the whole batch shares it).
Each op clamps exactly where kornia's does, so on the authors' network input (about [-1, 1], which
their code feeds to these ops) the values follow theirs as well. ``tests/test_augment_kornia.py``
compares every op with kornia 0.5.8 itself when it is installed (the ``dev`` extra pins it).
"""

from __future__ import annotations

import math

import torch

from ._colour import hsv_sector_weights, per_sample

# kornia's rgb_to_grayscale weights
GRAY = (0.299, 0.587, 0.114)
_TWO_PI = 2.0 * math.pi


def adjust_brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``clamp(x + (factor - 1), 0, 1)``: ColorJitter draws the factor around 1 and adds its offset."""
    return (x + per_sample(factor - 1.0)).clamp(0.0, 1.0)


def adjust_contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``clamp(x * factor, 0, 1)``: no blend with the image's mean."""
    return (x * per_sample(factor)).clamp(0.0, 1.0)


def rgb_to_hsv(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """(B,3,H,W) -> HSV with the hue in radians [0, 2 pi); ``s = (max - min) / (max + eps)``, unclamped,
    the first maximal channel (R, then G, then B) choosing the hue formula."""
    r, g, b = x.unbind(1)
    maxc, minc = x.amax(dim=1), x.amin(dim=1)
    delta = maxc - minc
    s = delta / (maxc + eps)
    delta = torch.where(delta == 0, torch.ones_like(delta), delta)
    rc, gc, bc = maxc - r, maxc - g, maxc - b
    red = r == maxc
    green = ~red & (g == maxc)
    h = torch.where(red, bc - gc, torch.where(green, 2.0 * delta + rc - bc, 4.0 * delta + gc - rc)) / delta
    h = (h / 6.0) % 1.0
    return torch.stack((_TWO_PI * h, s, maxc), dim=1)


def hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """HSV (hue in radians, any sign) -> RGB, unclamped: ``v (1 - s w)`` with the closed-form sector
    weights ``w`` of ``_colour.hsv_sector_weights``."""
    h, s, v = x.unsqueeze(2).unbind(1)  # each (B,1,H,W)
    return v * (1.0 - s * hsv_sector_weights(h / _TWO_PI))


def adjust_saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """The HSV saturation times ``factor``, clamped to [0, 1]."""
    h, s, v = rgb_to_hsv(x).unbind(1)
    s = (s * factor.view(-1, 1, 1)).clamp(0.0, 1.0)
    return hsv_to_rgb(torch.stack((h, s, v), dim=1))


def adjust_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """The HSV hue turned by ``shift`` (a fraction of the circle) with ``fmod``, not clamped."""
    h, s, v = rgb_to_hsv(x).unbind(1)
    h = torch.fmod(h + _TWO_PI * shift.view(-1, 1, 1), _TWO_PI)
    return hsv_to_rgb(torch.stack((h, s, v), dim=1))


def color_jitter(x: torch.Tensor, brightness: torch.Tensor, contrast: torch.Tensor, saturation: torch.Tensor,
                 hue: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """kornia's ColorJitter with the drawn per-sample factors: all four ops, in ``order`` (a permutation
    of 0 brightness, 1 contrast, 2 saturation, 3 hue, as a device tensor), each whatever its factor (so
    each clamps).

    The order stays on the device: each of the four places computes all four ops and keeps the one the
    order names, four times the arithmetic of one pass and no host read (the training steps never wait
    for the device; tests/test_engine_host_sync.py)."""
    ops = (lambda t: adjust_brightness(t, brightness), lambda t: adjust_contrast(t, contrast),
           lambda t: adjust_saturation(t, saturation), lambda t: adjust_hue(t, hue))
    for place in range(4):
        x = torch.stack([op(x) for op in ops]).index_select(0, order[place:place + 1]).squeeze(0)
    return x


__all__ = ["GRAY", "adjust_brightness", "adjust_contrast", "adjust_saturation", "adjust_hue", "rgb_to_hsv",
           "hsv_to_rgb", "color_jitter"]
