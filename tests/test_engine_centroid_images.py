"""The images the class centroids average over (--centroid-images): the target's training images, or
with ``all`` the source's training images too, in path order, as the authors' semi-supervised
calc_centroids.py runs over Cityscapes' whole train list, labelled part included (docs/METHOD.md)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from diga.classes import get_label_space
from diga.engine import pseudolabels
from diga.engine.config import StageConfig, preset
from diga.errors import ConfigError
from tests.conftest import make_checkpoint, stage_configs


def _argmax_cfg(tiny_cfg, images: str) -> StageConfig:
    return tiny_cfg.replace(centroid_labels="argmax", centroid_images=images).validate()


def _centroids(weights: Path, cfg: StageConfig, target: str, out: Path) -> dict[str, torch.Tensor]:
    """The saved centroid file (sums and counts included) of ``cfg`` with ``target`` as the target."""
    cfg = cfg.replace(target=target)
    manifest = pseudolabels.generate_pseudo_labels(weights, target, out.parent / f"pseudo-{out.stem}", cfg)
    return load_file(str(pseudolabels.compute_centroids(weights, manifest, out, cfg)))


def test_all_adds_every_source_image_to_the_targets(tiny_cfg, tiny_bench, tmp_path):
    weights = make_checkpoint(tmp_path / "warm.safetensors", seed=3)
    target_only = _centroids(weights, _argmax_cfg(tiny_cfg, "target"), tiny_bench["target"], tmp_path / "t.safetensors")
    # the source's images alone, as a target: what "all" must add to the target's
    source_only = _centroids(weights, _argmax_cfg(tiny_cfg, "target"), tiny_bench["source"], tmp_path / "s.safetensors")
    both = _centroids(weights, _argmax_cfg(tiny_cfg, "all"), tiny_bench["target"], tmp_path / "all.safetensors")

    assert torch.equal(both["acc.counts"], target_only["acc.counts"] + source_only["acc.counts"])
    assert both["acc.counts"].sum() > target_only["acc.counts"].sum()
    torch.testing.assert_close(both["acc.sums"], target_only["acc.sums"] + source_only["acc.sums"])
    with safe_open(str(tmp_path / "all.safetensors"), "pt") as f:
        assert f.metadata()["images"] == "all"


def test_all_orders_the_images_by_path_and_counts_a_shared_image_once(tiny_cfg, tiny_bench, tmp_path):
    weights = make_checkpoint(tmp_path / "warm.safetensors")
    cfg = _argmax_cfg(tiny_cfg, "all")
    manifest = pseudolabels.generate_pseudo_labels(weights, cfg.target, tmp_path / "pseudo", cfg)
    space = get_label_space("cityscapes19")

    data = pseudolabels.centroid_images(manifest, space, cfg)
    paths = [str(Path(part.base.samples[i][0]).resolve()) for part, i in data.items]
    assert len(paths) == 16 and paths == sorted(paths)  # 8 target + 8 source images
    image, packed = data[0]
    assert image.shape[-2:] == packed.shape

    same = pseudolabels.centroid_images(manifest, space, cfg.replace(source=cfg.target))
    assert len(same) == 8
    assert len(pseudolabels.centroid_images(manifest, space, cfg.replace(centroid_images="target"))) == 8


def test_all_needs_argmax_labels_and_a_source(tiny_cfg, tmp_path):
    with pytest.raises(ConfigError, match="centroid_images all needs centroid_labels argmax"):
        tiny_cfg.replace(centroid_images="all", centroid_labels="pseudo").validate()
    with pytest.raises(ConfigError, match="centroid_images must be one of target, all"):
        tiny_cfg.replace(centroid_images="source").validate()
    cfg = _argmax_cfg(tiny_cfg, "all")
    weights = make_checkpoint(tmp_path / "warm.safetensors")
    manifest = pseudolabels.generate_pseudo_labels(weights, cfg.target, tmp_path / "pseudo", cfg)
    with pytest.raises(ConfigError, match="--source"):
        pseudolabels.centroid_images(manifest, get_label_space("cityscapes19"), cfg.replace(source=None))


def test_paper_semi_averages_every_train_image_and_the_others_the_target():
    assert preset("paper-semi").centroid_images == "all"
    for name in ("cpu", "gpu", "paper", "paper-synthia"):
        assert preset(name).centroid_images == "target"
    assert StageConfig().centroid_images == "target"  # older config files keep their meaning


@pytest.mark.parametrize("command", ["adapt", "selftrain"])
def test_the_stage_commands_pass_the_option_on(command, tiny_bench, tmp_path, monkeypatch):
    (cfg,) = stage_configs(command, tiny_bench, tmp_path, monkeypatch,
                           "--centroid-images", "all", "--centroid-labels", "argmax")
    assert cfg.centroid_images == "all"


def test_the_cli_refuses_all_with_pseudo_label_pixels(cli, tiny_bench):
    result = cli("adapt", "--source", tiny_bench["source"], "--target", tiny_bench["target"],
                 "--centroid-images", "all", "--centroid-labels", "pseudo", "--no-references")
    assert result.exit_code != 0 and "centroid_labels argmax" in result.text
