"""DeepLab-V2 segmenters (ResNet backbones with dilation + the ProDA-style ASPP head)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision.models import resnet
from torchvision.models._utils import IntermediateLayerGetter

from ..errors import ConfigError
from .head import ASPPHead
from .registry import register
from .weights import deeplab_init_file, load_backbone_weights, load_deeplab_init, with_imagenet_weights


class DeepLabV2(nn.Module):
    """Backbone -> ASPP head. ``forward`` returns ``(logits, features)`` at the output stride."""

    def __init__(self, backbone: nn.Module, head: ASPPHead, output_stride: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.output_stride = output_stride
        self.feature_dim = head.feature_dim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head(self.backbone(x)["out"])

    def parameter_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(backbone, head) trainable parameters, each listed once: the head trains at 10x the lr."""
        return ([p for p in self.backbone.parameters() if p.requires_grad],
                [p for p in self.head.parameters() if p.requires_grad])

    def freeze_backbone_bn_affine(self) -> None:
        """Stop training the backbone BatchNorm scales and shifts, as the authors' code does: the
        layers still normalise with batch statistics in train mode and update their running ones."""
        for module in self.backbone.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                for p in module.parameters(recurse=False):
                    p.requires_grad_(False)


# "torchvision": torchvision's ResNet. "caffe": the layout of the DeepLab-V2 init weights the authors
# start from (their model/seg_model_noaux.py): the stride of a block on its first 1x1 conv, a ceil-mode
# max-pool (a 512x896 crop gives 65x113 outputs, not 64x112), every block of layer3/layer4 dilated 2/4
# (torchvision keeps the first one at 1/2), and head convs drawn from N(0, 0.01).
BACKBONE_LAYOUTS = ("torchvision", "caffe")


def weights_layout_problem(backbone_layout: str, pretrained: str | Path | None) -> str | None:
    """Why ``pretrained`` cannot start a ResNet in ``backbone_layout``, or None. The one place for this
    rule: the model constructors raise it, StageConfig.validate reports it before any run starts."""
    if pretrained == "deeplab" and backbone_layout != "caffe":
        return ("pretrained deeplab (the DeepLab-V2 init weights of ResNet-101) was trained in the Caffe layout: "
                "it needs a DeepLab-V2 ResNet with backbone_layout caffe (--backbone-layout caffe)")
    if pretrained == "imagenet" and backbone_layout == "caffe":
        return ("backbone_layout caffe cannot start from torchvision's ImageNet weights (--pretrained imagenet): "
                "they were trained with the stride on the 3x3 conv and RGB ImageNet input; give the DeepLab init "
                "weights (--pretrained deeplab, or the file with --pretrained FILE), or use --backbone-layout "
                "torchvision with --input-norm imagenet")
    return None


def _resnet_deeplab(
    arch: str, num_classes: int, pretrained: str | Path | None, output_stride: int,
    head_channels: int = 256, dilations: tuple[int, ...] = (6, 12, 18, 24), head_norm: str = "bn",
    backbone_layout: str = "torchvision",
) -> DeepLabV2:
    if output_stride not in (8, 16):
        raise ValueError(f"output_stride must be 8 or 16, got {output_stride}")
    if backbone_layout not in BACKBONE_LAYOUTS:
        raise ValueError(f"backbone_layout must be one of {', '.join(BACKBONE_LAYOUTS)}, got {backbone_layout!r}")
    if problem := weights_layout_problem(backbone_layout, pretrained):
        raise ConfigError(problem)
    if backbone_layout == "caffe":
        backbone = _caffe_resnet(arch, output_stride, pretrained)
    else:
        backbone = IntermediateLayerGetter(_torchvision_resnet(arch, output_stride, pretrained),
                                           return_layers={"layer4": "out"})
    head = ASPPHead(2048, num_classes, head_channels, dilations, norm=head_norm)
    if backbone_layout == "caffe":
        init_head_as_authors(head)
    return DeepLabV2(backbone, head, output_stride)


def _torchvision_resnet(arch: str, output_stride: int, pretrained: str | Path | None) -> resnet.ResNet:
    dilate = [False, output_stride == 8, True]
    build = getattr(resnet, arch)
    if pretrained == "imagenet":
        weights = {"resnet101": resnet.ResNet101_Weights.IMAGENET1K_V1,
                   "resnet50": resnet.ResNet50_Weights.IMAGENET1K_V1}[arch]
        return with_imagenet_weights(build, weights, replace_stride_with_dilation=dilate)
    net = build(weights=None, replace_stride_with_dilation=dilate)
    if pretrained is not None:
        load_backbone_weights(net, pretrained)
    return net


def _caffe_resnet(arch: str, output_stride: int, pretrained: str | Path | None) -> IntermediateLayerGetter:
    """torchvision's ResNet up to layer4, rearranged into the Caffe layout (the parameter names stay
    torchvision's, which are also those of the DeepLab init file once its prefix is removed)."""
    if output_stride != 8:
        raise ValueError(f"backbone_layout caffe has output stride 8 only (got {output_stride})")
    net = getattr(resnet, arch)(weights=None, replace_stride_with_dilation=[False, True, True])
    net.maxpool.ceil_mode = True
    first = net.layer2[0]  # the one strided block at output stride 8
    first.conv1.stride, first.conv2.stride = first.conv2.stride, (1, 1)
    for layer, dilation in ((net.layer3, 2), (net.layer4, 4)):
        for block in layer:
            block.conv2.dilation = block.conv2.padding = (dilation, dilation)
    backbone = IntermediateLayerGetter(net, return_layers={"layer4": "out"})  # no fc: the file has none
    if pretrained is not None:
        load_deeplab_init(backbone, deeplab_init_file() if pretrained == "deeplab" else pretrained)
    return backbone


def init_head_as_authors(head: ASPPHead) -> None:
    """The authors' network draws every conv weight of its head from N(0, 0.01) (its backbone init loop
    runs over the head too) and zeroes the bottleneck conv's bias (the head's own init loop; the branch
    biases keep the default); the squeeze-and-excitation layers (linear layers there) keep the default."""
    se = set(head.se.modules())
    for module in head.modules():
        if isinstance(module, nn.Conv2d) and module not in se:
            nn.init.normal_(module.weight, 0.0, 0.01)
    bottleneck = head.bottleneck[0]
    if bottleneck.bias is not None:
        nn.init.zeros_(bottleneck.bias)


@register("deeplabv2_resnet101")
def deeplabv2_resnet101(num_classes: int = 19, pretrained=None, output_stride: int = 8,
                        head_norm: str = "bn", backbone_layout: str = "torchvision") -> DeepLabV2:
    """The paper's network: ResNet-101, output stride 8, 256-d ASPP/SE head."""
    return _resnet_deeplab("resnet101", num_classes, pretrained, output_stride, head_norm=head_norm,
                           backbone_layout=backbone_layout)


@register("deeplabv2_resnet50")
def deeplabv2_resnet50(num_classes: int = 19, pretrained=None, output_stride: int = 8,
                       head_norm: str = "bn", backbone_layout: str = "torchvision") -> DeepLabV2:
    return _resnet_deeplab("resnet50", num_classes, pretrained, output_stride, head_norm=head_norm,
                           backbone_layout=backbone_layout)


class LightResNet(nn.Module):
    """A ResNet-18 layout at half width (32-256 channels) for 2-core CPUs.

    torchvision's ResNet fixes BasicBlock widths at 64-512, so the stages are assembled here from
    its BasicBlock. Stages after the output stride is reached are dilated instead of strided.
    """

    def __init__(self, widths: tuple[int, int, int, int] = (32, 64, 128, 256), output_stride: int = 8) -> None:
        super().__init__()
        if output_stride not in (8, 16):
            raise ValueError(f"output_stride must be 8 or 16, got {output_stride}")
        w0 = widths[0]
        self.stem = nn.Sequential(
            nn.Conv2d(3, w0, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(w0),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        stages, cin, stride_so_far, dilation = [], w0, 4, 1
        for i, w in enumerate(widths):
            stride = 1
            if i > 0:
                if stride_so_far < output_stride:
                    stride, stride_so_far = 2, stride_so_far * 2
                else:
                    dilation *= 2
            down = None
            if stride != 1 or cin != w:
                down = nn.Sequential(nn.Conv2d(cin, w, 1, stride=stride, bias=False), nn.BatchNorm2d(w))
            stages.append(nn.Sequential(
                resnet.BasicBlock(cin, w, stride, down),
                _dilated_block(w, dilation),
            ))
            cin = w
        self.layers = nn.Sequential(*stages)
        self.out_channels = cin

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": self.layers(self.stem(x))}


def _dilated_block(width: int, dilation: int) -> resnet.BasicBlock:
    # BasicBlock refuses dilation > 1 in its constructor; set the conv dilation afterwards.
    block = resnet.BasicBlock(width, width)
    for conv in (block.conv1, block.conv2):
        conv.dilation, conv.padding = (dilation, dilation), (dilation, dilation)
    return block


@register("deeplabv2_light")
def deeplabv2_light(num_classes: int = 19, pretrained=None, head_channels: int = 64,
                    output_stride: int = 8, head_norm: str = "bn") -> DeepLabV2:
    """Half-width ResNet-18 layout, output stride 8, 64-d head: the CPU preset's network."""
    if pretrained == "imagenet":
        raise ConfigError(
            "--pretrained imagenet: deeplabv2_light has no ImageNet weights (its widths are not a torchvision "
            "model); train it from scratch (--pretrained none) or pass a backbone file"
        )
    backbone = LightResNet(output_stride=output_stride)
    if pretrained is not None:
        load_backbone_weights(backbone, pretrained)
    head = ASPPHead(backbone.out_channels, num_classes, head_channels, dilations=(1, 2, 3, 4), norm=head_norm)
    return DeepLabV2(backbone, head, output_stride=output_stride)
