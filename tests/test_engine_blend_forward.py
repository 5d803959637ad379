"""--blend-space and --student-forward (docs/METHOD.md, sections 3 and 11).

authors: the second views are augmented and blended on the authors' network input (BGR,
(255x - mean)/128) and re-mapped by 2y - 1; unit: on RGB in [0, 1] (cpu and gpu presets).
separate: the self-training student normalises the source views and the mixed target crops with
batch statistics of their own; joint: one forward on all of them (cpu and gpu presets).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from diga.engine.config import StageConfig, preset
from diga.method.augment import PhotometricConfig, augment_and_blend, blend, photometric_augment

OFF = dict(jitter_p=0.0, grayscale_p=0.0, blur_p=0.0, sharpness_p=0.0)
# The Caffe ImageNet means of the authors' data loaders, per channel of an RGB image.
MEAN_RGB = (122.67891434, 116.66876762, 104.00698793)


def _image(rgb: tuple[float, float, float], size: tuple[int, int] = (6, 7)) -> torch.Tensor:
    return torch.tensor(rgb).view(1, 3, 1, 1).expand(1, 3, *size).clone()


def _authors_input(value: float, channel: int) -> float:
    return (255.0 * value - MEAN_RGB[channel]) / 128.0


def _back_to_unit(z: float, channel: int) -> float:
    return (128.0 * z + MEAN_RGB[channel]) / 255.0


# --- the blend ------------------------------------------------------------------------------


@pytest.mark.parametrize("beta", [0.4, 0.3])
def test_the_authors_blend_without_an_op_is_1_plus_beta_times_x_minus_beta_on_their_input(beta):
    rgb = (0.2, 0.5, 0.9)
    out = augment_and_blend(_image(rgb), beta, PhotometricConfig(**OFF), space="authors")
    expected = [_back_to_unit((1 + beta) * _authors_input(v, c) - beta, c) for c, v in enumerate(rgb)]
    assert torch.allclose(out[0, :, 0, 0], torch.tensor(expected), atol=1e-5)
    assert out[0, 0, 0, 0] < 0  # darker and more contrasted: a dark red leaves [0, 1], not clamped
    assert torch.allclose(augment_and_blend(_image(rgb), beta, PhotometricConfig(**OFF)), _image(rgb), atol=1e-6)


def test_the_authors_grayscale_weighs_their_bgr_channels():
    rgb, beta = (0.9, 0.4, 0.1), 0.4
    out = augment_and_blend(_image(rgb), beta, PhotometricConfig(**{**OFF, "grayscale_p": 1.0}), space="authors")
    z = [_authors_input(v, c) for c, v in enumerate(rgb)]
    gray = 0.2989 * z[2] + 0.587 * z[1] + 0.114 * z[0]  # the luma weights meet B, G, R in that order
    expected = [_back_to_unit(beta * (2 * gray - 1) + (1 - beta) * z[c], c) for c in range(3)]
    assert torch.allclose(out[0, :, 0, 0], torch.tensor(expected), atol=1e-5)


def test_the_authors_sharpness_clamps_the_smoothed_image_not_the_result():
    grey, beta = 0.1, 0.4  # below every channel mean: the authors' input is negative everywhere
    out = augment_and_blend(_image((grey,) * 3), beta, PhotometricConfig(**{**OFF, "sharpness_p": 1.0}),
                            space="authors")
    for c in range(3):
        z = _authors_input(grey, c)
        inner = 0.5 * z + 0.5 * 0.0  # factor 0.5 towards the smoothed image, clamped to 0
        border = z  # border pixels keep the input
        assert out[0, c, 3, 3] == pytest.approx(_back_to_unit(beta * (2 * inner - 1) + (1 - beta) * z, c), abs=1e-5)
        assert out[0, c, 0, 0] == pytest.approx(_back_to_unit(beta * (2 * border - 1) + (1 - beta) * z, c), abs=1e-5)


def test_the_unit_blend_is_unchanged_and_the_two_spaces_draw_the_same_numbers():
    x = torch.rand(4, 3, 8, 10, generator=torch.Generator().manual_seed(0))
    unit = augment_and_blend(x, 0.3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(unit, blend(photometric_augment(x, generator=torch.Generator().manual_seed(1)), x, 0.3))
    assert torch.equal(unit, augment_and_blend(x, 0.3, generator=torch.Generator().manual_seed(1), space="unit"))
    g = torch.Generator().manual_seed(1)
    authors = augment_and_blend(x, 0.3, generator=g, space="authors")
    assert torch.isfinite(authors).all() and not torch.allclose(authors, unit, atol=1e-2)
    after = torch.Generator().manual_seed(1)
    augment_and_blend(x, 0.3, generator=after)
    assert torch.equal(g.get_state(), after.get_state())  # same draws: a run's other random numbers stay put
    with pytest.raises(ValueError, match="space must be one of authors, unit"):
        augment_and_blend(x, 0.3, space="caffe")


def _warmup_trainer(cfg, run_dir):
    from diga.engine.warmup import WarmupTrainer

    trainer = WarmupTrainer(cfg.replace(eval_every=0, vis_every=0, ckpt_every=0), run_dir)
    trainer.source, trainer.target = trainer.branch.loaders(0)
    return trainer


def test_the_source_branch_blends_in_the_configured_space(tiny_cfg, tmp_path):
    from diga.method.augment import augment_and_blend_on_authors_input

    x = torch.rand(2, 3, 48, 96, generator=torch.Generator().manual_seed(3))
    y = torch.zeros(2, 48, 96, dtype=torch.int64)
    for space in ("authors", "unit"):
        branch = _warmup_trainer(tiny_cfg.replace(mix=False, blend_space=space), tmp_path / space).branch
        view = branch.views(x, y, None, torch.Generator().manual_seed(5))["x_mix"]
        expected = (augment_and_blend_on_authors_input(x, 0.4, generator=torch.Generator().manual_seed(5))
                    if space == "authors" else augment_and_blend(x, 0.4, generator=torch.Generator().manual_seed(5)))
        assert torch.equal(view, expected), space


def test_warmup_steps_run_with_each_blend_space_and_the_distillation_sees_the_difference(tiny_cfg, tmp_path):
    losses = {}
    for space in ("unit", "authors"):
        trainer = _warmup_trainer(tiny_cfg.replace(blend_space=space, warmup_target_bn=False, steps=2),
                                  tmp_path / space)
        losses[space] = trainer.optimization_step(0)
        assert torch.isfinite(trainer.optimization_step(1)["loss"])
    assert not torch.isclose(losses["unit"]["distil"], losses["authors"]["distil"])


# --- the student's forwards in self-training ------------------------------------------------


def _bn_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)).train()


def _logits(mode: str, net: nn.Module, *views: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
    """SelfTrainer.student_outputs' logits on a stand-in trainer: its setting and a forward that records
    batch sizes."""
    from diga.engine.selftrain import SelfTrainer

    sizes = []

    def forward(x01, aux=False):
        sizes.append(x01.shape[0])
        return net(x01), x01

    trainer = SimpleNamespace(cfg=SimpleNamespace(student_forward=mode), forward=forward, uses_aux=False)
    return SelfTrainer.student_outputs(trainer, *views)[0], sizes


@torch.no_grad()
def test_separate_student_forwards_normalise_the_mixed_target_by_its_own_batch():
    g = torch.Generator().manual_seed(0)
    x, x_mix, t_mix = (torch.randn(2, 3, 8, 8, generator=g) + shift for shift in (0.0, 0.5, 3.0))
    other_x = torch.randn(2, 3, 8, 8, generator=g) - 2.0
    net = _bn_net()
    separate, sizes = _logits("separate", net, x, x_mix, t_mix)
    assert sizes == [4, 2]  # [x, x_mix], then t_mix
    assert torch.allclose(separate[4:], net(t_mix), atol=1e-6)  # t_mix alone sets its statistics
    assert torch.allclose(separate[4:], _logits("separate", net, other_x, x_mix, t_mix)[0][4:], atol=1e-6)
    assert torch.allclose(separate[:4], net(torch.cat([x, x_mix])), atol=1e-6)
    joint, sizes = _logits("joint", net, x, x_mix, t_mix)
    assert sizes == [6]
    assert torch.equal(joint, net(torch.cat([x, x_mix, t_mix])))
    assert not torch.allclose(joint[4:], _logits("joint", net, other_x, x_mix, t_mix)[0][4:], atol=1e-3)


@pytest.mark.parametrize("student_forward,blend_space", [("joint", "unit"), ("separate", "authors")])
def test_selftraining_steps_run_with_each_setting(tiny_cfg, tmp_path, student_forward, blend_space):
    from conftest import make_checkpoint

    from diga.engine.loaders import infinite_loader
    from diga.engine.pseudolabels import compute_centroids, generate_pseudo_labels
    from diga.engine.selftrain import SelfTrainer

    init = make_checkpoint(tmp_path / "warm.safetensors")
    manifest = generate_pseudo_labels(init, tiny_cfg.target, tmp_path / "pseudo", tiny_cfg)
    centroids = compute_centroids(init, manifest, tmp_path / "centroids.safetensors", tiny_cfg)
    cfg = tiny_cfg.replace(init=str(init), pseudo_labels=str(manifest), centroids=str(centroids), steps=2,
                           student_forward=student_forward, blend_space=blend_space,
                           eval_every=0, vis_every=0, ckpt_every=0)
    trainer = SelfTrainer(cfg, tmp_path / "selftrain")
    trainer.pseudo_batches = infinite_loader(trainer.pseudo_set, cfg, 0, salt=2)
    trainer.source, trainer.target = trainer.branch.loaders(0)
    for step in range(2):
        losses = trainer.optimization_step(step)
        assert all(torch.isfinite(v) for v in losses.values())
    bn = next(m for m in trainer.model.modules() if isinstance(m, nn.BatchNorm2d))
    assert int(bn.num_batches_tracked) == 2 * (2 if student_forward == "separate" else 1)


# --- presets, config files and the command line ---------------------------------------------


def test_the_paper_presets_take_the_authors_choices_and_the_others_keep_the_earlier_ones():
    assert [(preset(p).blend_space, preset(p).student_forward) for p in ("paper", "paper-semi")] == [
        ("authors", "separate")] * 2
    assert preset("paper-dg").blend_space == "authors"  # no self-training there: student_forward unused
    assert [(preset(p).blend_space, preset(p).student_forward) for p in ("cpu", "gpu")] == [("unit", "joint")] * 2
    # a config file written before the settings existed keeps its meaning
    old = "\n".join(line for line in preset("cpu").to_yaml().splitlines()
                    if not line.startswith(("blend_space:", "student_forward:")))
    cfg = StageConfig.from_yaml(old)
    assert (cfg.blend_space, cfg.student_forward) == ("unit", "joint")


@pytest.mark.parametrize("command", ["warmup", "selftrain", "adapt"])
def test_the_stage_commands_pass_the_settings_on(tiny_bench, tmp_path, monkeypatch, command):
    from conftest import stage_configs

    options = ["--blend-space", "authors"]
    if command != "warmup":  # the warm-up has one student forward a step: no such option
        options += ["--student-forward", "separate"]
    seen = stage_configs(command, tiny_bench, tmp_path, monkeypatch, *options)
    expected_forward = "joint" if command == "warmup" else "separate"
    assert [(cfg.blend_space, cfg.student_forward) for cfg in seen] == [("authors", expected_forward)]
