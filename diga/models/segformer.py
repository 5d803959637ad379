"""SegFormer: a Mix Transformer (MiT-B0..B5) encoder with the all-MLP decode head.

Built from segmentation-models-pytorch (the ``nets`` extra, ``pip install 'diga[nets]'``), not
from copied model code. Of the maintained libraries that carry MiT:

* **segmentation-models-pytorch** (chosen): 1.7 MB on top of timm (which HRNet needs anyway);
  the encoder returns every stage's feature map (strides 4-32) and its SegFormer decoder returns
  the fused embedding before the classifier, which is the feature DiGA's class centroids need;
  the network exports to ONNX with the dynamo exporter, static or dynamic. The encoder's
  parameter names are those of the official MiT ImageNet files (``patch_embed1.proj.weight``,
  ``block1.0.attn.q.weight``...), so ``--pretrained mit_b5.pth`` loads them.
* transformers' ``SegformerModel``: the same network, but a 13 MB wheel that brings tokenizers,
  its own config and output classes, for one encoder.
* timm has HRNet but no MiT.

The decode head follows the SegFormer paper: a linear projection of each stage to ``E``
channels, all upsampled to stride 4, concatenated and fused by a 1x1 conv + BatchNorm + ReLU
(E = 256 for B0/B1, 768 for B2-B5, as the official configs). Its output is the ``features``
(before dropout, as the authors' SegFormer head returns it); dropout + a 1x1 classifier give
the logits, at output stride 4.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .hub import import_library, with_hub_weights
from .registry import register
from .segmenter import Segmenter
from .weights import load_backbone_weights

# decoder embedding per variant (SegFormer's configs: 256 for the two small encoders, 768 above)
DECODER_CHANNELS = {"b0": 256, "b1": 256, "b2": 768, "b3": 768, "b4": 768, "b5": 768}


class SegFormerHead(nn.Module):
    """smp's SegFormer decoder (MLP per stage -> fuse) -> dropout -> classifier."""

    def __init__(self, decoder: nn.Module, channels: int, num_classes: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.decoder = decoder
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, stages: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.decoder(stages)
        return self.classifier(self.dropout(features)), features


def segformer(variant: str, num_classes: int = 19, pretrained: str | Path | None = None,
              decoder_channels: int | None = None) -> Segmenter:
    """SegFormer-``variant`` (b0..b5); ``pretrained``: None, "imagenet" (smp's MiT weights) or an encoder file."""
    smp = import_library("segmentation_models_pytorch", "segmentation-models-pytorch", f"segformer_{variant}")
    encoder = f"mit_{variant}"
    channels = decoder_channels or DECODER_CHANNELS[variant]

    def build(weights: str | None) -> nn.Module:
        return smp.Segformer(encoder_name=encoder, encoder_weights=weights, classes=num_classes,
                             decoder_segmentation_channels=channels)

    if pretrained == "imagenet":
        repo = smp.encoders.encoders[encoder]["pretrained_settings"]["imagenet"]["repo_id"]
        net = with_hub_weights(lambda: build("imagenet"), f"segformer_{variant}", repo)
    else:
        net = build(None)
        if pretrained is not None:
            load_backbone_weights(net.encoder, pretrained)
    head = SegFormerHead(net.decoder, channels, num_classes)
    return Segmenter(net.encoder, head, output_stride=4, feature_dim=channels)


def _register(variant: str) -> None:
    def factory(num_classes: int = 19, pretrained=None, decoder_channels: int = DECODER_CHANNELS[variant]) -> Segmenter:
        return segformer(variant, num_classes, pretrained, decoder_channels)

    factory.__name__ = factory.__qualname__ = f"segformer_{variant}"
    factory.__doc__ = f"SegFormer with a MiT-{variant.upper()} encoder, {DECODER_CHANNELS[variant]}-d head, stride 4."
    register(f"segformer_{variant}")(factory)


for _variant in DECODER_CHANNELS:
    _register(_variant)
