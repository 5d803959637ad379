"""Source -> target style translators (stage 0 of DiGA): FDA and colour transfer (training-free), or
the learned encoder/decoder that ``diga translator`` trains (``diga.models.translator``)."""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from ._rng import randint

TRANSLATORS: tuple[str, ...] = ("fda", "color", "none", "learned")
# The translators that restyle a source image after a randomly drawn target image.
PAIRED_TRANSLATORS: tuple[str, ...] = ("fda", "color")

TranslateFn = Callable[[torch.Tensor, torch.Tensor, "torch.Generator | None"], torch.Tensor]


def fda(src: torch.Tensor, tgt: torch.Tensor, beta: float = 0.01) -> torch.Tensor:
    """Fourier Domain Adaptation: src's phase with tgt's centred low-frequency amplitude band."""
    if src.shape != tgt.shape:
        raise ValueError(f"fda needs equal shapes, got {tuple(src.shape)} and {tuple(tgt.shape)}")
    if beta <= 0:
        return src  # band switched off (the original code would still swap the DC term at beta=0)
    h, w = src.shape[-2:]
    b = int(math.floor(min(h, w) * beta))
    ch, cw = h // 2, w // 2  # fftshift puts the zero frequency at (h//2, w//2)
    dtype = src.dtype
    # FFT in float32: half precision FFTs need power-of-two sizes and lose the high band.
    fs = torch.fft.fftshift(torch.fft.fft2(src.float()), dim=(-2, -1))
    ft = torch.fft.fftshift(torch.fft.fft2(tgt.float()), dim=(-2, -1))
    amp, pha = fs.abs(), fs.angle()
    # The band [c-b, c+b] (as Yang & Soatto's code) is symmetric about DC, so the swapped spectrum
    # stays conjugate-symmetric and the inverse transform real.
    amp[..., ch - b: ch + b + 1, cw - b: cw + b + 1] = ft.abs()[..., ch - b: ch + b + 1, cw - b: cw + b + 1]
    out = torch.fft.ifft2(torch.fft.ifftshift(torch.polar(amp, pha), dim=(-2, -1))).real
    return out.clamp(0.0, 1.0).to(dtype)


# sRGB (D65) <-> CIE XYZ matrices and the D65 reference white.
_RGB2XYZ = ((0.412453, 0.357580, 0.180423),
            (0.212671, 0.715160, 0.072169),
            (0.019334, 0.119193, 0.950227))
_XYZ2RGB = ((3.240479, -1.537150, -0.498535),
            (-0.969256, 1.875992, 0.041556),
            (0.055648, -0.204043, 1.057311))
_WHITE = (0.950456, 1.0, 1.088754)
_DELTA = 6.0 / 29.0


def _mat(m: tuple[tuple[float, ...], ...], x: torch.Tensor) -> torch.Tensor:
    """Apply a literal 3x3 colour matrix to (B,3,H,W) without building a host tensor."""
    c0, c1, c2 = x.unbind(1)
    return torch.stack([r[0] * c0 + r[1] * c1 + r[2] * c2 for r in m], dim=1)


def rgb_to_lab(x: torch.Tensor) -> torch.Tensor:
    """sRGB in [0,1] (B,3,H,W) -> CIE Lab (D65): L in [0,100], a/b roughly [-128,127]."""
    lin = torch.where(x > 0.04045, ((x.clamp(min=0.0) + 0.055) / 1.055) ** 2.4, x / 12.92)
    xyz = _mat(_RGB2XYZ, lin)
    xyz = torch.stack([xyz[:, i] / _WHITE[i] for i in range(3)], dim=1)
    f = torch.where(xyz > _DELTA ** 3, xyz.clamp(min=_DELTA ** 3) ** (1.0 / 3.0),
                    xyz / (3 * _DELTA ** 2) + 4.0 / 29.0)
    fx, fy, fz = f.unbind(1)
    return torch.stack((116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)), dim=1)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """CIE Lab (D65) -> sRGB, clamped to [0,1]."""
    L, a, b = lab.unbind(1)
    fy = (L + 16.0) / 116.0
    f = torch.stack((fy + a / 500.0, fy, fy - b / 200.0), dim=1)
    xyz = torch.where(f > _DELTA, f ** 3, 3 * _DELTA ** 2 * (f - 4.0 / 29.0))
    xyz = torch.stack([xyz[:, i] * _WHITE[i] for i in range(3)], dim=1)
    lin = _mat(_XYZ2RGB, xyz).clamp(0.0, 1.0)
    rgb = torch.where(lin > 0.0031308, 1.055 * lin.clamp(min=0.0031308) ** (1.0 / 2.4) - 0.055, 12.92 * lin)
    return rgb.clamp(0.0, 1.0)


def color_transfer(src: torch.Tensor, tgt: torch.Tensor, space: str = "lab",
                   eps: float = 1e-5) -> torch.Tensor:
    """Match each src image's per-channel mean/std to its paired tgt image (in Lab or RGB)."""
    if space not in ("lab", "rgb"):
        raise ValueError(f"space must be 'lab' or 'rgb', got {space!r}")
    dtype = src.dtype
    s, t = src.float(), tgt.float()
    if space == "lab":
        s, t = rgb_to_lab(s), rgb_to_lab(t)
    s_std, s_mean = torch.std_mean(s, dim=(-2, -1), keepdim=True, correction=0)
    t_std, t_mean = torch.std_mean(t, dim=(-2, -1), keepdim=True, correction=0)
    out = (s - s_mean) * (t_std / (s_std + eps)) + t_mean
    out = lab_to_rgb(out) if space == "lab" else out.clamp(0.0, 1.0)
    return out.to(dtype)


def pair_targets(src: torch.Tensor, tgt_pool: torch.Tensor,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """A random target image (with replacement) per source image, resized to src's size."""
    idx = randint(tgt_pool.shape[0], (src.shape[0],), tgt_pool, generator)
    tgt = tgt_pool.index_select(0, idx).to(device=src.device, dtype=src.dtype)
    if tgt.shape[-2:] != src.shape[-2:]:
        tgt = F.interpolate(tgt, size=src.shape[-2:], mode="bilinear", align_corners=False)
    return tgt


class Translator:
    """A callable ``(src, tgt_pool, generator) -> src in the target style``: fda and color restyle each
    image after a random image of ``tgt_pool``; learned runs the trained network (and ignores the pool)."""

    def __init__(self, name: str = "fda", **kw: object) -> None:
        """``name`` in TRANSLATORS; ``kw`` go to the underlying function (e.g. ``beta``, ``space``), or
        for ``learned`` name its weights file (``weights``: the translator.safetensors of ``diga translator``)."""
        if name not in TRANSLATORS:
            raise ValueError(f"unknown translator {name!r}; choose one of {', '.join(TRANSLATORS)}")
        self.name = name
        self.kw = kw
        self.net: torch.nn.Module | None = None
        if name == "learned":
            from ..errors import ConfigError
            from ..models.translator import load_translator

            if not kw.get("weights"):
                raise ConfigError("--translator learned needs --translator-weights FILE (the translator.safetensors "
                                  "that `diga translator` writes); `diga adapt` trains one itself when none is given")
            self.net, _ = load_translator(str(kw["weights"]))

    @property
    def needs_target(self) -> bool:
        """Whether calls need target images to draw styles from (the learned translator carries its own)."""
        return self.name in PAIRED_TRANSLATORS

    def __call__(self, src: torch.Tensor, tgt_pool: torch.Tensor,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Translate ``src`` (B,3,H,W) towards images drawn from ``tgt_pool`` (N,3,H',W')."""
        if self.name == "none":
            return src
        if self.net is not None:
            return self._learned(src)
        tgt = pair_targets(src, tgt_pool, generator)
        if self.name == "fda":
            return fda(src, tgt, **self.kw)  # type: ignore[arg-type]
        return color_transfer(src, tgt, **self.kw)  # type: ignore[arg-type]

    @torch.no_grad()
    def _learned(self, src: torch.Tensor) -> torch.Tensor:
        """The frozen network, moved to the images' device on first use; no gradient reaches it."""
        if next(self.net.parameters()).device != src.device:
            self.net = self.net.to(src.device)
        return self.net.translate(src)

    def __repr__(self) -> str:
        args = "".join(f", {k}={v!r}" for k, v in self.kw.items())
        return f"Translator({self.name!r}{args})"


def build_translator(name: str = "fda", **kw: object) -> Translator:
    """The translator called ``name`` (one of TRANSLATORS) with its keyword settings."""
    return Translator(name, **kw)
