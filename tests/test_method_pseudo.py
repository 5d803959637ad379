"""Multi-scale pseudo-labels."""

import torch
import torch.nn.functional as F
from torch import nn

from diga.method import multiscale_logits, pseudo_labels


class ScaleDependent(nn.Module):
    """Returns stride-2 constant logits that depend on the input width, plus dummy features."""

    def forward(self, x):
        b, _, h, w = x.shape
        vals = [1.0, 0.0, -1.0] if w == 8 else [0.0, 2.0, -3.0]
        logits = torch.tensor(vals).view(1, 3, 1, 1).expand(b, 3, h // 2, w // 2)
        return logits, torch.zeros(b, 4, h // 2, w // 2)


class Pool(nn.Module):
    """Logits = 2x2 average pooling of the first 2 input channels (a non-constant toy)."""

    def forward(self, x):
        return F.avg_pool2d(x[:, :2], 2), None


def test_fusion_is_elementwise_max_at_input_size():
    x = torch.zeros(2, 3, 8, 8)
    fused = multiscale_logits(ScaleDependent(), x)
    assert fused.shape == (2, 3, 8, 8)
    assert torch.equal(fused, torch.tensor([1.0, 2.0, -1.0]).view(1, 3, 1, 1).expand(2, 3, 8, 8))
    labels = pseudo_labels(fused)
    assert labels.dtype == torch.uint8 and (labels == 1).all()


def test_fusion_matches_manual_composition():
    x = torch.rand(1, 3, 8, 12, generator=torch.Generator().manual_seed(0))
    up = lambda t: F.interpolate(t, size=(8, 12), mode="bilinear", align_corners=False)  # noqa: E731
    full = up(F.avg_pool2d(x[:, :2], 2))
    half = up(F.avg_pool2d(F.interpolate(x, size=(4, 6), mode="bilinear", align_corners=False)[:, :2], 2))
    with torch.inference_mode():
        fused = multiscale_logits(Pool(), x)
    assert torch.allclose(fused, torch.maximum(full, half))
    assert torch.equal(multiscale_logits(Pool(), x, scales=(1.0,)), full)
