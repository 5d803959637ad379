"""The ProDA-style DeepLab-V2 head used by DiGA: ASPP + squeeze-and-excitation + bottleneck."""

from __future__ import annotations

import torch
from torch import nn

# "bn": BatchNorm + ReLU after every conv; "gn": the authors' layout, GroupNorm(32) after convs with
# a bias, no ReLU after the bottleneck, a classifier without bias and the feature taken after dropout.
HEAD_NORMS = ("gn", "bn")


def _conv_norm(cin: int, cout: int, kernel: int, dilation: int = 1, norm: str = "bn",
               relu: bool = True) -> nn.Sequential:
    pad = dilation * (kernel // 2)
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, padding=pad, dilation=dilation, bias=norm == "gn"),
        nn.GroupNorm(32, cout) if norm == "gn" else nn.BatchNorm2d(cout),
    ]
    return nn.Sequential(*layers, nn.ReLU(inplace=True)) if relu else nn.Sequential(*layers)


class ASPPHead(nn.Module):
    """ASPP (1x1 + dilated 3x3 branches) -> SE re-weighting -> 3x3 bottleneck -> classifier.

    Returns ``(logits, features)``; ``features`` is the embedding that DiGA's class centroids
    live in: the bottleneck output (``norm="bn"``) or, as in the authors' code, the dropout's output
    (``norm="gn"``: the same in eval mode).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        channels: int = 256,
        dilations: tuple[int, ...] = (6, 12, 18, 24),
        dropout: float = 0.1,
        norm: str = "bn",
    ) -> None:
        super().__init__()
        if norm not in HEAD_NORMS:
            raise ValueError(f"head norm must be one of {', '.join(HEAD_NORMS)}, got {norm!r}")
        if norm == "gn" and channels % 32:
            raise ValueError(f"head norm gn needs channels divisible by 32 (GroupNorm(32)), got {channels}")
        self.norm = norm
        self.branches = nn.ModuleList(
            [_conv_norm(in_channels, channels, 1, norm=norm)]
            + [_conv_norm(in_channels, channels, 3, d, norm=norm) for d in dilations]
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
        self.bottleneck = _conv_norm(cat, channels, 3, norm=norm, relu=norm == "bn")
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, 1, bias=norm == "bn")
        self.feature_dim = channels

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.cat([branch(x) for branch in self.branches], dim=1)
        y = y * self.se(y.mean(dim=(2, 3), keepdim=True))
        features = self.bottleneck(y)
        dropped = self.dropout(features)
        return self.classifier(dropped), dropped if self.norm == "gn" else features
