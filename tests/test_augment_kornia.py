"""``augment_ops kornia``: the photometric ops as kornia 0.5.8 (the authors' pinned release) computes them.

The parity tests compare with kornia 0.5.8 itself (pinned in the ``dev`` extra); the others check the
semantics that tell the two op sets apart, with or without kornia installed."""

from __future__ import annotations

import dataclasses
import math
import warnings

import pytest
import torch

from diga.method import kornia_ops
from diga.method.augment import PhotometricConfig, adjust_sharpness, augment_and_blend, photometric_augment


def _kornia_058():
    kornia = pytest.importorskip("kornia", reason="kornia is not installed (the dev extra pins 0.5.8)")
    if kornia.__version__ != "0.5.8":
        pytest.skip(f"kornia {kornia.__version__} is installed; the reference is 0.5.8, the authors' release")
    return kornia


def _images(kind: str, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(6, 3, 17, 23, generator=g)
    # "authors": values like the authors' network input, (255x - mean)/128, which their code augments
    return x if kind == "unit" else 2.2 * x - 1.1


@pytest.mark.parametrize("kind", ["unit", "authors"])
def test_each_jitter_op_equals_kornia_058(kind):
    kornia = _kornia_058()
    x = _images(kind)
    g = torch.Generator().manual_seed(1)
    f = 0.6 + 0.8 * torch.rand(6, generator=g)
    shift = 0.2 * torch.rand(6, generator=g) - 0.1
    hsv = kornia.color.rgb_to_hsv(x)
    pairs = {
        "brightness": (kornia_ops.adjust_brightness(x, f), kornia.enhance.adjust_brightness(x, f - 1)),
        "contrast": (kornia_ops.adjust_contrast(x, f), kornia.enhance.adjust_contrast(x, f)),
        "saturation": (kornia_ops.adjust_saturation(x, f), kornia.enhance.adjust_saturation(x, f)),
        "hue": (kornia_ops.adjust_hue(x, shift), kornia.enhance.adjust_hue(x, 2 * math.pi * shift)),
        "rgb_to_hsv": (kornia_ops.rgb_to_hsv(x), hsv),
        "hsv_to_rgb": (kornia_ops.hsv_to_rgb(hsv), kornia.color.hsv_to_rgb(hsv)),
    }
    for name, (ours, theirs) in pairs.items():
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5, msg=lambda m: f"{name}: {m}")  # float rounding


def _kornia_reference(kornia, x: torch.Tensor, cfg: PhotometricConfig, generator: torch.Generator) -> torch.Tensor:
    """photometric_augment's draws replayed through kornia 0.5.8's own functions."""
    b = x.shape[0]
    u = torch.rand((b, 8), generator=generator)
    extra = torch.rand((4 + b,), generator=generator)
    factors = [1 + cfg.brightness * (2 * u[:, 4] - 1), 1 + cfg.contrast * (2 * u[:, 5] - 1),
               1 + cfg.saturation * (2 * u[:, 6] - 1), cfg.hue * (2 * u[:, 7] - 1)]
    ops = [lambda t: kornia.enhance.adjust_brightness(t, factors[0] - 1),
           lambda t: kornia.enhance.adjust_contrast(t, factors[1]),
           lambda t: kornia.enhance.adjust_saturation(t, factors[2]),
           lambda t: kornia.enhance.adjust_hue(t, factors[3] * 2 * math.pi)]
    jit = x
    for i in extra[:4].argsort().tolist():
        jit = ops[i](jit)

    def where(mask, new, old):
        return torch.where(mask.view(-1, 1, 1, 1), new, old)

    out = where(u[:, 0] < cfg.jitter_p, jit, x)
    out = where(u[:, 1] < cfg.grayscale_p, kornia.color.rgb_to_grayscale(out).expand_as(out), out)
    blur = kornia.filters.gaussian_blur2d(out, (cfg.blur_kernel,) * 2, (cfg.blur_sigma,) * 2, "reflect")
    out = where(u[:, 2] < cfg.blur_p, blur, out)
    sharp = kornia.enhance.sharpness(out, cfg.sharpness_factor * extra[4:])
    return where(u[:, 3] < cfg.sharpness_p, sharp, out)


@pytest.mark.parametrize("kind", ["unit", "authors"])
def test_the_whole_augmentation_equals_kornia_058_given_the_same_draws(kind):
    kornia = _kornia_058()
    # every op fires on some sample and not on others
    cfg = PhotometricConfig(ops="kornia", jitter_p=0.5, grayscale_p=0.3, blur_p=0.5, sharpness_p=0.5)
    x = torch.cat([_images(kind, seed) for seed in range(3)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for seed in range(4):
            ours = photometric_augment(x, cfg, torch.Generator().manual_seed(seed), unit_range=kind == "unit")
            theirs = _kornia_reference(kornia, x, cfg, torch.Generator().manual_seed(seed))
            if kind == "unit":
                theirs = theirs.clamp(0, 1)
            torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)


def test_kornia_brightness_adds_and_contrast_multiplies_unlike_torchvision():
    grey = torch.full((1, 3, 4, 4), 0.5)
    f = torch.tensor([1.2])
    assert torch.allclose(kornia_ops.adjust_brightness(grey, f), torch.tensor(0.7))  # 0.5 + 0.2, not 0.5 * 1.2
    assert torch.allclose(kornia_ops.adjust_contrast(grey, f), torch.tensor(0.6))  # no pull towards the mean
    from diga.method.augment import adjust_brightness, adjust_contrast

    assert torch.allclose(adjust_brightness(grey, f), torch.tensor(0.6))
    assert torch.allclose(adjust_contrast(grey, f), torch.tensor(0.5), atol=1e-3)  # a flat image: no contrast
    # on values below 0 (the authors' input) both clamp to [0, 1], as kornia's do
    assert kornia_ops.adjust_contrast(-grey, f).min() == 0


def test_kornia_ops_draw_their_order_per_call_and_a_sharpness_factor_per_image():
    """Only brightness then contrast, or contrast then brightness, can be told apart here; both
    orders occur over calls. The sharpness factors differ between the images of one call."""
    x = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    cfg = PhotometricConfig(ops="kornia", jitter_p=1.0, grayscale_p=0, blur_p=0, sharpness_p=0,
                            saturation=0.0, hue=0.0)
    seen = set()
    for seed in range(12):
        out = photometric_augment(x, cfg, torch.Generator().manual_seed(seed))
        g = torch.Generator().manual_seed(seed)
        u, extra = torch.rand((8, 8), generator=g), torch.rand((12,), generator=g)
        b, c = 1 + 0.4 * (2 * u[:, 4] - 1), 1 + 0.4 * (2 * u[:, 5] - 1)
        order = [i for i in extra[:4].argsort().tolist() if i < 2]
        seen.add(tuple(order))
        expected = x
        for i in order:
            expected = (kornia_ops.adjust_brightness(expected, b) if i == 0
                        else kornia_ops.adjust_contrast(expected, c))
        torch.testing.assert_close(out, expected)
    assert seen == {(0, 1), (1, 0)}

    sharp = PhotometricConfig(ops="kornia", jitter_p=0, grayscale_p=0, blur_p=0, sharpness_p=1.0)
    g = torch.Generator().manual_seed(3)
    torch.rand((8, 8), generator=g)
    factors = 0.5 * torch.rand((12,), generator=g)[4:]
    assert factors.min() >= 0 and factors.max() <= 0.5 and factors.std() > 0.01
    expected = torch.stack([adjust_sharpness(x[i:i + 1], float(factors[i]), clamp_smoothed=True)[0] for i in range(8)])
    torch.testing.assert_close(photometric_augment(x, sharp, torch.Generator().manual_seed(3)), expected)


def test_the_torchvision_ops_are_unchanged_by_the_kornia_draws():
    """The torchvision path draws what it always drew: its output does not depend on the kornia option
    existing, and the two op sets give different views from the same generator."""
    x = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    tv = augment_and_blend(x, cfg=PhotometricConfig(), generator=torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    photometric_augment(x, PhotometricConfig(), g)
    assert torch.equal(g.get_state(), _state_after(8 * 4, 5))  # exactly 8 numbers a sample
    ko = augment_and_blend(x, cfg=PhotometricConfig(ops="kornia"), generator=torch.Generator().manual_seed(5))
    assert not torch.allclose(tv, ko)
    with pytest.raises(ValueError, match="ops must be one of kornia, torchvision"):
        photometric_augment(x, dataclasses.replace(PhotometricConfig(), ops="pil"))


def _state_after(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    torch.rand((n,), generator=g)
    return g.get_state()


def test_presets_and_options_choose_the_ops():
    from diga.engine.config import ConfigError, StageConfig, preset
    from diga.engine.source_branch import stage_photometric

    assert {p: preset(p).augment_ops for p in ("paper", "paper-synthia", "paper-dg", "paper-semi", "cpu", "gpu")} == {
        "paper": "kornia", "paper-synthia": "kornia", "paper-dg": "kornia", "paper-semi": "kornia",
        "cpu": "torchvision", "gpu": "torchvision"}
    assert StageConfig().augment_ops == "torchvision"  # older config files keep their meaning
    assert stage_photometric(preset("paper")).ops == "kornia"
    with pytest.raises(ConfigError, match="augment_ops must be one of kornia, torchvision"):
        StageConfig(augment_ops="pil").validate()
