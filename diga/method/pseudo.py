"""Offline pseudo-labels: the hard argmax of the multi-scale fused logits.

The logits come from :func:`diga.evaluate.fused_logits`, the one multi-scale rule that
evaluation uses too, so a pseudo-label is exactly what evaluation would predict.
"""

from __future__ import annotations

import torch


def pseudo_labels(fused_logits: torch.Tensor) -> torch.Tensor:
    """Hard argmax (B,H,W) as uint8 (no confidence threshold, as DiGA)."""
    return fused_logits.argmax(dim=1).to(torch.uint8)
