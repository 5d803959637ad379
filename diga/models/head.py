"""The ProDA-style DeepLab-V2 head used by DiGA: ASPP + squeeze-and-excitation + bottleneck."""

from __future__ import annotations

import torch
from torch import nn


def _conv_bn_relu(cin: int, cout: int, kernel: int, dilation: int = 1) -> nn.Sequential:
    pad = dilation * (kernel // 2)
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, padding=pad, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class ASPPHead(nn.Module):
    """ASPP (1x1 + dilated 3x3 branches) -> SE re-weighting -> 3x3 bottleneck -> classifier.

    Returns ``(logits, features)``; ``features`` is the bottleneck output, the embedding that
    DiGA's class centroids live in.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        channels: int = 256,
        dilations: tuple[int, ...] = (6, 12, 18, 24),
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            [_conv_bn_relu(in_channels, channels, 1)]
            + [_conv_bn_relu(in_channels, channels, 3, d) for d in dilations]
        )
        cat = channels * len(self.branches)
        # Squeeze-and-excitation over the concatenated branches. A mean over H, W instead of
        # AdaptiveAvgPool2d keeps the ONNX graph free of adaptive pooling.
        self.se = nn.Sequential(
            nn.Conv2d(cat, cat // 16, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(cat // 16, cat, 1),
            nn.Sigmoid(),
        )
        self.bottleneck = _conv_bn_relu(cat, channels, 3)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, 1)
        self.feature_dim = channels

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.cat([branch(x) for branch in self.branches], dim=1)
        y = y * self.se(y.mean(dim=(2, 3), keepdim=True))
        features = self.bottleneck(y)
        return self.classifier(self.dropout(features)), features
