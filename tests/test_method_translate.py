"""FDA and colour transfer."""

import math

import pytest
import torch

from diga.method import TRANSLATORS, build_translator, color_transfer, fda, lab_to_rgb, rgb_to_lab


def _pair(seed=0, h=8, w=8):
    g = torch.Generator().manual_seed(seed)
    src = 0.5 + 0.05 * (torch.rand(2, 3, h, w, generator=g) - 0.5)
    tgt = 0.4 + 0.1 * (torch.rand(2, 3, h, w, generator=g) - 0.5)
    return src, tgt


def _spec(x):
    return torch.fft.fftshift(torch.fft.fft2(x.double()), dim=(-2, -1))


def test_fda_swaps_low_band_amplitude_and_keeps_phase():
    src, tgt = _pair()
    out = fda(src, tgt, beta=0.2)  # b = floor(8 * 0.2) = 1 -> band rows/cols 3..5 around DC (4, 4)
    assert out.min() > 0 and out.max() < 1  # no clamping at these values
    fs, ft, fo = _spec(src), _spec(tgt), _spec(out)
    band = torch.zeros(8, 8, dtype=torch.bool)
    band[3:6, 3:6] = True
    assert torch.allclose(fo.abs()[..., band], ft.abs()[..., band], atol=1e-4)
    assert torch.allclose(fo.abs()[..., ~band], fs.abs()[..., ~band], atol=1e-4)
    nz = (fs.abs() > 1e-3) & (fo.abs() > 1e-3)
    unit_s, unit_o = fs / fs.abs(), fo / fo.abs()
    assert ((unit_s - unit_o).abs()[nz] < 1e-3).all()  # same phase everywhere
    assert not torch.allclose(out, src)


def test_fda_beta_zero_is_identity():
    src, tgt = _pair()
    assert torch.equal(fda(src, tgt, beta=0.0), src)


def test_fda_odd_size_is_real_and_close():
    src, tgt = _pair(h=7, w=9)
    out = fda(src, tgt, beta=0.15)  # b = 1
    assert out.shape == src.shape
    assert torch.allclose(_spec(out).abs()[..., 3, 4], _spec(tgt).abs()[..., 3, 4], atol=1e-4)


def test_color_transfer_rgb_matches_target_stats():
    src, tgt = _pair(1)
    out = color_transfer(src, tgt, space="rgb")
    o_std, o_mean = torch.std_mean(out, dim=(-2, -1), correction=0)
    t_std, t_mean = torch.std_mean(tgt, dim=(-2, -1), correction=0)
    assert torch.allclose(o_mean, t_mean, atol=1e-5)
    assert torch.allclose(o_std, t_std, atol=1e-3)


def test_color_transfer_lab_matches_target_lab_stats():
    src, tgt = _pair(2)
    out = color_transfer(src, tgt, space="lab")
    lo, lt = rgb_to_lab(out), rgb_to_lab(tgt)
    assert torch.allclose(lo.mean(dim=(-2, -1)), lt.mean(dim=(-2, -1)), atol=1e-2)
    assert torch.allclose(lo.std(dim=(-2, -1)), lt.std(dim=(-2, -1)), atol=1e-2)


def test_lab_round_trip_and_white():
    x = torch.rand(2, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(lab_to_rgb(rgb_to_lab(x)), x, atol=1e-4)
    white = rgb_to_lab(torch.ones(1, 3, 1, 1)).flatten()
    assert torch.allclose(white, torch.tensor([100.0, 0.0, 0.0]), atol=1e-2)


@pytest.mark.parametrize("name", [n for n in TRANSLATORS if n != "learned"])  # learned: test_engine_translator
def test_translators_pair_resize_and_determinism(name):
    src = torch.rand(3, 3, 8, 12)
    pool = torch.rand(5, 3, 6, 10)  # different batch and spatial size
    tr = build_translator(name)
    out = tr(src, pool, torch.Generator().manual_seed(3))
    assert out.shape == src.shape and out.min() >= 0 and out.max() <= 1
    assert torch.equal(out, tr(src, pool, torch.Generator().manual_seed(3)))
    if name == "none":
        assert out is src


def test_unknown_translator():
    with pytest.raises(ValueError):
        build_translator("cyclegan")
    assert math.floor(8 * 0.2) == 1
