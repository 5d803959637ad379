"""The transformations behind the target conditions (see :mod:`.conditions`).

Two kinds, both pure functions of their inputs and their own generator:

* *restyles* ``(style, strength, rng) -> style`` change knobs of the :class:`StyleConfig` before
  the scene is drawn (camera geometry, haze, textures): the renderer then does the work with
  the scene's depth and instances at hand;
* *retouches* ``(image, layers, strength, rng) -> image`` act on the composited uint8 image,
  reading the instance image and the light mask of :class:`~.render.Layers` where they need
  them (outlines, glowing lights).

Light is mixed in linear RGB (a plain 2.2 gamma): darkening, casts, glows and streaks behave
like light there, not like paint. Pixel sizes are given for a 256-pixel-wide image and scale
with the width, like the renderer's.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from .render import Layers
from .style import StyleConfig, adjusted

_LUMA = np.array([0.299, 0.587, 0.114], np.float32)
_GAMMA = 2.2


# -- restyles --------------------------------------------------------------------------------
def camera_restyle(style: StyleConfig, strength: float, rng: np.random.Generator) -> StyleConfig:
    """A van- or bus-mounted camera: about 1.1 m higher, an 18 degree narrower field of view
    (each with a little per-image spread) and pitched down (the horizon 10 % of the height
    higher in the image), so the road and every object sit at other positions and scales."""
    j = rng.standard_normal(2)
    return adjusted(style,
                    cam_height=style.cam_height + strength * (1.1 + 0.15 * j[0]),
                    fov_deg=style.fov_deg - strength * (18.0 + 3.0 * j[1]),
                    horizon=style.horizon - 0.10 * strength)


_FOG_COLOUR = (0.80, 0.81, 0.82)


def fog_restyle(style: StyleConfig, strength: float, rng: np.random.Generator) -> StyleConfig:
    """Fog: the haze gets nearly opaque with distance and reaches 63 % of it at about 14 m
    instead of 70 m (a per-image density spread), a grey sky, lower contrast and no cast
    shadows (overcast)."""
    density = strength * math.exp(0.15 * rng.standard_normal())
    return adjusted(style,
                    haze=style.haze + (0.97 - style.haze) * strength,
                    haze_distance=style.haze_distance * 0.2 ** density,
                    haze_colour=_mix(style.haze_colour, _FOG_COLOUR, strength),
                    sky_top=_mix(style.sky_top, _FOG_COLOUR, strength),
                    sky_bottom=_mix(style.sky_bottom, _FOG_COLOUR, strength),
                    contrast=style.contrast * (1.0 - 0.2 * strength),
                    shadow=style.shadow * (1.0 - strength))


def night_restyle(style: StyleConfig, strength: float, rng: np.random.Generator) -> StyleConfig:
    """No sun, so no cast shadows (the darkening itself is :func:`night_retouch`)."""
    return adjusted(style, shadow=style.shadow * (1.0 - strength))


def texture_restyle(style: StyleConfig, strength: float, rng: np.random.Generator) -> StyleConfig:
    """The photo-like noise textures, blur and sensor noise give way to the clean drawn look of
    :func:`texture_retouch`."""
    keep = 1.0 - strength
    return adjusted(style, texture=style.texture * keep, blur=style.blur * keep,
                    noise=style.noise * keep)


# -- retouches -------------------------------------------------------------------------------
# log channel gains: warm, away from the source's blue skies (a cool cast of the same size made
# the target *easier* for a source-only model, see docs/BENCHMARKS.md)
_CAST = np.array([0.38, 0.02, -0.45], np.float32)


def colour_retouch(image: np.ndarray, layers: Layers, strength: float,
                   rng: np.random.Generator) -> np.ndarray:
    """A white-balance error (a camera set for daylight under warm street light): red gain 1.46,
    blue 0.64 in linear light, with a small per-image spread of each channel's gain."""
    gains = np.exp(strength * (_CAST + 0.05 * rng.standard_normal(3).astype(np.float32)))
    return _encode(_linear(image) * gains)


_NIGHT_TINT = np.array([0.85, 0.95, 1.15], np.float32)


def night_retouch(image: np.ndarray, layers: Layers, strength: float,
                  rng: np.random.Generator) -> np.ndarray:
    """Low light: about 5 % of the daylight (a per-image spread) with a blue tint, the lights
    (head/tail lights, lit traffic lights) at full brightness with a glow around them, and the
    sensor noise of a high gain."""
    H, W = layers.labels.shape
    k = W / 256.0
    lin = _linear(image)
    ambient = (1.0 - 0.95 * strength) * math.exp(0.25 * strength * rng.standard_normal())
    out = lin * (np.float32(ambient) * _NIGHT_TINT ** np.float32(strength))
    lights = layers.lights
    if lights.any():
        out[lights] += strength * (np.minimum(2.0 * lin[lights], 1.0) - out[lights])
        glow = _blur(np.where(lights[..., None], lin, 0.0).astype(np.float32), 3.0 * k)
        out += np.float32(6.0 * strength) * glow
    noisy = _encode_float(out)
    noisy += rng.standard_normal((H, W, 1), dtype=np.float32) * np.float32(8.0 * strength)
    noisy += rng.standard_normal((H, W, 3), dtype=np.float32) * np.float32(3.0 * strength)
    return _quantise(noisy)


def rain_retouch(image: np.ndarray, layers: Layers, strength: float,
                 rng: np.random.Generator) -> np.ndarray:
    """Rain: duller, darker light, bright slanted streaks (about 250 in a 128x256 image, as
    many at any size of that shape; one wind angle per image), water on the lens (a blur) and a little sensor noise."""
    H, W = layers.labels.shape
    k = W / 256.0
    lin = _linear(image)
    lin += np.float32(0.35 * strength) * ((lin @ _LUMA)[..., None] - lin)
    lin *= np.float32(1.0 - 0.3 * strength)
    alpha = _streaks(rng, H, W, strength) * np.float32(0.7 * strength)
    lin += alpha[..., None] * (np.float32(0.75) - lin)
    out = _encode_float(_blur(lin, 0.7 * strength * k))
    out += rng.standard_normal((H, W, 1), dtype=np.float32) * np.float32(3.0 * strength)
    return _quantise(out)


def texture_retouch(image: np.ndarray, layers: Layers, strength: float,
                    rng: np.random.Generator) -> np.ndarray:
    """A drawn rendering style: colours posterised to 5 levels a channel, diagonal hatching
    in the dark tones and dark outlines around every instance (car windows and wheels too)."""
    H, W = layers.labels.shape
    k = W / 256.0
    img = image.astype(np.float32)
    step = np.float32(255.0 / 4)
    img += np.float32(strength) * (np.round(img / step) * step - img)
    period = max(3, int(round(4 * k)))
    y, x = np.indices((H, W))
    slope = 1 if rng.random() < 0.5 else -1
    hatch = (x + slope * y + int(rng.integers(period))) % period == 0
    dark = np.clip((110.0 - img @ _LUMA) / 110.0, 0.0, 1.0)
    img *= (1.0 - np.float32(0.45 * strength) * dark * hatch)[..., None]
    img *= (1.0 - np.float32(0.8 * strength) * _outlines(layers.instances, k))[..., None]
    img += np.float32(0.5)
    return _quantise(img)


# -- helpers -----------------------------------------------------------------------------------
def _mix(a: tuple[float, ...], b: tuple[float, ...], t: float) -> tuple[float, float, float]:
    return tuple(float(x + t * (y - x)) for x, y in zip(a, b))


def _linear(image: np.ndarray) -> np.ndarray:
    return (image.astype(np.float32) / np.float32(255.0)) ** np.float32(_GAMMA)


def _encode_float(lin: np.ndarray) -> np.ndarray:
    """Linear RGB -> gamma-encoded floats in 0..255 (+0.5, ready for truncation)."""
    out = np.clip(lin, 0.0, 1.0) ** np.float32(1.0 / _GAMMA)
    out *= np.float32(255.0)
    out += np.float32(0.5)
    return out


def _encode(lin: np.ndarray) -> np.ndarray:
    return _quantise(_encode_float(lin))


def _quantise(img: np.ndarray) -> np.ndarray:
    return np.clip(img, 0, 255).astype(np.uint8)


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of an (H, W[, C]) float array (edges reflected)."""
    if sigma <= 0:
        return x
    r = max(1, int(math.ceil(3 * sigma)))
    t = np.arange(-r, r + 1, dtype=np.float32)
    kernel = np.exp(-0.5 * (t / np.float32(sigma)) ** 2)
    kernel /= kernel.sum()
    for axis in (0, 1):
        n = x.shape[axis]
        pad = [(0, 0)] * x.ndim
        pad[axis] = (r, r)
        xp = np.pad(x, pad, mode="reflect" if n > r else "edge")
        acc = np.zeros_like(x)
        window = [slice(None)] * x.ndim
        for i, w in enumerate(kernel):
            window[axis] = slice(i, i + n)  # a view of the padded array, not a copy per tap
            acc += w * xp[tuple(window)]
        x = acc
    return x


def _streaks(rng: np.random.Generator, H: int, W: int, strength: float) -> np.ndarray:
    """(H, W) float opacity of rain streaks: thin slanted lines, slightly soft."""
    k = W / 256.0
    n = int(rng.poisson(strength * 250.0 * H * W / (128 * 256) / k**2))  # same look at any size
    wind = rng.normal(0.0, 0.2)
    x = rng.uniform(-0.1 * W, 1.1 * W, n)
    y = rng.uniform(-0.1 * H, H, n)
    length = rng.uniform(4.0, 12.0, n) * k
    angle = wind + rng.normal(0.0, 0.04, n)
    brightness = rng.uniform(0.3, 0.8, n)
    layer = Image.new("L", (W, H), 0)
    draw = ImageDraw.Draw(layer)
    width = max(1, int(round(0.8 * k)))
    for xi, yi, li, ai, bi in zip(x, y, length, angle, brightness):
        draw.line([(xi, yi), (xi + li * math.sin(ai), yi + li * math.cos(ai))],
                  fill=int(255 * bi), width=width)
    return _blur(np.asarray(layer, np.float32) / np.float32(255.0), 0.4 * k)


def _outlines(instances: np.ndarray, k: float) -> np.ndarray:
    """(H, W) float32: 1 on pixels whose right or lower neighbour is another instance, the line
    about one pixel of a 256-pixel-wide image thick."""
    edge = np.zeros(instances.shape, bool)
    edge[:, :-1] |= instances[:, 1:] != instances[:, :-1]
    edge[:-1, :] |= instances[1:, :] != instances[:-1, :]
    for _ in range(int(round(k)) - 1):  # thicken at larger sizes
        grown = edge.copy()
        grown[:, 1:] |= edge[:, :-1]
        grown[1:, :] |= edge[:-1, :]
        edge = grown
    return edge.astype(np.float32)
