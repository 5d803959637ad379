"""The head's two layouts: BatchNorm + ReLU everywhere, or the authors' GroupNorm layout."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from diga.models import create
from diga.models.head import ASPPHead


def test_gn_head_has_the_authors_layout():
    head = create("deeplabv2_light", 5, head_norm="gn").head
    assert not any(isinstance(m, nn.BatchNorm2d) for m in head.modules())
    norms = [m for m in head.modules() if isinstance(m, nn.GroupNorm)]
    assert norms and all(m.num_groups == 32 for m in norms)
    assert all(branch[0].bias is not None for branch in head.branches)  # convs with a bias before GN
    assert not isinstance(head.bottleneck[-1], nn.ReLU)  # no ReLU after the 256-d bottleneck
    assert head.classifier.bias is None
    bn_head = create("deeplabv2_light", 5).head
    assert isinstance(bn_head.bottleneck[-1], nn.ReLU) and bn_head.classifier.bias is not None


def test_gn_features_are_the_dropout_output_and_can_be_negative():
    torch.manual_seed(0)
    head = ASPPHead(8, 3, channels=32, dilations=(1,), norm="gn")
    x = torch.randn(2, 8, 6, 6)
    head.eval()
    logits, feats = head(x)
    assert (feats < 0).any()  # no ReLU after the bottleneck
    assert torch.allclose(logits, head.classifier(feats))
    head.train()
    torch.manual_seed(1)
    logits, feats = head(x)
    dropped = (feats == 0).flatten(2).all(-1)  # Dropout2d zeroes whole channels: the feature shows it
    assert dropped.any()
    assert torch.allclose(logits, head.classifier(feats))


def test_bad_head_norm_is_refused():
    with pytest.raises(ValueError, match="head norm must be one of"):
        ASPPHead(8, 3, channels=32, norm="ln")
    with pytest.raises(ValueError, match="divisible by 32"):
        ASPPHead(8, 3, channels=48, norm="gn")
