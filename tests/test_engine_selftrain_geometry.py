"""Self-training's own geometry (docs/METHOD.md, data geometry, pseudo-labels, centroids): its own
per-dataset base sizes (the authors' self-training takes 2 + 1 crops where their warm-up takes
1 + 2), and pseudo-labels and centroids from the target images at their native size
(--pseudo-size native) instead of resized to base_size."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import typer
import yaml
from PIL import Image

from diga.engine.config import StageConfig, preset
from diga.errors import ConfigError

# The tiny benchmark's images are 64x128; these sizes are not 2:1.
SMALL, LARGE = (48, 100), (96, 200)
WARMUP_SOURCE = ((*SMALL, 1), (*LARGE, 2))
SELFTRAIN_SOURCE = ((*SMALL, 2), (*LARGE, 1))
WARMUP_TARGET = ((64, 128, 1), (*LARGE, 2))
SELFTRAIN_TARGET = ((64, 128, 2), (*LARGE, 1))
BASE = (48, 80)  # a base size whose aspect differs from the images' own 64x128


def _paths():
    return Path("w.safetensors"), Path("m.json"), Path("c.safetensors")


# --- the self-training stage's base sizes ---------------------------------------------------------

def test_selftraining_reads_its_own_lists_and_the_warmup_its_own():
    from diga.engine.pipeline import selftrain_config, warmup_config

    cfg = preset("cpu").replace(batch_size=3, source_base_sizes=WARMUP_SOURCE, target_base_sizes=WARMUP_TARGET,
                                selftrain_source_base_sizes=SELFTRAIN_SOURCE,
                                selftrain_target_base_sizes=SELFTRAIN_TARGET).validate()
    st = selftrain_config(cfg, *_paths())
    assert (st.source_base_sizes, st.target_base_sizes) == (SELFTRAIN_SOURCE, SELFTRAIN_TARGET)
    warm = warmup_config(cfg)
    assert (warm.source_base_sizes, warm.target_base_sizes) == (WARMUP_SOURCE, WARMUP_TARGET)


@pytest.mark.parametrize("unset", [None, ()])
def test_an_unset_selftraining_list_falls_back_to_the_warmups(unset):
    from diga.engine.pipeline import selftrain_config

    cfg = preset("cpu").replace(batch_size=3, source_base_sizes=WARMUP_SOURCE, target_base_sizes=WARMUP_TARGET,
                                selftrain_source_base_sizes=unset, selftrain_target_base_sizes=SELFTRAIN_TARGET)
    st = selftrain_config(cfg.validate(), *_paths())
    assert st.source_base_sizes == WARMUP_SOURCE and st.target_base_sizes == SELFTRAIN_TARGET
    # no lists at all: the whole batch from base_size in both stages, as before the lists existed
    plain = selftrain_config(preset("cpu"), *_paths())
    assert plain.source_base_sizes is None and plain.target_base_sizes is None


def test_the_selftraining_batches_are_cut_from_its_own_sizes(tiny_cfg, tmp_path, monkeypatch):
    from conftest import make_checkpoint

    from diga.engine.loaders import sized_loader
    from diga.engine.pipeline import selftrain_config
    from diga.engine.pseudolabels import compute_centroids, generate_pseudo_labels
    from diga.engine.selftrain import SelfTrainer

    init = make_checkpoint(tmp_path / "warm.safetensors")
    manifest = generate_pseudo_labels(init, tiny_cfg.target, tmp_path / "pseudo", tiny_cfg)
    centroids = compute_centroids(init, manifest, tmp_path / "centroids.safetensors", tiny_cfg)
    cfg = tiny_cfg.replace(batch_size=3, scale=(1.0, 1.0), crop_fill="pad", base_resize="stretch", translator="fda",
                           source_base_sizes=WARMUP_SOURCE, target_base_sizes=WARMUP_TARGET,
                           selftrain_source_base_sizes=SELFTRAIN_SOURCE, selftrain_target_base_sizes=SELFTRAIN_TARGET)
    trainer = SelfTrainer(selftrain_config(cfg, init, manifest, centroids), tmp_path / "selftrain")
    from conftest import record_resizes

    sizes = record_resizes(monkeypatch)
    source, _ = trainer.branch.loaders(0)
    images, _ = next(source)
    assert images.shape[0] == 3 and sizes == [SMALL, SMALL, LARGE]  # 2 + 1, not the warm-up's 1 + 2
    sizes.clear()
    images, _ = next(sized_loader(trainer.pseudo_parts, 0, salt=2))
    assert images.shape[0] == 3 and sizes == [LARGE]  # 2 crops at the images' own 64x128, then 1 from LARGE


# --- presets, validation, old config files -----------------------------------------------------------

def test_the_paper_preset_has_the_authors_selftraining_split_and_native_pseudo_labels():
    paper = preset("paper")
    assert paper.selftrain_source_base_sizes == ((720, 1280, 2), (1052, 1914, 1))  # GTA5
    assert paper.selftrain_target_base_sizes == ((512, 1024, 2), (1024, 2048, 1))  # Cityscapes
    assert paper.source_base_sizes == ((720, 1280, 1), (1052, 1914, 2))  # the warm-up keeps 1 + 2
    assert paper.pseudo_size == "native"
    for name in ("cpu", "gpu", "paper-dg", "paper-semi"):
        cfg = preset(name)
        assert cfg.selftrain_source_base_sizes is None and cfg.selftrain_target_base_sizes is None
        assert cfg.pseudo_size == "base"


def test_a_config_written_without_the_settings_reads_back_unchanged():
    for name in ("cpu", "gpu"):
        saved = yaml.safe_load(preset(name).to_yaml())
        for key in ("selftrain_source_base_sizes", "selftrain_target_base_sizes", "pseudo_size"):
            del saved[key]  # a file from before the settings
        assert StageConfig.from_yaml(yaml.safe_dump(saved, sort_keys=False)) == preset(name)
    assert StageConfig.from_yaml("selftrain_target_base_sizes: []\n").selftrain_target_base_sizes is None
    assert StageConfig.from_yaml(preset("paper").to_yaml()) == preset("paper")


def test_bad_values_are_refused_naming_the_setting_and_option():
    cfg = preset("cpu").replace(batch_size=4)
    with pytest.raises(ConfigError, match=r"selftrain_source_base_sizes \(--selftrain-source-base-size; diga "
                                          r"selftrain: --source-base-size\).*add up to batch_size 4"):
        cfg.replace(selftrain_source_base_sizes=SELFTRAIN_SOURCE).validate()
    with pytest.raises(ConfigError, match=r"selftrain_target_base_sizes \(--selftrain-target-base-size"):
        cfg.replace(selftrain_target_base_sizes=((64, 128, 5),)).validate()
    with pytest.raises(ConfigError, match="pseudo_size must be one of native, base"):
        cfg.replace(pseudo_size="full").validate()
    cfg.replace(batch_size=3, selftrain_source_base_sizes=SELFTRAIN_SOURCE).validate()  # 2 + 1 = 3: accepted


def test_the_settings_stay_out_of_the_references_cache_key():
    from diga.engine import benchmark

    assert {"selftrain_source_base_sizes", "selftrain_target_base_sizes", "pseudo_size"} <= benchmark._BOOKKEEPING
    cfg = preset("cpu").replace(batch_size=3)
    assert benchmark._key(cfg, "d") == benchmark._key(
        cfg.replace(selftrain_source_base_sizes=SELFTRAIN_SOURCE, pseudo_size="native"), "d")


# --- the options ---------------------------------------------------------------------------------------

def _commands():
    from diga.cli.main import app

    return typer.main.get_command(app).commands


def _help(command: str, option: str) -> str:
    params = [p for p in _commands()[command].params if option in (*p.opts, *p.secondary_opts)]
    assert params, f"diga {command} has no {option}"
    return params[0].help


def test_the_options_are_documented_with_what_the_authors_do():
    for command in ("selftrain", "adapt"):
        assert "authors" in _help(command, "--pseudo-size") and "1024x2048" in _help(command, "--pseudo-size")
    assert "720x1280:2 and 1052x1914:1" in _help("adapt", "--selftrain-source-base-size")
    assert "512x1024:2 and 1024x2048:1" in _help("adapt", "--selftrain-target-base-size")
    # diga selftrain runs self-training alone: its plain options are that stage's, with its sizes
    assert "720x1280:2 and 1052x1914:1" in _help("selftrain", "--source-base-size")
    assert "512x1024:2 and 1024x2048:1" in _help("selftrain", "--target-base-size")
    params = {o for p in _commands()["selftrain"].params for o in p.opts}
    assert "--selftrain-source-base-size" not in params and "--pseudo-size" not in {
        o for p in _commands()["warmup"].params for o in p.opts}


def _captured_config(cli, monkeypatch, command: str, engine: str, *args):
    """The config ``diga COMMAND`` would run (the engine function is replaced: nothing trains)."""
    from diga.engine import pipeline

    seen = []

    def stop(cfg, *rest, **kw):
        seen.append(cfg if isinstance(cfg, StageConfig) else rest[0])
        raise SystemExit(0)

    monkeypatch.setattr(pipeline, engine, stop)
    result = cli(command, *args)
    return result, (seen[0] if seen else None)


def test_adapts_options_reach_the_config(cli, tiny_bench, tmp_path, monkeypatch):
    result, cfg = _captured_config(
        cli, monkeypatch, "adapt", "adapt", "--source", tiny_bench["source"], "--target", tiny_bench["target"],
        "--preset", "cpu", "--batch-size", "3", "--project", tmp_path,
        "--source-base-size", "48x100:1", "--source-base-size", "96x200:2",
        "--selftrain-source-base-size", "48x100:2", "--selftrain-source-base-size", "96x200:1",
        "--selftrain-target-base-size", "96x200", "--pseudo-size", "native")
    assert result.exit_code == 0, result.text
    assert cfg.source_base_sizes == WARMUP_SOURCE and cfg.selftrain_source_base_sizes == SELFTRAIN_SOURCE
    assert cfg.target_base_sizes is None and cfg.selftrain_target_base_sizes == ((96, 200, 3),)  # whole batch
    assert cfg.pseudo_size == "native"
    # 'none' clears a preset's self-training list: self-training then takes the warm-up's
    result, cfg = _captured_config(
        cli, monkeypatch, "adapt", "adapt", "--source", tiny_bench["source"], "--target", tiny_bench["target"],
        "--preset", "paper", "--project", tmp_path, "--selftrain-source-base-size", "none", "--pseudo-size", "base")
    assert result.exit_code == 0, result.text
    assert cfg.selftrain_source_base_sizes is None and cfg.source_base_sizes == preset("paper").source_base_sizes
    assert cfg.selftrain_target_base_sizes == preset("paper").selftrain_target_base_sizes
    assert cfg.pseudo_size == "base"


def test_diga_selftrains_plain_options_set_the_list_selftraining_reads(cli, tiny_bench, tmp_path, monkeypatch):
    from diga.engine.pipeline import selftrain_config

    common = ("--source", tiny_bench["source"], "--target", tiny_bench["target"], "--preset", "paper",
              "--init", tmp_path / "w.safetensors", "--project", tmp_path)
    result, cfg = _captured_config(cli, monkeypatch, "selftrain", "self_train", *common)
    assert result.exit_code == 0, result.text
    st = selftrain_config(cfg, *_paths())  # the preset's self-training split
    assert st.source_base_sizes == ((720, 1280, 2), (1052, 1914, 1)) and cfg.pseudo_size == "native"
    result, cfg = _captured_config(cli, monkeypatch, "selftrain", "self_train", *common, "--batch-size", "4",
                                   "--source-base-size", "720x1280:4", "--target-base-size", "none",
                                   "--pseudo-size", "base")
    assert result.exit_code == 0, result.text
    st = selftrain_config(cfg, *_paths())
    assert st.source_base_sizes == ((720, 1280, 4),)  # the given list, not the preset's 2 + 1
    assert st.target_base_sizes is None  # none: the whole batch from base_size
    assert cfg.pseudo_size == "base"


def test_diga_warmup_ignores_the_selftraining_lists(cli, tiny_bench, tmp_path, monkeypatch):
    """The warm-up never reads them, so a preset's neither applies nor blocks another batch size."""
    result, cfg = _captured_config(
        cli, monkeypatch, "warmup", "train_stage", "--source", tiny_bench["source"], "--target", tiny_bench["target"],
        "--preset", "paper", "--batch-size", "4", "--source-base-size", "720x1280:4",
        "--target-base-size", "512x1024:4", "--project", tmp_path)
    assert result.exit_code == 0, result.text
    assert cfg.selftrain_source_base_sizes is None and cfg.selftrain_target_base_sizes is None


@pytest.mark.parametrize("args,expected", [
    (["--selftrain-source-base-size", "720by1280"], r"--selftrain-source-base-size.*expected HxW\[:N\]"),
    (["--selftrain-target-base-size", "64x128:1", "--selftrain-target-base-size", "96x200"],
     r"--selftrain-target-base-size.*HxW:N"),
    (["--batch-size", "3", "--selftrain-target-base-size", "48x100:1"],
     r"selftrain_target_base_sizes \(--selftrain-target-base-size.*add up to batch_size 3"),
    (["--preset", "paper", "--batch-size", "4", "--source-base-size", "720x1280:4", "--target-base-size",
      "512x1024:4"], r"--selftrain-source-base-size.*add up to batch_size 4"),
    (["--pseudo-size", "full"], r"pseudo_size must be one of native, base"),
])
def test_bad_options_are_errors_naming_the_option(cli, tiny_bench, tmp_path, monkeypatch, args, expected):
    if "--preset" not in args:
        args = ["--preset", "cpu", *args]
    result, cfg = _captured_config(cli, monkeypatch, "adapt", "adapt", "--source", tiny_bench["source"],
                                   "--target", tiny_bench["target"], "--project", tmp_path, *args)
    assert result.exit_code == 2 and cfg is None
    assert re.search(expected, result.text), result.text


# --- pseudo-labels and centroids at native size -------------------------------------------------------

def _recorded_inputs(monkeypatch) -> list[tuple[int, int]]:
    """The (height, width) of every input the loaded model is run on, in call order."""
    from diga.engine import pseudolabels

    sizes: list[tuple[int, int]] = []
    real = pseudolabels.load_model

    def load_model(*args, **kw):
        model, meta = real(*args, **kw)
        model.register_forward_pre_hook(lambda module, inputs: sizes.append(tuple(inputs[0].shape[-2:])))
        return model, meta

    monkeypatch.setattr(pseudolabels, "load_model", load_model)
    return sizes


def _inputs_cfg(tiny_cfg, pseudo_size: str) -> StageConfig:
    return tiny_cfg.replace(base_size=BASE, eval_scales=(1.0, 0.5), pseudo_size=pseudo_size).validate()


@pytest.fixture()
def warm(tmp_path):
    """A random-weight checkpoint whose predictions vary over an image (several classes per label)."""
    from diga.checkpoint import model_metadata, save_weights
    from diga.models import create

    torch.manual_seed(0)
    model = create("deeplabv2_light", 19)
    with torch.no_grad():  # the default init predicts one class everywhere
        model.head.classifier.weight.normal_()
        model.head.classifier.bias.zero_()
    return save_weights(tmp_path / "warm.safetensors", model.state_dict(),
                        model_metadata("deeplabv2_light", "cityscapes19", input_size=(64, 128)))


def test_native_pseudo_labels_come_from_the_native_images_and_are_stored_at_their_size(
        tiny_cfg, tmp_path, monkeypatch, warm):
    from diga.checkpoint import load_model
    from diga.classes import get_label_space
    from diga.data import build_dataset
    from diga.data.transforms import normalize
    from diga.engine.pseudolabels import generate_pseudo_labels
    from diga.evaluate import fused_logits
    from diga.method.pseudo import pseudo_labels

    sizes = _recorded_inputs(monkeypatch)
    cfg = _inputs_cfg(tiny_cfg, "native")
    manifest = generate_pseudo_labels(warm, cfg.target, tmp_path / "pseudo", cfg)
    assert set(sizes) == {(64, 128), (32, 64)}  # the native images and their half scale, never BASE
    body = json.loads(manifest.read_text())
    assert body["resized_to"] is None and len(body["items"]) == 8
    stored = np.array(Image.open(manifest.parent / "labels" / body["items"][0]["label"]))
    assert stored.shape == (64, 128)
    # the stored label is what the fused native-size prediction gives
    image, _ = build_dataset(cfg.target, split="train", label_space=get_label_space("cityscapes19"))[0]
    model, _ = load_model(warm)
    with torch.inference_mode():
        expected = pseudo_labels(fused_logits(model, normalize(image[None].float() / 255), cfg.eval_scales))[0]
    assert len(np.unique(stored)) > 1 and np.array_equal(stored, expected.numpy())


def test_base_pseudo_labels_are_unchanged(tiny_cfg, tmp_path, monkeypatch, warm):
    from diga.engine.pseudolabels import generate_pseudo_labels

    sizes = _recorded_inputs(monkeypatch)
    cfg = _inputs_cfg(tiny_cfg, "base")
    manifest = generate_pseudo_labels(warm, cfg.target, tmp_path / "pseudo", cfg)
    assert set(sizes) == {BASE, (24, 40)}
    body = json.loads(manifest.read_text())
    assert tuple(body["resized_to"]) == BASE
    assert np.array(Image.open(manifest.parent / "labels" / body["items"][0]["label"])).shape == BASE


def _reference_centroids(weights, manifest, size, scale) -> torch.Tensor:
    """The centroids computed one image at a time: images read at ``size`` (None: their own), resized
    by ``scale``, pseudo-labels at the image size."""
    from diga.checkpoint import load_model
    from diga.classes import get_label_space
    from diga.data.transforms import normalize
    from diga.engine.pseudolabels import PseudoLabelled, split_combined
    from diga.method.prototypes import CentroidAccumulator

    model, _ = load_model(weights)
    data = PseudoLabelled(manifest, get_label_space("cityscapes19"), transform=None, size=size)
    acc = CentroidAccumulator(19, model.feature_dim, min_pixels=5)
    with torch.inference_mode():
        for image, combined in (data[i] for i in range(len(data))):
            x = image[None].float() / 255
            if scale != 1:
                x = F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)
            acc.add(model(normalize(x))[1], split_combined(combined[None])[0])
    return acc.centroids()


@pytest.mark.parametrize("pseudo_size,inputs,read_at,scale", [
    ("native", (32, 64), None, 0.5),  # the native 64x128 at the smallest evaluation scale
    ("base", BASE, BASE, 1.0),  # as before
])
def test_centroids_follow_pseudo_size(tiny_cfg, tmp_path, monkeypatch, warm, pseudo_size, inputs, read_at, scale):
    from safetensors.torch import load_file

    from diga.engine.pseudolabels import compute_centroids, generate_pseudo_labels

    cfg = _inputs_cfg(tiny_cfg, pseudo_size)
    manifest = generate_pseudo_labels(warm, cfg.target, tmp_path / "pseudo", cfg)
    sizes = _recorded_inputs(monkeypatch)
    out = compute_centroids(warm, manifest, tmp_path / "centroids.safetensors", cfg)
    assert set(sizes) == {inputs}
    saved = load_file(str(out))
    assert saved["valid"].any()
    assert torch.allclose(saved["centroids"], _reference_centroids(warm, manifest, read_at, scale), atol=1e-5)


def test_native_labels_reach_selftraining_at_the_size_it_trains_from(tiny_cfg, tmp_path, warm):
    from diga.classes import get_label_space
    from diga.engine.pseudolabels import PseudoLabelled, generate_pseudo_labels

    manifest = generate_pseudo_labels(warm, tiny_cfg.target, tmp_path / "pseudo", _inputs_cfg(tiny_cfg, "native"))
    space = get_label_space("cityscapes19")
    image, combined = PseudoLabelled(manifest, space, transform=None, size=BASE)[0]  # one base size
    assert image.shape[-2:] == combined.shape == BASE
    image, combined = PseudoLabelled(manifest, space, transform=None)[0]  # per-dataset sizes: native
    assert image.shape[-2:] == combined.shape == (64, 128)


def test_native_size_batches_are_split_to_the_pixel_budget():
    from diga.engine.pseudolabels import _batches_by_shape

    items = [(i, torch.zeros(3, 64, 128, dtype=torch.uint8)) for i in range(5)]
    items.insert(2, (9, torch.zeros(3, 32, 32, dtype=torch.uint8)))
    batches = list(_batches_by_shape(items, "cpu", max_pixels=2 * 64 * 128))
    assert [keys for keys, _ in batches] == [[0, 1], [2, 3], [4], [9]]  # grouped by size, in order
    assert [tuple(x.shape) for _, x in batches][-1] == (1, 3, 32, 32)


# --- end to end ---------------------------------------------------------------------------------------

def test_a_tiny_adapt_run_with_both_options_completes(cli, tiny_bench, tmp_path):
    result = cli("adapt", "--source", tiny_bench["source"], "--target", tiny_bench["target"], "--preset", "cpu",
                 "--steps", "2", "--selftrain-steps", "2", "--rounds", "1", "--batch-size", "3", "--crop", "48", "96",
                 "--workers", "0", "--eval-every", "0", "--no-references",
                 "--source-base-size", "48x100:1", "--source-base-size", "96x200:2",
                 "--selftrain-source-base-size", "48x100:2", "--selftrain-source-base-size", "96x200:1",
                 "--selftrain-target-base-size", "64x128:2", "--selftrain-target-base-size", "96x200:1",
                 "--pseudo-size", "native", "--project", tmp_path, "--name", "geometry")
    assert result.exit_code == 0, result.text
    run = tmp_path / "adapt" / "geometry"
    warmup = StageConfig.load(run / "warmup" / "config.yaml")
    assert warmup.source_base_sizes == WARMUP_SOURCE and warmup.target_base_sizes is None
    selftrain = StageConfig.load(run / "round1" / "selftrain" / "config.yaml")
    assert selftrain.source_base_sizes == SELFTRAIN_SOURCE and selftrain.target_base_sizes == SELFTRAIN_TARGET
    assert StageConfig.load(run / "config.yaml").pseudo_size == "native"
    body = json.loads((run / "round1" / "pseudo" / "manifest.json").read_text())
    label = Image.open(run / "round1" / "pseudo" / "labels" / body["items"][0]["label"])
    assert body["resized_to"] is None and label.size == (128, 64)  # the target images' own 64x128
    assert (run / "final.safetensors").exists()
