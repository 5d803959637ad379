"""The logits' upsampling to the label size before the supervised losses (``logits_align_corners``):
bilinear with ``align_corners=True`` as every one of the authors' scripts (their ``upsample_src`` /
``upsample_tgt`` before ``cross_entropy2d`` or ``OhemCrossEntropy``) in the paper presets, with
``align_corners=False`` otherwise (docs/METHOD.md, losses)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from diga.engine.config import StageConfig, preset
from diga.method.losses import ohem_ce, seg_ce, segmentation_loss


def _batch():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 6, 12, generator=g)
    labels = torch.randint(0, 5, (2, 48, 96), generator=g)
    labels[:, :4] = 255
    return logits, labels


@pytest.mark.parametrize("loss", ["ce", "ohem"])
@pytest.mark.parametrize("align", [True, False])
def test_the_supervised_loss_upsamples_as_the_setting_says(loss, align):
    logits, labels = _batch()
    cfg = preset("cpu").replace(loss=loss, ohem_min_kept=1000, logits_align_corners=align)
    up = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=align)
    direct = seg_ce(up, labels, norm=cfg.loss_norm) if loss == "ce" else ohem_ce(up, labels, 0.7, 1000)
    assert torch.equal(segmentation_loss(logits, labels, cfg), direct)
    other = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=not align)
    assert not torch.equal(up, other)  # the two upsamplings differ on these logits


def test_the_losses_default_to_align_corners_false():
    logits, labels = _batch()
    up = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
    assert torch.equal(seg_ce(logits, labels), seg_ce(up, labels))
    assert torch.equal(ohem_ce(logits, labels, 0.7, 1000), ohem_ce(up, labels, 0.7, 1000))
    assert torch.equal(seg_ce(logits, labels, align_corners=True),
                       seg_ce(F.interpolate(logits, size=(48, 96), mode="bilinear", align_corners=True), labels))


def test_the_paper_presets_upsample_as_the_authors_scripts():
    for name in ("paper", "paper-synthia", "paper-semi", "paper-dg"):
        assert preset(name).logits_align_corners is True
    for name in ("cpu", "gpu"):
        assert preset(name).logits_align_corners is False
    assert StageConfig().logits_align_corners is False
    assert StageConfig.from_yaml("batch_size: 3\n").logits_align_corners is False  # an older file


def test_supervised_references_key_on_the_setting_only_when_it_is_set():
    from diga.engine import benchmark

    assert "logits_align_corners" not in benchmark._BOOKKEEPING  # `diga train` reads it
    cfg = preset("cpu")
    assert benchmark._key(cfg, "d") == benchmark._key(cfg.replace(logits_align_corners=False), "d")
    assert benchmark._key(cfg, "d") != benchmark._key(cfg.replace(logits_align_corners=True), "d")
