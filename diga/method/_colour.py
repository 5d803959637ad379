"""Pieces shared by the two colour-jitter op sets (``augment.py``'s torchvision-style ops and
``kornia_ops.py``'s kornia 0.5.8 ones)."""

from __future__ import annotations

import torch


def per_sample(v: torch.Tensor) -> torch.Tensor:
    """(B,) -> (B,1,1,1) so a per-sample factor broadcasts over an image batch."""
    return v.view(-1, 1, 1, 1)


def hsv_sector_weights(hue_turns: torch.Tensor) -> torch.Tensor:
    """The six-sector HSV -> RGB formula in closed form: for a hue (…,1,H,W) given as a fraction of
    the circle (any sign), ``clamp(min(k, 4 - k), 0, 1)`` with ``k = (n + 6h) mod 6`` and n = 5, 3, 1
    for R, G, B, shape (…,3,H,W); RGB is then ``v - v s w`` (torchvision) or ``v (1 - s w)`` (kornia).
    Built on-device (no host copy)."""
    n = torch.arange(5, 0, -2, device=hue_turns.device, dtype=hue_turns.dtype).view(3, 1, 1)
    k = torch.remainder(n + 6.0 * hue_turns, 6.0)
    return torch.minimum(k, 4.0 - k).clamp(0.0, 1.0)
