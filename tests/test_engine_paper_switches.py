"""The switches between the authors' code and this package's earlier choices (docs/METHOD.md):
the paper preset takes the authors' value, the cpu and gpu presets the earlier one (so the built-in
benchmark's numbers stay comparable), each is a documented option of the stage commands and a bad
value is an error that names the setting."""

from __future__ import annotations

import pytest
import torch
import typer

from diga.engine.config import preset
from diga.errors import ConfigError

# (setting, authors' value, earlier value, option, commands that take it)
SWITCHES = [
    ("loss_norm", "all", "valid", "--loss-norm", ("warmup", "selftrain", "adapt")),
    ("warmup_target_bn", True, False, "--warmup-target-bn", ("warmup", "adapt")),
    ("backbone_bn_affine", "frozen", "train", "--backbone-bn-affine", ("warmup", "selftrain", "adapt")),
    ("centroid_update", "image", "batch", "--centroid-update", ("selftrain", "adapt")),
    ("base_resize", "cover", "stretch", "--base-resize", ("warmup", "selftrain", "adapt")),
    ("crop_fill", "stretch", "pad", "--crop-fill", ("warmup", "selftrain", "adapt")),
    ("scale_mode", "axis", "iso", "--scale-mode", ("warmup", "selftrain", "adapt")),
    ("distil_resolution", "crop", "output", "--distil-resolution", ("warmup", "selftrain", "adapt")),
    ("teacher_mode", "train", "eval", "--teacher-mode", ("warmup", "selftrain", "adapt")),
    ("blend_space", "authors", "unit", "--blend-space", ("warmup", "selftrain", "adapt")),
    ("student_forward", "separate", "joint", "--student-forward", ("selftrain", "adapt")),
    ("target_mix_ignore", "paste", "keep", "--target-mix-ignore", ("selftrain", "adapt")),
    ("select_upsample", "bilinear", "nearest", "--select-upsample", ("selftrain", "adapt")),
    ("select", "auto", "last", "--select", ("warmup", "selftrain", "adapt")),
    ("mix_count", "authors", "ceil", "--mix-count", ("warmup", "selftrain", "adapt")),
    ("crop_retry", 5, 0, "--crop-retry", ("warmup", "selftrain", "adapt")),
    ("centroid_labels", "argmax", "pseudo", "--centroid-labels", ("selftrain", "adapt")),
    ("centroids_per_round", "keep", "recompute", "--centroids-per-round", ("selftrain", "adapt")),
    ("centroid_mean", "authors", "once", "--centroid-mean", ("selftrain", "adapt")),
    ("input_norm", "caffe", "imagenet", "--input-norm", ("warmup", "selftrain", "adapt")),
    ("backbone_layout", "caffe", "torchvision", "--backbone-layout", ("warmup", "adapt")),
]


@pytest.mark.parametrize("name,authors,earlier,option,commands", SWITCHES)
def test_paper_preset_follows_the_authors_and_the_others_keep_the_earlier_choice(
        name, authors, earlier, option, commands):
    assert getattr(preset("paper"), name) == authors
    assert getattr(preset("cpu"), name) == CPU_TAKES_THE_AUTHORS.get(name, earlier)
    assert getattr(preset("gpu"), name) == earlier


# The switches where the cpu preset takes the authors' choice, for the measured reason in its comment.
CPU_TAKES_THE_AUTHORS = {"warmup_target_bn": True}


@pytest.mark.parametrize("name,authors,earlier,option,commands", SWITCHES)
def test_each_switch_is_an_option_of_its_stage_commands(name, authors, earlier, option, commands):
    from diga.cli.main import app

    root = typer.main.get_command(app)
    for command in commands:
        params = [p for p in root.commands[command].params if option in (*p.opts, *p.secondary_opts)]
        assert params, f"diga {command} has no {option}"
        assert "authors" in params[0].help


@pytest.mark.parametrize("name,authors,earlier,option,commands", SWITCHES)
def test_a_bad_switch_value_names_the_setting(name, authors, earlier, option, commands):
    if isinstance(authors, str):
        with pytest.raises(ConfigError, match=f"{name} must be one of"):
            preset("cpu").replace(**{name: "bogus"}).validate()


def _one_step(cfg, run_dir):
    from diga.engine.warmup import WarmupTrainer

    trainer = WarmupTrainer(cfg.replace(steps=1, eval_every=0, vis_every=0, ckpt_every=0), run_dir)
    trainer.source, trainer.target = trainer.branch.loaders(0)
    losses = trainer.optimization_step(0)
    return trainer.model, losses


def test_warmup_target_bn_adds_one_gradient_free_target_pass_to_the_bn_statistics(tiny_cfg, tmp_path):
    off_model, off_losses = _one_step(tiny_cfg.replace(warmup_target_bn=False), tmp_path / "off")
    on_model, on_losses = _one_step(tiny_cfg.replace(warmup_target_bn=True), tmp_path / "on")
    # the step's losses and the parameters it produced are untouched: the target pass has no gradient
    assert all(torch.equal(off_losses[k], on_losses[k]) for k in off_losses)
    off_params, on_params = dict(off_model.named_parameters()), dict(on_model.named_parameters())
    assert all(torch.equal(off_params[k], on_params[k]) for k in off_params)
    # ...but every BatchNorm saw one more batch (the target crops), and its running mean moved
    bn_off = [m for m in off_model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    bn_on = [m for m in on_model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert [int(m.num_batches_tracked) for m in bn_off] == [1] * len(bn_off)
    assert [int(m.num_batches_tracked) for m in bn_on] == [2] * len(bn_on)
    assert not torch.equal(bn_off[0].running_mean, bn_on[0].running_mean)


def test_warmup_target_bn_loads_target_images_even_without_a_translator(tiny_cfg, tmp_path):
    from diga.engine.warmup import WarmupTrainer

    cfg = tiny_cfg.replace(translator="none", steps=1, eval_every=0)
    assert WarmupTrainer(cfg.replace(warmup_target_bn=True), tmp_path / "a").branch.needs_target
    assert not WarmupTrainer(cfg.replace(warmup_target_bn=False), tmp_path / "b").branch.needs_target


def test_frozen_backbone_bn_affine_stays_out_of_the_optimiser():
    from diga.engine.trainer import build_optimizer
    from diga.models import create

    cfg = preset("cpu")
    trained = create("deeplabv2_light", 3)
    n_trained = sum(len(g["params"]) for g in build_optimizer(trained, cfg, torch.device("cpu")).param_groups)
    frozen = create("deeplabv2_light", 3)
    opt = build_optimizer(frozen, cfg.replace(backbone_bn_affine="frozen"), torch.device("cpu"))
    bns = [m for m in frozen.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    listed = {id(p) for g in opt.param_groups for p in g["params"]}
    assert bns and all(not p.requires_grad and id(p) not in listed for m in bns for p in (m.weight, m.bias))
    assert n_trained - len(listed) == 2 * len(bns)  # weight and bias of each backbone BN, nothing else
    head_bn = next(m for m in frozen.head.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert head_bn.weight.requires_grad and id(head_bn.weight) in listed  # the head's norms still train
    frozen.train()(torch.rand(1, 3, 32, 32))
    assert int(bns[0].num_batches_tracked) == 1  # still batch statistics in training


def test_the_geometry_settings_reach_the_training_transform():
    from diga.engine.loaders import train_transform

    t = train_transform(preset("paper").replace(crop_fill="rescale"))
    assert (t.base_resize, t.crop_fill, t.base_size) == ("cover", "rescale", (720, 1280))
    t = train_transform(preset("gpu"))
    assert (t.base_resize, t.crop_fill, t.scale_mode) == ("stretch", "pad", "iso")
    t = train_transform(preset("paper"))
    assert (t.scale, t.scale_mode) == ((0.7, 1.0), "axis")


def test_axis_scale_mode_draws_height_and_width_factors_apart(monkeypatch):
    """The authors rescale height and width by separate U[0.7, 1] draws: the aspect ratio changes."""
    from diga.data import transforms
    from diga.data.transforms import TrainTransform

    sizes = []
    real = transforms._resize_pair
    monkeypatch.setattr(transforms, "_resize_pair", lambda img, mask, size: sizes.append(tuple(size)) or real(img, mask, size))
    image, label = torch.zeros(3, 100, 200, dtype=torch.uint8), torch.zeros(100, 200, dtype=torch.int64)
    torch.manual_seed(0)
    for mode in ("iso", "axis"):
        sizes.clear()
        t = TrainTransform(crop=(50, 50), scale=(0.7, 1.0), hflip=False, scale_mode=mode)
        for _ in range(20):
            img, lab = t(image, label)
            assert img.shape[-2:] == lab.shape[-2:] == (50, 50)
        ratios = {round(w / h, 2) for h, w in sizes}
        assert all(70 <= h <= 100 and 140 <= w <= 200 for h, w in sizes)
        assert (len(ratios) > 5) if mode == "axis" else ratios <= {1.99, 2.0, 2.01}
    with pytest.raises(ValueError, match="scale_mode must be one of"):
        TrainTransform(crop=(50, 50), scale_mode="both")


def test_distillation_at_crop_resolution_changes_the_warmup_loss(tiny_cfg, tmp_path):
    cfg = tiny_cfg.replace(warmup_target_bn=False)
    _, crop = _one_step(cfg.replace(distil_resolution="crop"), tmp_path / "crop")
    _, output = _one_step(cfg.replace(distil_resolution="output"), tmp_path / "output")
    assert torch.equal(crop["seg"], output["seg"])  # same data, same model: only the distillation differs
    assert not torch.isclose(crop["distil"], output["distil"])
