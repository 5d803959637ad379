"""HRNetV2 + OCR: the high-resolution backbone with the object-contextual representation head.

The backbone comes from timm (the ``nets`` extra, ``pip install 'diga[nets]'``):
``timm.create_model(name, features_only=True, feature_location="")`` returns the four parallel
branches of HRNet's last stage (strides 4, 8, 16, 32), ImageNet weights come through timm's
own pretrained configs, and ``--pretrained FILE`` takes a timm HRNet state dict (timm keeps the
official HRNet parameter names: ``conv1.weight``, ``stage2.0.branches...``; classifier keys
are ignored). timm is a small dependency (torch, torchvision, huggingface_hub, safetensors, pyyaml) and
its HRNet exports to ONNX. No maintained library ships the OCR head, so it is written here
(OCRNet, Yuan et al. 2020) as the authors' HRNet-W48 + OCR network uses it.

HRNet's fusion layers upsample by fixed factors, so the network needs sides divisible by 32: the
input is zero-padded on the bottom/right to the next multiple of 32 and the output cropped back,
so that any size works (a no-op for the usual crops). The four branches are upsampled to stride
4 and concatenated (HRNetV2's representation: 720 channels for W48). The OCR head's output after
its dropout is the ``features`` (as in the authors' code); the classifier on it gives the logits,
at output stride 4. OCR's soft object regions are its auxiliary prediction (``forward(x, aux=True)``
returns their logits as well): they learn through the attention they drive and, with the setting
``aux_weight`` > 0, through a loss of their own beside the main output's (the authors' semi-supervised
code weighs it 0.1).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .hub import import_library, with_hub_weights
from .registry import register
from .segmenter import Segmenter
from .weights import load_backbone_weights

SIZE_DIVISOR = 32  # HRNet's lowest branch is at stride 32


def _conv_bn_relu(cin: int, cout: int, kernel: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class HRNetV2(nn.Module):
    """A timm HRNet feature extractor -> its four branches upsampled to stride 4 and concatenated."""

    def __init__(self, branches: nn.Module) -> None:
        super().__init__()
        self.branches = branches
        self.out_channels = sum(branches.feature_info.channels())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = F.pad(x, (0, (-w) % SIZE_DIVISOR, 0, (-h) % SIZE_DIVISOR))
        high, *low = self.branches(x)
        size = high.shape[-2:]
        y = torch.cat([high] + [F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in low], 1)
        return y[..., : (h + 3) // 4, : (w + 3) // 4]  # the stride-4 cells of the unpadded image


class OCRHead(nn.Module):
    """Object-contextual representations: each pixel is augmented with a mix of class-region
    descriptors, weighted by its similarity to them.

    1. soft object regions: a coarse per-class prediction from the backbone features;
    2. pixel representations: 3x3 conv to ``channels``;
    3. region descriptors: each class's spatial softmax over the pixels' representations;
    4. pixel-region relation: softmax over classes of key/query dot products (``key_channels``);
    5. the context (relation x values) goes back to ``channels``, is concatenated with the pixel
       representation and fused by a 1x1 conv; dropout, then the classifier.
    """

    def __init__(self, in_channels: int, num_classes: int, channels: int = 512, key_channels: int = 256,
                 dropout: float = 0.05) -> None:
        super().__init__()
        self.regions = nn.Sequential(_conv_bn_relu(in_channels, in_channels), nn.Conv2d(in_channels, num_classes, 1))
        self.pixels = _conv_bn_relu(in_channels, channels, 3)
        self.query = nn.Sequential(_conv_bn_relu(channels, key_channels), _conv_bn_relu(key_channels, key_channels))
        self.key = nn.Sequential(_conv_bn_relu(channels, key_channels), _conv_bn_relu(key_channels, key_channels))
        self.value = _conv_bn_relu(channels, key_channels)
        self.context = _conv_bn_relu(key_channels, channels)
        self.fuse = nn.Sequential(_conv_bn_relu(2 * channels, channels), nn.Dropout2d(dropout))
        self.classifier = nn.Conv2d(channels, num_classes, 1)
        self.key_channels = key_channels

    has_aux = True  # the soft object regions' logits

    def forward(self, x: torch.Tensor, aux: bool = False) -> tuple[torch.Tensor, ...]:
        pixels = self.pixels(x)
        b, _, h, w = pixels.shape
        region_logits = self.regions(x)
        regions = region_logits.flatten(2).softmax(-1)  # (B, K, HW): where each class is
        descriptors = torch.bmm(regions, pixels.flatten(2).transpose(1, 2))  # (B, K, C)
        descriptors = descriptors.transpose(1, 2).unsqueeze(-1)  # (B, C, K, 1): 1x1 convs apply
        query = self.query(pixels).flatten(2).transpose(1, 2)  # (B, HW, D)
        key = self.key(descriptors).flatten(2)  # (B, D, K)
        value = self.value(descriptors).flatten(2).transpose(1, 2)  # (B, K, D)
        relation = (torch.bmm(query, key) * self.key_channels ** -0.5).softmax(-1)  # (B, HW, K)
        context = torch.bmm(relation, value).transpose(1, 2).reshape(b, self.key_channels, h, w)
        features = self.fuse(torch.cat([self.context(context), pixels], 1))
        if aux:
            return self.classifier(features), features, region_logits
        return self.classifier(features), features


def hrnet_ocr(arch: str, model: str, num_classes: int = 19, pretrained: str | Path | None = None,
              ocr_channels: int = 512, key_channels: int = 256) -> Segmenter:
    """timm's ``arch`` + OCR; ``pretrained``: None, "imagenet" (timm's weights) or a backbone file."""
    timm = import_library("timm", "timm", model)

    def build(imagenet: bool) -> nn.Module:
        return timm.create_model(arch, pretrained=imagenet, features_only=True, feature_location="",
                                 out_indices=(1, 2, 3, 4))

    if pretrained == "imagenet":
        repo = timm.models.get_pretrained_cfg(arch).hf_hub_id or arch
        branches = with_hub_weights(lambda: build(True), model, repo)
    else:
        branches = build(False)
        if pretrained is not None:
            load_backbone_weights(branches, pretrained)
    backbone = HRNetV2(branches)
    head = OCRHead(backbone.out_channels, num_classes, ocr_channels, key_channels)
    return Segmenter(backbone, head, output_stride=4, feature_dim=ocr_channels)


@register("hrnet_w48_ocr")
def hrnet_w48_ocr(num_classes: int = 19, pretrained=None, ocr_channels: int = 512,
                  key_channels: int = 256) -> Segmenter:
    """HRNetV2-W48 + OCR (512-d features, stride 4): the authors' HRNet network."""
    return hrnet_ocr("hrnet_w48", "hrnet_w48_ocr", num_classes, pretrained, ocr_channels, key_channels)


@register("hrnet_w18_small_ocr")
def hrnet_w18_small_ocr(num_classes: int = 19, pretrained=None, ocr_channels: int = 256,
                        key_channels: int = 128) -> Segmenter:
    """HRNetV2-W18-Small-v2 + a half-width OCR head (256-d features): the small HRNet for CPUs (the
    512-d head would take 2/3 of its training step)."""
    return hrnet_ocr("hrnet_w18_small_v2", "hrnet_w18_small_ocr", num_classes, pretrained, ocr_channels,
                     key_channels)
