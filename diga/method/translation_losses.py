"""The losses that train the learned translator (stage 0): LSGAN, perceptual, semantic-edge.

Weights and details follow the authors' translator training (docs/METHOD.md, stage 0):
``0.5 adversarial + 10 cycle + 20 semantic edge + 0.1 perceptual + 0.001 self-reconstruction``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

LOSS_WEIGHTS: dict[str, float] = {"adversarial": 0.5, "cycle": 10.0, "edge": 20.0, "perceptual": 0.1, "self": 0.001}
# relu1_1 ... relu5_1: the deeper the layer, the more it counts.
PERCEPTUAL_WEIGHTS: tuple[float, ...] = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)
PERCEPTUAL_MAX_WIDTH = 1024  # wider inputs are 2x average-pooled until they fit
EDGE_KERNEL = 5
EDGE_THRESHOLD = 0.1


def lsgan_real(outputs: Sequence[torch.Tensor]) -> torch.Tensor:
    """Least-squares loss pushing every scale's discriminator output towards 1."""
    return sum(((o - 1.0) ** 2).mean() for o in outputs)  # type: ignore[return-value]


def lsgan_fake(outputs: Sequence[torch.Tensor]) -> torch.Tensor:
    """Least-squares loss pushing every scale's discriminator output towards 0."""
    return sum((o ** 2).mean() for o in outputs)  # type: ignore[return-value]


def perceptual_loss(features: Callable[[torch.Tensor], Sequence[torch.Tensor]], x: torch.Tensor, y: torch.Tensor,
                    weights: Sequence[float] = PERCEPTUAL_WEIGHTS) -> torch.Tensor:
    """Weighted L1 between the feature maps of ``x`` and of ``y`` (no gradient through ``y``'s)."""
    while x.shape[-1] > PERCEPTUAL_MAX_WIDTH:
        x = F.avg_pool2d(x, 2, count_include_pad=False)
        y = F.avg_pool2d(y, 2, count_include_pad=False)
    fx, fy = features(x), features(y)
    return sum(w * F.l1_loss(a, b.detach()) for w, a, b in zip(weights, fx, fy))  # type: ignore[return-value]


def semantic_edges(labels: torch.Tensor, kernel: int = EDGE_KERNEL, threshold: float = EDGE_THRESHOLD) -> torch.Tensor:
    """(B,H,W) label maps -> (B,1,H,W) float mask of class boundaries.

    A normalised Laplacian (a ``kernel`` x ``kernel`` box of ones with ``1 - kernel**2`` at the
    centre, divided by the sum of its absolute values) over the label ids, reflect-padded; pixels
    whose response exceeds ``threshold`` in magnitude are edges. Ignored pixels (255) count as a
    class of their own, so their borders are edges too.
    """
    y = labels.float().unsqueeze(1)
    k = torch.ones(kernel, kernel, dtype=y.dtype, device=y.device)
    k[kernel // 2, kernel // 2] = 1 - kernel * kernel
    k = k / k.abs().sum()
    p = kernel // 2
    response = F.conv2d(F.pad(y, (p, p, p, p), mode="reflect"), k.view(1, 1, kernel, kernel))
    return (response.abs() > threshold).to(y.dtype)


def edge_loss(translated: torch.Tensor, source: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """L1 between translated and source pixels on the source's semantic edges (mean over all pixels):
    the translation may restyle, but not move, the boundaries the labels draw."""
    edges = semantic_edges(labels)
    return F.l1_loss(translated * edges, source * edges)


__all__ = ["LOSS_WEIGHTS", "PERCEPTUAL_WEIGHTS", "edge_loss", "lsgan_fake", "lsgan_real", "perceptual_loss",
           "semantic_edges"]
