"""The shape every library-built segmenter shares: an encoder, a decode head, two learning rates."""

from __future__ import annotations

import torch
from torch import nn


class Segmenter(nn.Module):
    """``backbone(x)`` -> ``head(...)`` -> ``(logits, features)`` at ``output_stride``.

    ``features`` is the head's embedding that DiGA's class centroids live in (``feature_dim``
    channels); ``logits`` is the classifier applied to it. The optimiser groups and the frozen
    BatchNorm affine switch mean the same as for :class:`~diga.models.deeplabv2.DeepLabV2`.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, output_stride: int, feature_dim: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.output_stride = output_stride
        self.feature_dim = feature_dim

    @property
    def has_aux(self) -> bool:
        """Whether the head has an auxiliary prediction that ``forward(x, aux=True)`` returns."""
        return getattr(self.head, "has_aux", False)

    def forward(self, x: torch.Tensor, aux: bool = False) -> tuple[torch.Tensor, ...]:
        """``(logits, features)``; with ``aux`` (a head that has one) ``(logits, features, aux_logits)``."""
        if aux:
            return self.head(self.backbone(x), aux=True)
        return self.head(self.backbone(x))

    def parameter_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(backbone, head) trainable parameters, each listed once: the head trains at 10x the lr."""
        return ([p for p in self.backbone.parameters() if p.requires_grad],
                [p for p in self.head.parameters() if p.requires_grad])

    def freeze_backbone_bn_affine(self) -> None:
        """Stop training the backbone's BatchNorm scales and shifts (a MiT encoder has none: it uses
        LayerNorm, which keeps training)."""
        for module in self.backbone.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                for p in module.parameters(recurse=False):
                    p.requires_grad_(False)
