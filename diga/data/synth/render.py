"""Compositing: an instance image -> the styled RGB image and its trainIds (colour grade,
sky, textures, shadows, haze, contrast, vignette, blur, sensor noise)."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .layout import layout
from .materials import SIDEWALK, TEXTURE
from .scene import ZNEAR, Scene
from .style import StyleConfig


def render_scene(rng: np.random.Generator, size: tuple[int, int],
                 style: StyleConfig) -> tuple[np.ndarray, np.ndarray]:
    """Draw one random street scene in ``style``.

    Returns the (H, W, 3) uint8 image and the (H, W) uint8 Cityscapes trainIds (255 = ignore:
    the ego-vehicle hood). The layout depends only on ``rng`` (the same generator state gives the
    same layout in any style)."""
    return _compose(_draw(rng, size, style))


class Layers(NamedTuple):
    """One rendered scene and what the target conditions read besides the picture."""

    image: np.ndarray      # (H, W, 3) uint8
    labels: np.ndarray     # (H, W) uint8 trainIds
    instances: np.ndarray  # (H, W) int32 instance ids (0 = sky)
    lights: np.ndarray     # (H, W) bool: pixels of emissive materials (lamps, head/tail lights)


def render_layers(rng: np.random.Generator, size: tuple[int, int], style: StyleConfig) -> Layers:
    """:func:`render_scene` that also returns the instance image and the light mask (the same
    draws, so the same image and labels)."""
    sc = _draw(rng, size, style)
    image, labels = _compose(sc)
    instances = np.asarray(sc.im, np.int32)
    return Layers(image, labels, instances, np.isin(instances, sc.lights))


def _draw(rng: np.random.Generator, size: tuple[int, int], style: StyleConfig) -> Scene:
    sc = Scene(rng, size, style)
    layout(sc)
    return sc


def _hue_matrix(deg: float) -> np.ndarray:
    """Rotation of RGB around the grey axis (Rodrigues)."""
    t = math.radians(deg)
    c, s = math.cos(t), math.sin(t)
    k = np.array([[0, -1, 1], [1, 0, -1], [-1, 1, 0]], np.float32) / math.sqrt(3.0)
    return (c * np.eye(3) + s * k + (1 - c) * np.full((3, 3), 1 / 3)).astype(np.float32)


def _grade_linear(style: StyleConfig, exposure: float) -> np.ndarray:
    """The linear part of the style's colour grade (hue rotation, saturation, tint, brightness,
    exposure) as one 3x3 matrix acting on RGB columns."""
    m = np.eye(3, dtype=np.float64)
    if style.hue_shift:
        m = _hue_matrix(style.hue_shift).astype(np.float64) @ m
    if style.saturation != 1.0:
        luma = np.tile(np.array([0.299, 0.587, 0.114]), (3, 1))
        m = (luma + style.saturation * (np.eye(3) - luma)) @ m
    m = np.diag(np.asarray(style.tint, np.float64) * style.brightness * exposure) @ m
    return m.astype(np.float32)


def _grade_lut(style: StyleConfig) -> np.ndarray | None:
    """The non-linear part (gamma) as a uint8 lookup table, or None for gamma 1."""
    if style.gamma == 1.0:
        return None
    x = np.arange(256, dtype=np.float64) / 255.0
    return np.clip(np.round(255.0 * x ** style.gamma), 0, 255).astype(np.uint8)


def _noise_field(rng: np.random.Generator, H: int, W: int, cell: int) -> np.ndarray:
    """Smooth unit-variance-ish noise with features of ``cell`` pixels (bilinear upsampling)."""
    h, w = H // cell + 2, W // cell + 2
    small = rng.standard_normal((h, w), dtype=np.float32)
    im = Image.fromarray(small, mode="F").resize((w * cell, h * cell), Image.BILINEAR)
    return np.asarray(im)[cell // 2: cell // 2 + H, cell // 2: cell // 2 + W] * np.float32(1.6)


_VIGNETTE: dict[tuple[int, int], np.ndarray] = {}


def _vignette(H: int, W: int) -> np.ndarray:
    key = (H, W)
    if key not in _VIGNETTE:
        y = (np.arange(H, dtype=np.float32) + 0.5) / H * 2 - 1
        x = (np.arange(W, dtype=np.float32) + 0.5) / W * 2 - 1
        _VIGNETTE[key] = ((x[None, :] ** 2 + y[:, None] ** 2) / 2).astype(np.float32)
    return _VIGNETTE[key]


def _compose(sc: Scene) -> tuple[np.ndarray, np.ndarray]:
    """Instance image -> (styled RGB image, trainIds).

    The linear colour grade commutes with the multiplicative effects (texture, shadow) and with
    the blend toward the haze colour, so it is applied to the colour tables, not to pixels.
    The random draws happen in a fixed order: exposure, textures, sensor noise."""
    st, rng = sc.style, sc.rng
    exposure = float(math.exp(st.exposure_jitter * rng.standard_normal()))
    M = _grade_linear(st, exposure).T
    inst = np.asarray(sc.im)
    labels = np.asarray(sc.cls, np.uint8)[inst]
    rows = np.arange(sc.H, dtype=np.float32) + 0.5
    img = _flat_colours(sc, inst, rows, M)
    zrow = (sc.f * sc.h / np.maximum(rows - sc.yh, 0.5)).astype(np.float32)  # ground depth per row
    gain = None  # per-pixel brightness factor (texture, shadows, haze)
    if st.texture > 0:
        gain = 1.0 + np.float32(st.texture) * _texture(sc, labels, zrow)
    if st.shadow > 0 and sc.shadows:
        shade = 1.0 - np.float32(st.shadow) * _shadow_mask(sc, inst)
        gain = shade if gain is None else gain * shade
    if st.haze > 0:
        a = _haze_opacity(sc, inst, zrow)
        keep = 1.0 - a
        gain = keep if gain is None else gain * keep
        img *= gain[..., None]
        img += a[..., None] * (np.asarray(st.haze_colour, np.float32) @ M)
    elif gain is not None:
        img *= gain[..., None]
    out = _quantise(img, st)
    if st.blur > 0:
        radius = st.blur * sc.W / 512.0
        out = np.asarray(Image.fromarray(out).filter(ImageFilter.GaussianBlur(radius)))
    if st.noise > 0:
        out = _sensor_noise(rng, out, st.noise)
    return np.ascontiguousarray(out), np.ascontiguousarray(labels)


def _flat_colours(sc: Scene, inst: np.ndarray, rows: np.ndarray, M: np.ndarray) -> np.ndarray:
    """(H, W, 3) float colours: each instance's graded colour, the sky a vertical gradient."""
    st = sc.style
    table = np.clip(np.asarray(sc.col, np.float32), 0.0, 1.0) @ M
    img = table[inst]
    t = np.clip(rows / max(sc.yh, 1.0), 0.0, 1.0)[:, None]
    grad = (np.asarray(st.sky_top, np.float32) * (1 - t)
            + np.asarray(st.sky_bottom, np.float32) * t) @ M
    ys, xs = np.nonzero(inst == 0)
    img[ys, xs] = grad[ys]
    return img


def _texture(sc: Scene, labels: np.ndarray, zrow: np.ndarray) -> np.ndarray:
    """Per-class noise at three scales (clouds through the sky's), minus paving lines on near
    sidewalks drawn in ground coordinates."""
    rng, H, W = sc.rng, sc.H, sc.W
    tex = TEXTURE[0][labels] * rng.standard_normal((H, W), dtype=np.float32)
    tex += TEXTURE[1][labels] * _noise_field(rng, H, W, 4)
    tex += TEXTURE[2][labels] * _noise_field(rng, H, W, 16)
    py, px = np.nonzero(labels == SIDEWALK)
    if len(py):
        Z = zrow[py]
        X = (px.astype(np.float32) + 0.5 - sc.vx) / sc.f * Z
        X, Zs = X * 1.6, Z * 1.6
        lines = ((X - np.floor(X)) < 0.1) | ((Zs - np.floor(Zs)) < 0.1)
        tex[py, px] -= lines * np.clip(1.0 - Z / 25.0, 0.0, 1.0) * np.float32(0.25)
    return tex


def _shadow_mask(sc: Scene, inst: np.ndarray) -> np.ndarray:
    """Ground pixels inside a cast shadow (objects standing on the ground are not shadowed)."""
    mask = Image.new("L", (sc.W, sc.H), 0)
    md = ImageDraw.Draw(mask)
    for poly in sc.shadows:
        if len(poly) >= 3:
            md.polygon([sc.P(x, 0.0, max(z, ZNEAR)) for x, z in poly], fill=255)
    return (np.asarray(mask) > 0) & (inst > 0) & (inst < sc.n_ground)


def _haze_opacity(sc: Scene, inst: np.ndarray, zrow: np.ndarray) -> np.ndarray:
    """Haze opacity from the depth of each pixel: per instance (constant depth), per row
    (ground) or per column (facades parallel to the road)."""
    st = sc.style
    k = np.float32(1.0 / st.haze_distance)
    hz = np.float32(st.haze)
    dmode = np.asarray(sc.dmode, np.int8)
    dval = np.asarray(sc.dval, np.float32)
    a_inst = hz * (1.0 - np.exp(-dval * k))
    a_inst[0] = 0.0  # the sky has its own colours
    a = a_inst[inst]
    dm = dmode[inst]
    gy, gx = np.nonzero(dm == 1)
    a_row = hz * (1.0 - np.exp(-zrow * k))
    a[gy, gx] = a_row[gy]
    fy, fx = np.nonzero(dm == 2)
    if len(fy):
        zcol = sc.f / np.maximum(np.abs(np.arange(sc.W, dtype=np.float32) + 0.5 - sc.vx), 0.5)
        a[fy, fx] = hz * (1.0 - np.exp(-dval[inst[fy, fx]] * zcol[fx] * k))
    return a


def _quantise(img: np.ndarray, st: StyleConfig) -> np.ndarray:
    """Contrast around mid grey, clip, vignette and quantise in one pass (in place), then gamma."""
    H, W = img.shape[:2]
    c = np.float32(st.contrast)
    if st.contrast != 1.0:
        img *= c
        img += np.float32(0.5 * (1.0 - st.contrast))
    np.clip(img, 0.0, 1.0, out=img)
    if st.vignette > 0:
        img *= (255.0 * (1.0 - st.vignette * _vignette(H, W)))[..., None]
    else:
        img *= np.float32(255.0)
    img += np.float32(0.5)
    out = img.astype(np.uint8)
    lut = _grade_lut(st)
    return out if lut is None else lut[out]


def _sensor_noise(rng: np.random.Generator, out: np.ndarray, noise: float) -> np.ndarray:
    """Mostly luminance noise, a little chroma (on red and blue)."""
    H, W = out.shape[:2]
    n = rng.standard_normal((H, W), dtype=np.float32) * np.float32(noise)
    noisy = out.astype(np.float32)
    noisy += n[..., None]
    chroma = rng.standard_normal((H, W, 2), dtype=np.float32)
    noisy[..., ::2] += chroma * np.float32(0.35 * noise)
    noisy += np.float32(0.5)
    np.clip(noisy, 0, 255, out=noisy)
    return noisy.astype(np.uint8)
