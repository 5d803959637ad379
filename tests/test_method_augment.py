"""Batched photometric augmentation."""

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from diga.method import PhotometricConfig, augment_and_blend, blend, photometric_augment
from diga.method import augment as A

OFF = dict(jitter_p=0.0, grayscale_p=0.0, blur_p=0.0, sharpness_p=0.0)


def _x(b=4, seed=0):
    return torch.rand(b, 3, 8, 10, generator=torch.Generator().manual_seed(seed))


def test_range_shape_determinism():
    x = _x(8)
    out = photometric_augment(x, generator=torch.Generator().manual_seed(1))
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    assert torch.equal(out, photometric_augment(x, generator=torch.Generator().manual_seed(1)))
    assert not torch.equal(out, photometric_augment(x, generator=torch.Generator().manual_seed(2)))


def test_all_off_is_identity():
    x = _x()
    assert torch.equal(photometric_augment(x, PhotometricConfig(**OFF)), x)


def test_brightness_factor_is_per_sample():
    cfg = PhotometricConfig(**{**OFF, "jitter_p": 1.0}, contrast=0.0, saturation=0.0, hue=0.0)
    x = 0.2 + 0.5 * _x(2)  # x * f stays below 1 for f <= 1.4
    out = photometric_augment(x, cfg, torch.Generator().manual_seed(0))
    f = out / x
    f0, f1 = f[0].flatten(), f[1].flatten()
    assert torch.allclose(f0, f0[0].expand_as(f0), atol=1e-5)  # one factor per image
    assert torch.allclose(f1, f1[0].expand_as(f1), atol=1e-5)
    assert abs(f0[0] - f1[0]) > 1e-3  # different factors for the two images
    assert 0.6 <= f0[0] <= 1.4 and 0.6 <= f1[0] <= 1.4


def test_grayscale_p1():
    out = photometric_augment(_x(), PhotometricConfig(**{**OFF, "grayscale_p": 1.0}))
    assert torch.allclose(out[:, 0], out[:, 1]) and torch.allclose(out[:, 1], out[:, 2])


def test_blur_and_sharpness_match_torchvision():
    x = _x()
    blurred = photometric_augment(x, PhotometricConfig(**{**OFF, "blur_p": 1.0}))
    assert torch.allclose(blurred, TF.gaussian_blur(x, [3, 3], [2.0, 2.0]), atol=1e-6)
    sharp = photometric_augment(x, PhotometricConfig(**{**OFF, "sharpness_p": 1.0}))
    assert torch.allclose(sharp, TF.adjust_sharpness(x, 0.5), atol=1e-6)


@pytest.mark.parametrize("f", [-0.1, 0.03, 0.1])
def test_jitter_ops_match_torchvision(f):
    x = _x(1)
    t = torch.tensor([f])
    assert torch.allclose(A.adjust_hue(x, t), TF.adjust_hue(x, f), atol=1e-5)
    assert torch.allclose(A.adjust_contrast(x, 1 + t), TF.adjust_contrast(x, 1 + f), atol=1e-6)
    assert torch.allclose(A.adjust_saturation(x, 1 + t), TF.adjust_saturation(x, 1 + f), atol=1e-6)
    assert torch.allclose(A.adjust_brightness(x, 1 + t), TF.adjust_brightness(x, 1 + f), atol=1e-6)


def test_blend_formula():
    x = _x()
    aug = photometric_augment(x, generator=torch.Generator().manual_seed(5))
    out = augment_and_blend(x, 0.4, generator=torch.Generator().manual_seed(5))
    assert torch.allclose(out, 0.4 * aug + 0.6 * x)
    assert torch.allclose(blend(torch.ones(1), torch.zeros(1), 0.3), torch.tensor([0.3]))
