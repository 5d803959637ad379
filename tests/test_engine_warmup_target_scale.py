"""The warm-up's target crops rescaled by a range of their own (``warmup_target_scale``): the authors'
warm-up crops target images without rescaling while it rescales the source ones (docs/METHOD.md,
section 15)."""

from __future__ import annotations

import pytest

from diga.classes import get_label_space
from diga.engine.config import preset
from diga.engine.source_branch import SourceBranch
from diga.engine.warmup import WarmupTrainer
from diga.errors import ConfigError


def _scales(branch: SourceBranch) -> tuple[tuple, tuple]:
    return branch.source_parts[0][1].transform.scale, branch.target_parts[0][1].transform.scale


def test_the_warmup_rescales_its_target_crops_by_their_own_range(tiny_cfg, tmp_path):
    cfg = tiny_cfg.replace(scale=(0.75, 1.5), warmup_target_scale=(1.0, 1.0), warmup_target_bn=True)
    trainer = WarmupTrainer(cfg, tmp_path / "run")
    assert _scales(trainer.branch) == ((0.75, 1.5), (1.0, 1.0))


def test_without_a_range_of_their_own_target_crops_take_the_stage_scale(tiny_cfg):
    cfg = tiny_cfg.replace(scale=(0.75, 1.5), warmup_target_bn=True)
    assert cfg.warmup_target_scale is None
    branch = SourceBranch(cfg, get_label_space(cfg.label_space), target_statistics=True)
    assert _scales(branch) == ((0.75, 1.5), (0.75, 1.5))


def test_the_paper_presets_crop_the_warmups_target_without_rescaling():
    assert preset("paper").warmup_target_scale == (1.0, 1.0)
    assert preset("paper-synthia").warmup_target_scale == (1.0, 1.0)
    assert preset("cpu").warmup_target_scale is None and preset("gpu").warmup_target_scale is None


def test_a_bad_range_names_the_setting():
    with pytest.raises(ConfigError, match="warmup_target_scale must be 0 < min <= max"):
        preset("cpu").replace(warmup_target_scale=(1.2, 0.8)).validate()
