"""Multi-scale fused logits (one rule for evaluation and pseudo-labels) and pseudo-labels."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from diga.evaluate import fused_logits, scaled_size
from diga.method import pseudo_labels


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
    fused = fused_logits(ScaleDependent(), x, scales=(1.0, 0.5))
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
        fused = fused_logits(Pool(), x, scales=(1.0, 0.5))
    assert torch.allclose(fused, torch.maximum(full, half))
    assert torch.equal(fused_logits(Pool(), x, scales=(1.0,)), full)


class SizeRecorder(nn.Module):
    """Zero logits at stride 2, remembering the input sizes it was given."""

    def __init__(self):
        super().__init__()
        self.sizes = []

    def forward(self, x):
        self.sizes.append(tuple(x.shape[-2:]))
        return torch.zeros(x.shape[0], 2, x.shape[-2] // 2, x.shape[-1] // 2), None


def test_scaled_sizes_round_to_the_nearest_pixel_halves_up():
    assert scaled_size((128, 256), 0.5) == (64, 128)  # exact products stay exact
    assert scaled_size((77, 131), 0.5) == (39, 66)  # 38.5 -> 39, 65.5 -> 66
    assert scaled_size((77, 131), 0.75) == (58, 98)  # 57.75 -> 58, 98.25 -> 98
    assert scaled_size((3, 3), 0.1) == (1, 1)  # never an empty image
    model = SizeRecorder()
    fused = fused_logits(model, torch.zeros(1, 3, 77, 131), scales=(1.0, 0.5, 0.75))
    assert model.sizes == [(77, 131), (39, 66), (58, 98)]
    assert fused.shape == (1, 2, 77, 131) and fused.dtype == torch.float32


def test_fusion_refuses_empty_or_non_positive_scales():
    for bad in ((), (1.0, 0.0), (-0.5,)):
        with pytest.raises(ValueError, match="scales must be positive"):
            fused_logits(Pool(), torch.zeros(1, 3, 8, 8), scales=bad)
