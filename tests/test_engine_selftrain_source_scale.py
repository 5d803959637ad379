"""Self-training's labelled (source) crops rescaled by a range of their own (``selftrain_source_scale``):
the authors' semi-supervised self-training rescales its pseudo-labelled crops by U[0.7, 1] per side
while its labelled crops are only flipped and cropped (docs/METHOD.md, semi-supervised segmentation)."""

from __future__ import annotations

import pytest
import yaml

from diga.engine.config import StageConfig, preset
from diga.errors import ConfigError

IMAGE = (64, 128)  # the tiny benchmark's images


@pytest.fixture()
def selftrainer(tiny_cfg, tmp_path):
    """A self-training stage on the tiny benchmark, built from a config by the pipeline's own rule."""
    from conftest import make_checkpoint

    from diga.engine.pipeline import selftrain_config
    from diga.engine.pseudolabels import compute_centroids, generate_pseudo_labels
    from diga.engine.selftrain import SelfTrainer

    init = make_checkpoint(tmp_path / "warm.safetensors")
    manifest = generate_pseudo_labels(init, tiny_cfg.target, tmp_path / "pseudo", tiny_cfg)
    centroids = compute_centroids(init, manifest, tmp_path / "centroids.safetensors", tiny_cfg)

    def build(**settings) -> SelfTrainer:
        cfg = tiny_cfg.replace(scale=(1.0, 1.0), selftrain_scale=(0.7, 1.0), scale_mode="axis", crop_fill="pad",
                               **settings).validate()
        return SelfTrainer(selftrain_config(cfg, init, manifest, centroids), tmp_path / f"selftrain{len(settings)}")

    return build


def test_the_labelled_crops_stay_unscaled_while_the_pseudo_labelled_ones_are_rescaled(selftrainer, monkeypatch):
    from diga.engine.loaders import sized_loader

    trainer = selftrainer(selftrain_source_scale=(1.0, 1.0))
    assert trainer.branch.source_parts[0][1].transform.scale == (1.0, 1.0)
    assert trainer.pseudo_parts[0][1].transform.scale == (0.7, 1.0)
    from conftest import record_resizes

    sizes = record_resizes(monkeypatch)
    for _ in range(3):
        images, labels = next(trainer.branch.loaders(0)[0])
        assert images.shape[0] == 2 and labels.shape[-2:] == (48, 96)
    assert sizes == []  # the labelled images are cropped at their own size: never resized
    images, *_ = next(sized_loader(trainer.pseudo_parts, 0, salt=2))
    assert images.shape[0] == 2 and len(sizes) == 2
    for h, w in sizes:  # each side by its own factor in [0.7, 1]
        assert round(0.7 * IMAGE[0]) <= h <= IMAGE[0] and round(0.7 * IMAGE[1]) <= w <= IMAGE[1]
        assert (h, w) != IMAGE


def test_without_a_range_of_their_own_labelled_crops_take_self_trainings_range(selftrainer):
    trainer = selftrainer()
    assert trainer.cfg.selftrain_source_scale is None
    assert trainer.branch.source_parts[0][1].transform.scale == (0.7, 1.0)
    assert trainer.pseudo_parts[0][1].transform.scale == (0.7, 1.0)


def test_paper_semi_leaves_its_selftraining_labelled_crops_unscaled():
    semi = preset("paper-semi")
    assert semi.selftrain_source_scale == (1.0, 1.0) and semi.selftrain_scale == (0.7, 1.0)
    for name in ("paper", "paper-synthia", "paper-dg", "cpu", "gpu"):
        assert preset(name).selftrain_source_scale is None
    assert StageConfig().selftrain_source_scale is None


def test_config_files_keep_their_meaning():
    assert StageConfig.from_yaml(preset("paper-semi").to_yaml()) == preset("paper-semi")
    saved = yaml.safe_load(preset("cpu").to_yaml())
    del saved["selftrain_source_scale"]  # a file from before the setting
    assert StageConfig.from_yaml(yaml.safe_dump(saved, sort_keys=False)) == preset("cpu")


def test_a_bad_range_names_the_setting():
    with pytest.raises(ConfigError, match="selftrain_source_scale must be 0 < min <= max"):
        preset("cpu").replace(selftrain_source_scale=(1.2, 0.8)).validate()


def test_the_setting_stays_out_of_the_references_cache_key():
    from diga.engine import benchmark

    assert "selftrain_source_scale" in benchmark._BOOKKEEPING
    cfg = preset("cpu")
    assert benchmark._key(cfg, "d") == benchmark._key(cfg.replace(selftrain_source_scale=(1.0, 1.0)), "d")
