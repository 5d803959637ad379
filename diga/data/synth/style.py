"""The two domain styles of the synthetic benchmark and the styles in between.

A :class:`StyleConfig` holds every knob of one look: camera geometry, palette, lighting and
image effects. :data:`SOURCE_STYLE` is the "game" look, :data:`TARGET_STYLE` the "camera" look;
:func:`target_style` interpolates between them with one ``gap`` strength; :func:`adjusted` changes
a few knobs within the same ranges (the target conditions use it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace


@dataclass(frozen=True)
class StyleConfig:
    """All knobs of one visual style (camera geometry, palette, lighting, effects).

    Colours are RGB floats in 0..1. Pixel-sized knobs (``blur``) refer to a 512-pixel-wide image
    and scale with the width."""

    name: str = "source"
    gap: float = 0.0                 # informational: where this style sits between source/target
    # camera geometry
    horizon: float = 0.40            # horizon row as a fraction of the image height
    pitch_jitter: float = 0.03       # +- jitter of the horizon (fraction of the height)
    yaw_jitter: float = 0.06         # +- jitter of the vanishing point (fraction of the width)
    fov_deg: float = 90.0            # horizontal field of view
    cam_height: float = 1.7          # metres above the road
    hood: float = 0.0                # ego-vehicle hood height (fraction of the height; label 255)
    # palette and lighting
    palette_mix: float = 0.0         # 0 = saturated game palette, 1 = muted photo palette
    hue_shift: float = 0.0           # degrees, rotation around the grey axis
    saturation: float = 1.0
    brightness: float = 1.0
    contrast: float = 1.0
    gamma: float = 1.0
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)
    exposure_jitter: float = 0.0     # per-image log-brightness std (auto exposure)
    colour_jitter: float = 0.04      # per-instance colour jitter (relative std)
    side_shade: float = 0.82         # brightness of faces turned sideways (facades, car sides)
    top_shade: float = 1.10          # brightness of faces turned up (roofs, wall tops)
    sky_top: tuple[float, float, float] = (0.25, 0.50, 0.92)
    sky_bottom: tuple[float, float, float] = (0.62, 0.82, 1.00)
    # textures and effects
    texture: float = 0.0             # amplitude of the per-class noise textures and paving lines
    shadow: float = 0.0              # darkening inside cast shadows (0 = no shadows)
    sun: tuple[float, float] = (0.9, -0.35)  # shadow offset on the ground per metre of height (x, z)
    haze: float = 0.0                # haze opacity at infinite distance
    haze_distance: float = 70.0      # metres: haze reaches 63% of ``haze`` here
    haze_colour: tuple[float, float, float] = (0.80, 0.82, 0.85)
    blur: float = 0.0                # Gaussian blur radius (pixels at 512 width)
    noise: float = 0.0               # sensor noise std (0..255 units)
    vignette: float = 0.0            # corner darkening


SOURCE_STYLE = StyleConfig()

# The full-strength camera style (gap = 1).
TARGET_STYLE = StyleConfig(
    name="target", gap=1.0,
    horizon=0.50, pitch_jitter=0.03, yaw_jitter=0.05, fov_deg=68.0, cam_height=1.30, hood=0.07,
    palette_mix=1.0, hue_shift=18.0, saturation=0.75, brightness=1.08, contrast=0.90, gamma=1.10,
    tint=(1.06, 1.00, 0.90), exposure_jitter=0.12, colour_jitter=0.08,
    side_shade=0.65, top_shade=1.20,
    sky_top=(0.70, 0.76, 0.82), sky_bottom=(0.88, 0.89, 0.88),
    texture=1.0, shadow=0.45, sun=(0.9, -0.35),
    haze=0.55, haze_distance=70.0, haze_colour=(0.82, 0.83, 0.84),
    blur=1.2, noise=5.0, vignette=0.35,
)

_CLAMPS = {
    "horizon": (0.15, 0.85), "pitch_jitter": (0.0, 0.2), "yaw_jitter": (0.0, 0.3),
    "fov_deg": (20.0, 140.0), "cam_height": (0.5, 5.0), "hood": (0.0, 0.3),
    "palette_mix": (0.0, 1.0), "saturation": (0.0, 3.0), "brightness": (0.05, 3.0),
    "contrast": (0.05, 3.0), "gamma": (0.2, 5.0), "exposure_jitter": (0.0, 1.0),
    "colour_jitter": (0.0, 1.0), "side_shade": (0.0, 2.0), "top_shade": (0.0, 2.0),
    "texture": (0.0, 5.0), "shadow": (0.0, 1.0), "haze": (0.0, 1.0),
    "haze_distance": (1.0, 1e6), "blur": (0.0, 20.0), "noise": (0.0, 100.0),
    "vignette": (0.0, 1.0),
}


def target_style(gap: float = 1.0, source: StyleConfig = SOURCE_STYLE,
                 target: StyleConfig = TARGET_STYLE) -> StyleConfig:
    """A camera style ``gap`` of the way from ``source`` to ``target`` (every numeric knob
    interpolated, extrapolated for gap > 1 and clamped to sane ranges)."""
    values = {}
    for f in fields(StyleConfig):
        a, b = getattr(source, f.name), getattr(target, f.name)
        if f.name == "name":
            values[f.name] = "target" if gap > 0 else source.name
        elif f.name == "gap":
            values[f.name] = float(gap)
        elif isinstance(a, tuple):
            values[f.name] = tuple(float(x + gap * (y - x)) for x, y in zip(a, b))
        else:
            values[f.name] = _clamp(f.name, float(a + gap * (b - a)))
    return StyleConfig(**values)


def adjusted(style: StyleConfig, **changes: float | tuple[float, float, float]) -> StyleConfig:
    """``style`` with some knobs changed, numeric ones clamped to the same sane ranges as
    :func:`target_style`."""
    return replace(style, **{k: v if isinstance(v, tuple) else _clamp(k, float(v))
                             for k, v in changes.items()})


def _clamp(name: str, value: float) -> float:
    lo, hi = _CLAMPS.get(name, (-math.inf, math.inf))
    return min(max(value, lo), hi)
