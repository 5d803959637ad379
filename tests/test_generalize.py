"""``diga generalize``: the warm-up on the source alone (no target image), scored on unseen datasets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from diga.engine.config import StageConfig
from diga.errors import ConfigError


def _dataset_root(spec: str) -> Path:
    return Path(spec.split(":", 1)[1])


# --- the switch ---------------------------------------------------------------------------------
def test_generalize_refuses_target_images_and_the_cross_domain_mixture():
    with pytest.raises(ConfigError, match=r"generalize trains on the source alone: target must be null"):
        StageConfig(generalize=True, mix=False, target="cityscapes:/data/cs", warmup_target_bn=False).validate()
    # target images for the BatchNorm statistics alone (--bn-images) are the one use allowed
    StageConfig(generalize=True, mix=False, target="cityscapes:/data/cs", warmup_target_bn=True).validate()
    with pytest.raises(ConfigError, match=r"no target images for the cross-domain mixture: mix must be false"):
        StageConfig(generalize=True).validate()  # mix defaults to on
    StageConfig(generalize=True, mix=False).validate()
    StageConfig(mix=False).validate()  # a warm-up ablation without target stays what it was


def test_generalization_config_switches_the_mixture_and_target_bn_off():
    from diga.engine.generalization import generalization_config

    cfg = generalization_config(StageConfig(source="gta5:/data/gta5", warmup_target_bn=True))
    assert (cfg.generalize, cfg.mix, cfg.warmup_target_bn, cfg.target) == (True, False, False, None)
    with pytest.raises(ConfigError, match="target must be null"):
        generalization_config(StageConfig(source="gta5:/data/gta5", target="cityscapes:/data/cs"))
    # the authors' DG protocol: images for the BatchNorm statistics only, never for a loss or a mixture
    cfg = generalization_config(StageConfig(source="gta5:/data/gta5"), bn_images="cityscapes:/data/cs")
    assert (cfg.generalize, cfg.mix, cfg.warmup_target_bn, cfg.target, cfg.translator) == (
        True, False, True, "cityscapes:/data/cs", "none")


def test_second_view_is_the_augmented_source_without_sharpness(tiny_cfg):
    """No target batch and no translation: x_mix = beta * aug(x) + (1 - beta) * x, with the DG op set."""
    from diga.classes import get_label_space
    from diga.engine.generalization import generalization_config
    from diga.engine.source_branch import SourceBranch
    from diga.method.augment import GENERALIZATION_PHOTOMETRIC, augment_and_blend

    assert GENERALIZATION_PHOTOMETRIC.sharpness_p == 0.0  # the authors' DG script leaves sharpness out
    cfg = generalization_config(tiny_cfg.replace(target=None))
    branch = SourceBranch(cfg, get_label_space(cfg.label_space), target_statistics=True)
    assert branch.target_set is None and branch.loaders(0)[1] is None
    x = torch.rand(2, 3, 16, 32, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 19, (2, 16, 32), generator=torch.Generator().manual_seed(2))
    views = branch.views(x, y, None, torch.Generator().manual_seed(3))
    expected = augment_and_blend(x, beta=cfg.blend_beta, cfg=GENERALIZATION_PHOTOMETRIC,
                                 generator=torch.Generator().manual_seed(3))
    assert torch.equal(views["x_mix"], expected) and not torch.equal(views["x_mix"], x)


# --- the command --------------------------------------------------------------------------------
def _spy_on_reads(monkeypatch) -> list[str]:
    """Every image or label file any dataset reads, header-only size probes included."""
    from diga.data import decode

    seen: list[str] = []
    read, size = decode.read_image_file, decode.image_file_size

    def read_spy(path, *args, **kw):
        seen.append(str(path))
        return read(path, *args, **kw)

    def size_spy(path, *args, **kw):
        seen.append(str(path))
        return size(path, *args, **kw)

    monkeypatch.setattr(decode, "read_image_file", read_spy)
    monkeypatch.setattr(decode, "image_file_size", size_spy)
    return seen


def _spy_on_second_view(monkeypatch) -> list[tuple[bool, bool]]:
    """(no target batch, second view == the augmented source) for every training step."""
    from diga.engine.source_branch import SourceBranch
    from diga.method.augment import GENERALIZATION_PHOTOMETRIC, augment_and_blend

    calls: list[tuple[bool, bool]] = []
    views = SourceBranch.views

    def spy(self, x, y, t_pool, generator):
        state = generator.get_state()
        out = views(self, x, y, t_pool, generator)
        again = torch.Generator(generator.device)
        again.set_state(state)
        expected = augment_and_blend(x, beta=self.cfg.blend_beta, cfg=GENERALIZATION_PHOTOMETRIC, generator=again)
        calls.append((t_pool is None, torch.equal(out["x_mix"], expected)))
        return out

    monkeypatch.setattr(SourceBranch, "views", spy)
    return calls


def test_generalize_trains_without_target_images_and_scores_every_eval_set(cli, tiny_bench, tmp_path, monkeypatch):
    reads = _spy_on_reads(monkeypatch)
    second_views = _spy_on_second_view(monkeypatch)
    evals = [tiny_bench["val"], tiny_bench["source_val"]]  # Cityscapes-layout val, GTA5-layout val
    args = ["generalize", "--source", tiny_bench["source"], "--eval", evals[0], "--eval", evals[1],
            "--preset", "cpu", "--crop", "48", "96", "--steps", "2", "--batch-size", "2", "--workers", "0",
            "--name", "g", "--project", tmp_path]
    r = cli(*args)
    assert r.exit_code == 0, r.output

    # trained on the source alone: no target training image was ever opened, not even its size
    target_train = [_dataset_root(tiny_bench["target"]) / sub / "train" for sub in ("leftImg8bit", "gtFine")]
    assert reads and not [p for p in reads if any(Path(p).is_relative_to(t) for t in target_train)]
    assert any(Path(p).is_relative_to(_dataset_root(tiny_bench["source"])) for p in reads)
    assert second_views and all(no_target and augmented for no_target, augmented in second_views)

    run = tmp_path / "generalize/g"
    saved = StageConfig.load(run / "config.yaml")
    assert (saved.generalize, saved.mix, saved.target) == (True, False, None)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["stage"] == "generalize" and Path(summary["weights"]).exists()

    results = json.loads((run / "results.json").read_text())
    assert len(results["rows"]) == 2 and results["weights"] == summary["weights"]
    assert [row["data"] for row in results["rows"]] == evals
    for spec, row in zip(evals, results["rows"]):
        assert 0 <= row["miou"] <= 100
        assert f"{spec} {row['miou']:.2f}" in r.text  # one table row per unseen dataset

    # re-running the same command reuses the finished run (no training) and scores it again
    stamp = (run / "summary.json").stat().st_mtime_ns
    again = cli(*args)
    assert again.exit_code == 0, again.output
    assert (run / "summary.json").stat().st_mtime_ns == stamp
    changed = cli(*args, "--lr", "0.5")
    assert changed.exit_code == 1 and "lr: saved" in changed.text and "another --name" in changed.text


def test_generalize_refuses_a_config_with_target_images(cli, tiny_cfg, tmp_path):
    file = tmp_path / "adapt.yaml"
    file.write_text(tiny_cfg.to_yaml())  # an adaptation config: it names target images
    r = cli("generalize", "--config", file, "--eval", tiny_cfg.val, "--name", "g", "--project", tmp_path)
    assert r.exit_code == 1
    assert "generalize trains on the source alone: target must be null" in r.text and "Traceback" not in r.text
    assert not (tmp_path / "generalize").exists()


def test_generalize_needs_an_eval_dataset_and_a_source(cli, tiny_bench, tmp_path):
    r = cli("generalize", "--source", tiny_bench["source"], "--preset", "cpu", "--project", tmp_path)
    assert r.exit_code == 2 and "--eval" in r.text
    r = cli("generalize", "--eval", tiny_bench["val"], "--preset", "cpu", "--project", tmp_path)
    assert r.exit_code == 2 and "--source" in r.text
    r = cli("generalize", "--source", tiny_bench["source"], "--eval", "nosuchkind:/x", "--project", tmp_path)
    assert r.exit_code == 2 and "--eval" in r.text
    assert not (tmp_path / "generalize").exists()


def test_generalize_with_the_authors_bn_images_and_best_val_step(cli, tiny_bench, tmp_path, monkeypatch):
    """--bn-images: target crops reach the student's BatchNorm statistics only (no loss, no mixture);
    --val with --select best: the run hands on its best scored step and says which."""
    from diga.engine.warmup import WarmupTrainer

    passes: list[tuple[int, ...]] = []
    statistics = WarmupTrainer.target_statistics

    def spy(self, t):
        passes.append(tuple(t.shape))
        return statistics(self, t)

    monkeypatch.setattr(WarmupTrainer, "target_statistics", spy)
    second_views = _spy_on_second_view(monkeypatch)
    common = ["--source", tiny_bench["source"], "--eval", tiny_bench["val"], "--preset", "cpu", "--crop", "48", "96",
              "--steps", "4", "--batch-size", "2", "--workers", "0", "--project", tmp_path]
    r = cli("generalize", *common, "--name", "authors", "--bn-images", tiny_bench["target"],
            "--val", tiny_bench["val"], "--select", "best")
    assert r.exit_code == 0, r.output
    assert len(passes) == 4 and all(shape[0] == 2 for shape in passes)  # one pass a step, a batch of crops
    assert second_views and all(augmented for _, augmented in second_views)  # the second view: still no mixture
    run = tmp_path / "generalize/authors"
    saved = StageConfig.load(run / "config.yaml")
    assert (saved.target, saved.warmup_target_bn, saved.mix, saved.select) == (
        tiny_bench["target"], True, False, "best")
    results = json.loads((run / "results.json").read_text())
    assert results["bn_images"] == tiny_bench["target"] and results["selected"] == "best"
    assert Path(results["weights"]).name == "best.safetensors"
    # its own config.yaml runs it again (reused, finished): the target there names its BatchNorm images
    again = cli("generalize", "--config", run / "config.yaml", "--eval", tiny_bench["val"], "--name", "authors",
                "--project", tmp_path)
    assert again.exit_code == 0, again.output

    passes.clear()
    r = cli("generalize", *common, "--name", "plain")
    assert r.exit_code == 0, r.output
    assert passes == []  # without --bn-images no target image reaches the network
    plain = json.loads((tmp_path / "generalize/plain/results.json").read_text())
    assert plain["bn_images"] is None and plain["selected"] == "last"

    # the BatchNorm statistics differ: the two runs saw other images in train mode
    from diga.checkpoint import load_weights

    a, _ = load_weights(Path(results["weights"]))
    b, _ = load_weights(Path(plain["weights"]))
    means = [k for k in a if k.endswith("running_mean")]
    assert means and any(not torch.allclose(a[k], b[k]) for k in means)
    bad = cli("generalize", *common, "--name", "bad", "--bn-images", "nosuchkind:/x")
    assert bad.exit_code == 2 and "--bn-images" in bad.text
