"""Offline pseudo-labels: multi-scale (full + half) logits fused by element-wise max."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def _logits_of(out: object) -> torch.Tensor:
    """The logits from a model output: ``(logits, features)`` or a bare tensor."""
    return out[0] if isinstance(out, (tuple, list)) else out  # type: ignore[return-value]


def multiscale_logits(model: nn.Module, images_normalised: torch.Tensor,
                      scales: Sequence[float] = (1.0, 0.5)) -> torch.Tensor:
    """Logits at input size, max-fused over input scales (wrap in inference_mode yourself)."""
    h, w = images_normalised.shape[-2:]
    fused: torch.Tensor | None = None
    for s in scales:
        x = images_normalised
        if s != 1.0:
            size = (max(1, int(h * s + 0.5)), max(1, int(w * s + 0.5)))
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        logits = _logits_of(model(x))
        if logits.shape[-2:] != (h, w):
            logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
        fused = logits if fused is None else torch.maximum(fused, logits)
    if fused is None:
        raise ValueError("scales must not be empty")
    return fused


def pseudo_labels(fused_logits: torch.Tensor) -> torch.Tensor:
    """Hard argmax (B,H,W) as uint8 (no confidence threshold, as DiGA)."""
    return fused_logits.argmax(dim=1).to(torch.uint8)
