"""Per-dataset base sizes (source_base_sizes, target_base_sizes; docs/METHOD.md, data geometry): a
batch made of sub-batches resized from different base sizes, as the authors' loaders make it (GTA5
1 crop from 720x1280 + 2 from 1052x1914, Cityscapes 512x1024 + 1024x2048 in the warm-up)."""

from __future__ import annotations

import re

import pytest
import yaml

from diga.engine.config import StageConfig, preset
from diga.errors import ConfigError

# The tiny benchmark's images are 64x128 (2:1); these bases are not 2:1, so "cover" and "stretch"
# bring the images to different sizes.
SMALL, LARGE = (48, 100), (96, 200)
SOURCE = ((*SMALL, 1), (*LARGE, 2))


def _recorded_base_resizes(monkeypatch) -> list[tuple[int, int]]:
    """The sizes the training transform resizes to, in call order (with scale 1 and crop_fill pad
    the only resize is the one to the base size)."""
    from diga.data import transforms

    sizes: list[tuple[int, int]] = []
    real = transforms._resize_pair
    monkeypatch.setattr(transforms, "_resize_pair",
                        lambda img, mask, size: sizes.append(tuple(size)) or real(img, mask, size))
    return sizes


def _sized_cfg(tiny_cfg, **kw) -> StageConfig:
    settings = dict(batch_size=3, scale=(1.0, 1.0), crop_fill="pad", source_base_sizes=SOURCE,
                    target_base_sizes=((64, 128, 2), (*LARGE, 1)), translator="fda")
    return tiny_cfg.replace(**{**settings, **kw}).validate()


@pytest.mark.parametrize("base_resize,small,large", [("stretch", SMALL, LARGE), ("cover", (50, 100), (100, 200))])
def test_a_batch_holds_one_crop_from_the_first_base_size_then_two_from_the_second(
        tiny_cfg, tmp_path, monkeypatch, base_resize, small, large):
    from diga.engine.warmup import WarmupTrainer

    trainer = WarmupTrainer(_sized_cfg(tiny_cfg, base_resize=base_resize), tmp_path / "run")
    sizes = _recorded_base_resizes(monkeypatch)
    source, target = trainer.branch.loaders(0)
    images, labels = next(source)
    assert images.shape == (3, 3, 48, 96) and labels.shape == (3, 48, 96)
    # cover keeps the 2:1 aspect ratio (the smallest size covering the base), stretch does not
    assert sizes == [small, large, large]
    sizes.clear()
    images, _ = next(target)  # the target side: 2 crops at the images' own 64x128 (no resize), then 1
    assert images.shape == (3, 3, 48, 96) and sizes == [large]


def test_one_base_size_for_the_whole_batch_when_no_list_is_set(tiny_cfg, tmp_path, monkeypatch):
    from diga.engine.warmup import WarmupTrainer

    cfg = tiny_cfg.replace(batch_size=3, scale=(1.0, 1.0), crop_fill="pad", base_size=LARGE, translator="fda")
    trainer = WarmupTrainer(cfg, tmp_path / "run")
    sizes = _recorded_base_resizes(monkeypatch)
    images, _ = next(trainer.branch.loaders(0)[0])
    assert images.shape[0] == 3 and sizes == [LARGE] * 3


def test_selftraining_pseudo_labelled_crops_follow_the_target_base_sizes(tiny_cfg, tmp_path, monkeypatch):
    from conftest import make_checkpoint

    from diga.engine.loaders import sized_loader
    from diga.engine.pseudolabels import compute_centroids, generate_pseudo_labels
    from diga.engine.selftrain import SelfTrainer

    init = make_checkpoint(tmp_path / "warm.safetensors")
    manifest = generate_pseudo_labels(init, tiny_cfg.target, tmp_path / "pseudo", tiny_cfg)
    centroids = compute_centroids(init, manifest, tmp_path / "centroids.safetensors", tiny_cfg)
    cfg = _sized_cfg(tiny_cfg, base_resize="stretch", init=str(init), pseudo_labels=str(manifest),
                     centroids=str(centroids), target_base_sizes=((*SMALL, 2), (*LARGE, 1)))
    trainer = SelfTrainer(cfg, tmp_path / "selftrain")
    sizes = _recorded_base_resizes(monkeypatch)
    assert all(dataset.size is None for _, dataset in trainer.pseudo_parts)  # native images, labels resized to them
    images, combined = next(sized_loader(trainer.pseudo_parts, 0, salt=2))  # as SelfTrainer.run builds it
    assert images.shape == (3, 3, 48, 96) and combined.shape == (3, 48, 96)
    assert sizes == [SMALL, SMALL, LARGE]


def test_counts_that_do_not_make_up_the_batch_are_refused_naming_the_option():
    cfg = preset("cpu").replace(batch_size=4)
    with pytest.raises(ConfigError, match=r"source_base_sizes \(--source-base-size\).*add up to batch_size 4 "
                                          r"\(got 1 \+ 2 = 3\)"):
        cfg.replace(source_base_sizes=SOURCE).validate()
    with pytest.raises(ConfigError, match=r"target_base_sizes \(--target-base-size\).*add up to batch_size 4"):
        cfg.replace(target_base_sizes=((64, 128, 5),)).validate()
    with pytest.raises(ConfigError, match="micro-batches of accumulate"):
        cfg.replace(batch_size=3, accumulate=3, source_base_sizes=SOURCE).validate()
    cfg.replace(batch_size=3, source_base_sizes=SOURCE).validate()  # 1 + 2 = 3: accepted


def test_the_paper_preset_has_the_authors_sizes_and_the_other_presets_none():
    paper = preset("paper")
    assert paper.source_base_sizes == ((720, 1280, 1), (1052, 1914, 2))  # GTA5
    assert paper.target_base_sizes == ((512, 1024, 1), (1024, 2048, 2))  # Cityscapes
    assert paper.base_size == (720, 1280) and paper.base_resize == "cover"  # pseudo-labels, centroids
    for name in ("cpu", "gpu"):
        cfg = preset(name)
        assert cfg.source_base_sizes is None and cfg.target_base_sizes is None
        assert cfg == StageConfig().replace(**{k: getattr(cfg, k) for k in StageConfig.__dataclass_fields__
                                               if k not in ("source_base_sizes", "target_base_sizes")})


def test_a_config_written_without_the_settings_reads_back_unchanged():
    for name in ("cpu", "gpu"):
        saved = yaml.safe_load(preset(name).to_yaml())
        del saved["source_base_sizes"], saved["target_base_sizes"]  # a file from before the settings
        assert StageConfig.from_yaml(yaml.safe_dump(saved, sort_keys=False)) == preset(name)
    # an empty list means the same as none, and the lists round-trip through a file
    assert StageConfig.from_yaml("source_base_sizes: []\n").source_base_sizes is None
    assert StageConfig.from_yaml(preset("paper").to_yaml()) == preset("paper")


def _stage_config(cli, tiny_bench, tmp_path, monkeypatch, *args):
    """The config `diga warmup` would train with (the engine is replaced: nothing trains)."""
    from diga.engine import pipeline

    seen = []

    def stop(trainer, cfg, *rest, **kw):
        seen.append(cfg)
        raise SystemExit(0)

    monkeypatch.setattr(pipeline, "train_stage", stop)
    result = cli("warmup", "--source", tiny_bench["source"], "--target", tiny_bench["target"],
                 "--project", tmp_path, *args)
    return result, (seen[0] if seen else None)


def test_the_options_parse_into_the_settings(cli, tiny_bench, tmp_path, monkeypatch):
    result, cfg = _stage_config(cli, tiny_bench, tmp_path, monkeypatch, "--preset", "cpu", "--batch-size", "3",
                                "--source-base-size", "48x100:1", "--source-base-size", "96X200:2",
                                "--target-base-size", "96x200")
    assert result.exit_code == 0, result.text
    assert cfg.source_base_sizes == SOURCE
    assert cfg.target_base_sizes == ((96, 200, 3),)  # one size without :N: the whole batch
    result, cfg = _stage_config(cli, tiny_bench, tmp_path, monkeypatch, "--preset", "paper",
                                "--source-base-size", "none", "--target-base-size", "none")
    assert result.exit_code == 0, result.text
    assert cfg.source_base_sizes is None and cfg.target_base_sizes is None  # back to base_size


@pytest.mark.parametrize("args,expected", [
    (["--source-base-size", "720by1280"], r"--source-base-size.*expected HxW\[:N\]"),
    (["--target-base-size", "512x1024:1", "--target-base-size", "1024x2048"], r"--target-base-size.*HxW:N"),
    (["--batch-size", "4", "--source-base-size", "48x100:1", "--source-base-size", "96x200:2"],
     r"--source-base-size.*add up to batch_size 4"),
    (["--preset", "paper", "--batch-size", "4"], r"--source-base-size.*add up to batch_size 4"),
])
def test_bad_options_are_errors_naming_the_option_and_the_form(cli, tiny_bench, tmp_path, monkeypatch,
                                                               args, expected):
    if "--preset" not in args:
        args = ["--preset", "cpu", *args]
    result, cfg = _stage_config(cli, tiny_bench, tmp_path, monkeypatch, *args)
    assert result.exit_code == 2 and cfg is None
    assert re.search(expected, result.text), result.text


@pytest.mark.parametrize("command", ["warmup", "selftrain", "adapt", "generalize"])
def test_the_stage_commands_take_the_options_with_the_authors_sizes_in_the_help(command):
    import typer

    from diga.cli.main import app

    params = {o: p for p in typer.main.get_command(app).commands[command].params for o in p.opts}
    assert "1052x1914" in params["--source-base-size"].help
    if command != "generalize":
        assert "512x1024" in params["--target-base-size"].help


def test_supervised_training_ignores_the_lists(cli, tiny_bench, tmp_path, monkeypatch):
    """diga train reads base_size only, so a preset's lists neither apply nor block another batch size."""
    from diga.engine import benchmark, pipeline

    seen = []

    def stop(trainer, cfg, *rest, **kw):
        seen.append(cfg)
        raise SystemExit(0)

    monkeypatch.setattr(pipeline, "train_stage", stop)
    result = cli("train", "--data", tiny_bench["source"], "--preset", "paper", "--batch-size", "4",
                 "--project", tmp_path)
    assert result.exit_code == 0, result.text
    assert seen[0].source_base_sizes is None and seen[0].target_base_sizes is None
    assert {"source_base_sizes", "target_base_sizes"} <= benchmark._BOOKKEEPING  # not in the references' key


def test_a_tiny_warmup_with_two_base_sizes_runs_from_the_cli(cli, tiny_bench, tmp_path):
    result = cli("warmup", "--source", tiny_bench["source"], "--target", tiny_bench["target"], "--preset", "cpu",
                 "--steps", "2", "--batch-size", "3", "--crop", "48", "96", "--workers", "0", "--eval-every", "0",
                 "--source-base-size", "48x100:1", "--source-base-size", "96x200:2",
                 "--target-base-size", "64x128:2", "--target-base-size", "96x200:1",
                 "--project", tmp_path, "--name", "sizes")
    assert result.exit_code == 0, result.text
    run = tmp_path / "warmup" / "sizes"
    saved = StageConfig.load(run / "config.yaml")
    assert saved.source_base_sizes == SOURCE and saved.target_base_sizes == ((64, 128, 2), (96, 200, 1))
    assert (run / "weights" / "last.safetensors").exists()
