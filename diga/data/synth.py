"""A procedural two-domain street-scene benchmark (the project's built-in GTA5 -> Cityscapes).

Every image is a perspective street view drawn with the painter's algorithm (far -> near) from a
random layout: a road with lane marks, sidewalks, buildings with windows, walls, fences, parks,
street lamps, traffic lights and signs, trees, cars, trucks, buses, trams, pedestrians and riders
on bicycles or motorcycles. Everything is first drawn as *instance ids* into one 32-bit image;
class, colour and depth of each instance are then looked up, so the labels align with the image
pixel for pixel. Labels are the 19 Cityscapes trainIds (255 = ignore, used for the ego-vehicle
hood of the camera style).

Two :class:`StyleConfig` instances describe the two domains:

* :data:`SOURCE_STYLE` ("game"): saturated game palette, flat per-object shading with a small
  per-instance colour jitter, sharp edges, a high wide-angle camera.
* :data:`TARGET_STYLE` ("camera"): a muted photo palette plus a global colour grade (hue shift,
  desaturation, tint, contrast, gamma), noise textures on road/buildings/vegetation, paving lines,
  cast shadows, haze toward the horizon, per-image exposure, blur, sensor noise, vignetting, an
  ego-vehicle hood and a lower, narrower camera (objects and road at other positions and scales).

The benchmark is meant to be learnable at small sizes (128x256 by default), so objects that
would be a pixel or two wide there are drawn bigger than life: poles are at least 3 px wide,
traffic-light heads and sign plates at least about 7 px, pedestrians about 12 px tall and
two-wheelers (with visible wheels) and their riders somewhat bigger, in pixels of a 256-pixel-wide
image (they scale with the width, so every size shows the same picture, only sharper). Small
objects stand mostly at near and middle distances; most images have a truck and a bus (a cab
with a cargo box; a long box with a row of windows) and a solid wall and a see-through fence
(pickets, a diagonal lattice or posts and rails) within the first few tens of metres.

Shapes carry the class identity in both styles (a car is always a car-shaped box with wheels and
windows, whatever its colour -- object colours are drawn from wide palettes on purpose), while
appearance shifts between them. :func:`target_style` interpolates all knobs between the two
styles with one ``gap`` strength (0 = the source style, 1 = :data:`TARGET_STYLE`).

:func:`generate_benchmark` writes the source domain in the GTA5 layout and the target domain in
the Cityscapes layout, so the ordinary dataset loaders read them.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from diga.classes import CITYSCAPES_ID_TO_TRAINID, CITYSCAPES_PALETTE, IGNORE_INDEX

__all__ = [
    "FORMAT_VERSION", "StyleConfig", "SOURCE_STYLE", "TARGET_STYLE", "target_style",
    "render_scene", "generate_benchmark", "trainid_to_labelid", "TRAINID_TO_LABELID",
]

FORMAT_VERSION = 2

(ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE, LIGHT, SIGN, VEG, TERRAIN, SKY, PERSON, RIDER, CAR,
 TRUCK, BUS, TRAIN, MOTO, BIKE) = range(19)

_ZNEAR = 0.3   # metres: ground polygons start here (well below the bottom image row)
_ZFAR = 3000.0  # metres: "infinitely" far end of road and sidewalks


# ----------------------------------------------------------------------------------------------
# Styles
# ----------------------------------------------------------------------------------------------

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
            v = float(a + gap * (b - a))
            lo, hi = _CLAMPS.get(f.name, (-math.inf, math.inf))
            values[f.name] = min(max(v, lo), hi)
    return StyleConfig(**values)


_interpolated_style = target_style  # reachable where a parameter is called target_style


# ----------------------------------------------------------------------------------------------
# Palettes: material -> (game colours, photo colours); the lists have the same length so that an
# option index picks corresponding colours and ``palette_mix`` blends between them.
# ----------------------------------------------------------------------------------------------

_MATERIALS_255: dict[str, tuple[list, list]] = {
    "road": ([(86, 84, 100), (96, 92, 104)], [(104, 101, 98), (92, 90, 90)]),
    "lane": ([(250, 250, 250), (250, 215, 40)], [(196, 194, 186), (186, 162, 96)]),
    "sidewalk": ([(196, 150, 176), (176, 160, 188)], [(198, 188, 184), (208, 196, 186)]),
    "curb": ([(226, 206, 222)], [(200, 196, 190)]),
    "building": (
        [(214, 160, 100), (178, 82, 62), (150, 152, 170), (226, 214, 168), (118, 138, 196),
         (236, 186, 140), (186, 186, 186), (160, 120, 170)],
        [(128, 118, 106), (116, 84, 74), (104, 104, 110), (158, 150, 138), (94, 98, 110),
         (148, 128, 112), (134, 134, 132), (112, 104, 106)]),
    "window": ([(40, 70, 140), (70, 120, 190), (30, 40, 80)],
               [(44, 48, 56), (74, 80, 90), (30, 32, 36)]),
    "door": ([(110, 64, 30), (40, 40, 60)], [(62, 52, 46), (42, 42, 46)]),
    "wall": ([(150, 150, 214), (196, 180, 130), (170, 120, 120)],
             [(122, 120, 114), (142, 134, 118), (120, 104, 98)]),
    "fence": ([(220, 176, 110), (110, 170, 120), (168, 168, 186)],
              [(118, 104, 90), (86, 98, 88), (108, 108, 114)]),
    "pole": ([(170, 170, 188), (120, 124, 140)], [(96, 96, 98), (72, 74, 76)]),
    "tl_box": ([(56, 56, 30), (30, 30, 30)], [(40, 42, 40), (30, 32, 32)]),
    "tl_red": ([(255, 30, 30)], [(220, 80, 70)]),
    "tl_amber": ([(255, 190, 0)], [(220, 170, 70)]),
    "tl_green": ([(40, 255, 90)], [(110, 210, 150)]),
    "tl_off": ([(70, 70, 50)], [(56, 58, 56)]),
    "sign_red": ([(235, 25, 35)], [(168, 52, 46)]),
    "sign_white": ([(250, 250, 250)], [(202, 202, 196)]),
    "sign_blue": ([(20, 90, 235)], [(46, 78, 138)]),
    "sign_yellow": ([(255, 220, 0)], [(206, 176, 64)]),
    "sign_back": ([(150, 150, 160)], [(110, 110, 112)]),
    "trunk": ([(128, 80, 36), (100, 64, 30)], [(76, 64, 52), (66, 56, 48)]),
    "leaf": ([(36, 168, 36), (76, 190, 46), (26, 132, 66), (56, 150, 30)],
             [(66, 86, 44), (84, 98, 52), (58, 78, 50), (74, 82, 40)]),
    "grass": ([(160, 220, 80), (186, 206, 96)], [(128, 128, 80), (138, 126, 84)]),
    "skin": ([(246, 204, 170), (208, 152, 108), (140, 96, 60)],
             [(196, 160, 140), (160, 122, 96), (104, 78, 62)]),
    "cloth": (
        [(220, 30, 30), (30, 60, 220), (250, 250, 250), (20, 20, 20), (30, 180, 60),
         (250, 200, 20), (150, 40, 180), (240, 120, 20), (120, 120, 120), (40, 150, 200)],
        [(130, 48, 44), (44, 56, 96), (190, 188, 182), (30, 30, 32), (58, 88, 60),
         (176, 150, 70), (88, 62, 96), (156, 98, 58), (100, 100, 100), (62, 98, 120)]),
    "pants": ([(30, 40, 120), (30, 30, 30), (110, 90, 60), (90, 90, 100)],
              [(42, 46, 66), (32, 32, 34), (86, 76, 62), (78, 78, 82)]),
    "hair": ([(40, 26, 10), (230, 190, 90), (20, 20, 20)], [(42, 34, 28), (150, 124, 80), (28, 28, 28)]),
    "car": (
        [(230, 20, 20), (20, 60, 230), (250, 250, 250), (20, 20, 24), (190, 190, 200),
         (250, 210, 0), (20, 170, 60), (250, 120, 0), (130, 30, 170), (0, 190, 210)],
        [(128, 40, 38), (44, 58, 98), (196, 196, 192), (30, 30, 32), (140, 142, 144),
         (180, 156, 70), (52, 82, 62), (164, 96, 52), (82, 62, 94), (62, 108, 120)]),
    "glass": ([(40, 60, 100), (60, 90, 140)], [(36, 40, 46), (56, 62, 70)]),
    "tyre": ([(24, 24, 24)], [(28, 28, 28)]),
    "taillight": ([(255, 20, 20)], [(180, 40, 36)]),
    "headlight": ([(255, 255, 200)], [(220, 218, 200)]),
    "truck_box": ([(240, 240, 240), (200, 60, 30), (60, 120, 200), (210, 210, 90)],
                  [(186, 186, 182), (134, 64, 50), (66, 88, 118), (156, 150, 96)]),
    "bus": ([(250, 200, 0), (220, 30, 30), (30, 100, 220), (250, 250, 250)],
            [(186, 156, 62), (146, 52, 46), (56, 80, 128), (190, 190, 186)]),
    "tram": ([(250, 236, 60), (240, 240, 240), (220, 40, 60)],
             [(190, 176, 90), (184, 184, 180), (146, 60, 66)]),
    "bike": ([(230, 30, 30), (30, 30, 30), (40, 100, 240), (240, 240, 240), (30, 200, 90)],
             [(136, 50, 46), (34, 34, 36), (54, 74, 118), (186, 186, 182), (60, 104, 76)]),
    "moto": ([(240, 20, 20), (20, 20, 20), (30, 80, 230), (250, 160, 0)],
             [(140, 46, 42), (30, 30, 32), (52, 70, 112), (170, 120, 56)]),
    "metal": ([(140, 140, 150)], [(100, 100, 102)]),
    "hood": ([(30, 30, 34)], [(38, 40, 44)]),
}
_MATERIALS = {k: (np.asarray(g, np.float32) / 255.0, np.asarray(p, np.float32) / 255.0)
              for k, (g, p) in _MATERIALS_255.items()}

# Texture amplitudes per trainId: fine (pixel) noise, medium (4 px cells), coarse (16 px cells).
_TEX = np.zeros((3, 256), np.float32)
for _c, (_f, _m, _k) in {
    ROAD: (0.07, 0.07, 0.09), SIDEWALK: (0.06, 0.05, 0.08), BUILDING: (0.05, 0.07, 0.09),
    WALL: (0.07, 0.08, 0.10), FENCE: (0.04, 0.05, 0.06), POLE: (0.03, 0.03, 0.05),
    LIGHT: (0.03, 0.03, 0.03), SIGN: (0.03, 0.03, 0.04), VEG: (0.22, 0.28, 0.12),
    TERRAIN: (0.16, 0.16, 0.14), SKY: (0.0, 0.02, 0.06), PERSON: (0.04, 0.05, 0.05),
    RIDER: (0.04, 0.05, 0.05), CAR: (0.03, 0.04, 0.08), TRUCK: (0.03, 0.04, 0.08),
    BUS: (0.03, 0.04, 0.08), TRAIN: (0.03, 0.04, 0.08), MOTO: (0.03, 0.04, 0.05),
    BIKE: (0.03, 0.03, 0.04), IGNORE_INDEX: (0.02, 0.02, 0.10),
}.items():
    _TEX[:, _c] = (_f, _m, _k)


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


def _hull(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Convex hull (monotone chain), counter-clockwise."""
    pts = sorted(set(points))
    if len(pts) <= 2:
        return pts

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower: list = []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    upper: list = []
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return lower[:-1] + upper[:-1]


_CIRCLE = [(math.cos(2 * math.pi * i / 12), math.sin(2 * math.pi * i / 12)) for i in range(12)]


# ----------------------------------------------------------------------------------------------
# The renderer
# ----------------------------------------------------------------------------------------------

class _Scene:
    """One image: camera, instance table and drawing helpers."""

    def __init__(self, rng: np.random.Generator, size: tuple[int, int], style: StyleConfig):
        self.rng = rng
        self.style = style
        self.H, self.W = int(size[0]), int(size[1])
        self.f = 0.5 * self.W / math.tan(math.radians(style.fov_deg) / 2)
        self.yh = self.H * (style.horizon + style.pitch_jitter * rng.uniform(-1, 1))
        self.vx = self.W * (0.5 + style.yaw_jitter * rng.uniform(-1, 1))
        self.h = style.cam_height
        # one pixel of a 256-pixel-wide image: minimum on-screen sizes are given in these units
        # so that the picture is the same (only sharper) at every resolution
        self.k = self.W / 256.0
        self.mix = min(max(style.palette_mix, 0.0), 1.0)
        self.jit = style.colour_jitter
        self.im = Image.new("I", (self.W, self.H), 0)
        self.dr = ImageDraw.Draw(self.im)
        # instance 0: sky (coloured by the sky gradient later)
        self.cls: list[int] = [SKY]
        self.col: list = [(0.0, 0.0, 0.0)]
        self.dmode: list[int] = [0]    # 0 constant depth, 1 ground (per row), 2 facade (per column)
        self.dval: list[float] = [0.0]
        self.shadows: list[list[tuple[float, float]]] = []  # ground polygons [(x, z), ...]
        self.n_ground = 1

    # -- instances and colours ----------------------------------------------------------------
    def colour(self, name: str, idx: int | None = None, shade: float = 1.0) -> np.ndarray:
        game, photo = _MATERIALS[name]
        if idx is None:
            idx = int(self.rng.integers(len(game)))
        c = game[idx % len(game)] * (1 - self.mix) + photo[idx % len(game)] * self.mix
        j = self.rng.standard_normal(4)
        return c * ((1 + self.jit * j[0]) * shade) * (1 + 0.5 * self.jit * j[1:])

    def inst(self, cls: int, colour, dmode: int = 0, dval: float = 0.0) -> int:
        self.cls.append(cls)
        self.col.append(colour)
        self.dmode.append(dmode)
        self.dval.append(float(dval))
        return len(self.cls) - 1

    def new(self, cls: int, name: str, z: float, idx: int | None = None, shade: float = 1.0) -> int:
        return self.inst(cls, self.colour(name, idx, shade), 0, z)

    # -- projection and drawing -----------------------------------------------------------------
    def P(self, x: float, y: float, z: float) -> tuple[float, float]:
        return (self.vx + self.f * x / z, self.yh + self.f * (self.h - y) / z)

    def poly(self, pts3, iid: int) -> None:
        f, vx, yh, h = self.f, self.vx, self.yh, self.h
        self.dr.polygon([(vx + f * x / z, yh + f * (h - y) / z) for x, y, z in pts3], fill=iid)

    def ground(self, x0: float, x1: float, z0: float, z1: float, iid: int) -> None:
        z0 = max(z0, _ZNEAR)
        if z1 <= z0:
            return
        self.poly([(x0, 0, z0), (x1, 0, z0), (x1, 0, z1), (x0, 0, z1)], iid)

    def bb(self, x: float, z: float) -> tuple[float, float, float]:
        """Billboard frame at ground point (x, z): base pixel (u, v) and pixels per metre."""
        s = self.f / z
        return self.vx + s * x, self.yh + s * self.h, s

    def bbm(self, x: float, z: float, min_s: float) -> tuple[float, float, float]:
        """Billboard frame like :meth:`bb` whose scale is at least ``min_s`` pixels per metre
        (of a 256-pixel-wide image): small objects never shrink below a learnable size."""
        u, v, s = self.bb(x, z)
        return u, v, max(s, min_s * self.k)

    def px(self, n: float) -> int:
        """``n`` pixels of a 256-pixel-wide image in this image (at least one)."""
        return max(1, int(round(n * self.k)))

    def bpoly(self, u, v, s, pts, iid: int) -> None:
        self.dr.polygon([(u + s * dx, v - s * dy) for dx, dy in pts], fill=iid)

    def bell(self, u, v, s, cx, cy, rx, ry, iid: int, ring: float = 0.0) -> None:
        x0, x1 = u + s * (cx - rx), u + s * (cx + rx)
        y0, y1 = v - s * (cy + ry), v - s * (cy - ry)
        if x1 - x0 < 0.8 or y1 - y0 < 0.8:
            if x1 - x0 > 0.3 and y1 - y0 > 0.3:
                self.dr.point([((x0 + x1) / 2, (y0 + y1) / 2)], fill=iid)
            return
        if ring > 0:
            self.dr.ellipse([x0, y0, x1, y1], outline=iid, width=max(1, int(round(s * ring))))
        else:
            self.dr.ellipse([x0, y0, x1, y1], fill=iid)

    def bbar(self, u, v, s, cx, w, y0, y1, iid: int, minw: float = 1.0) -> None:
        """A vertical bar at least ``minw`` pixels (of a 256-pixel-wide image) wide."""
        wp = max(self.px(minw), int(round(s * w)))
        xl = int(math.floor(u + s * cx - wp / 2 + 0.5))
        top = int(round(v - s * y1))
        bot = max(top, int(round(v - s * y0)) - 1)
        self.dr.rectangle([xl, top, xl + wp - 1, bot], fill=iid)

    def bline(self, u, v, s, pts, w, iid: int, minw: float = 1.0) -> None:
        self.dr.line([(u + s * dx, v - s * dy) for dx, dy in pts], fill=iid,
                     width=max(self.px(minw), int(round(s * w))))

    # -- elements on a plane parallel to the road (x = xp): walls, fences ---------------------------
    def vstrip(self, xp, z, dz, y0, y1, iid: int, minw: float = 1.0) -> None:
        """A vertical element (post, picket) between depths z and z + dz, at least ``minw``
        pixels wide."""
        f, vx, yh, h = self.f, self.vx, self.yh, self.h
        za, zb = z, z + dz
        ua, ub = vx + f * xp / za, vx + f * xp / zb
        m = minw * self.k
        if abs(ua - ub) < m:
            c = (ua + ub) / 2
            half = m / 2 if ua >= ub else -m / 2
            ua, ub = c + half, c - half
        self.dr.polygon([(ua, yh + f * (h - y0) / za), (ub, yh + f * (h - y0) / zb),
                         (ub, yh + f * (h - y1) / zb), (ua, yh + f * (h - y1) / za)], fill=iid)

    def hstrip(self, xp, y, dy, z0, z1, iid: int, minw: float = 1.0) -> None:
        """A horizontal rail from depth z0 to z1 between heights y and y + dy, at least
        ``minw`` pixels thick."""
        f, vx, yh, h = self.f, self.vx, self.yh, self.h
        m = minw * self.k
        pts_top, pts_bot = [], []
        for z in (z0, z1):
            u = vx + f * xp / z
            a, b = yh + f * (h - y - dy) / z, yh + f * (h - y) / z
            if b - a < m:
                c = (a + b) / 2
                a, b = c - m / 2, c + m / 2
            pts_top.append((u, a))
            pts_bot.append((u, b))
        self.dr.polygon(pts_top + pts_bot[::-1], fill=iid)

    def dstrip(self, xp, za, ya, zb, yb, t, iid: int, minw: float = 1.0) -> None:
        """A slanted bar in the plane from (za, ya) to (zb, yb), ``t`` metres thick (in z),
        at least ``minw`` pixels wide horizontally."""
        f, vx, yh, h = self.f, self.vx, self.yh, self.h
        m = minw * self.k / 2
        left, right = [], []
        for z, y in ((za, ya), (zb, yb)):
            u = vx + f * xp / z
            hw = max(m, 0.5 * abs(f * xp) * t / (z * z))
            v = yh + f * (h - y) / z
            left.append((u - hw, v))
            right.append((u + hw, v))
        self.dr.polygon(left + right[::-1], fill=iid)

    def shadow_box(self, x0, x1, z0, z1, height) -> None:
        if self.style.shadow <= 0:
            return
        sx, sz = self.sun
        foot = [(x0, z0), (x1, z0), (x1, z1), (x0, z1)]
        self.shadows.append(_hull(foot + [(x + sx * height, z + sz * height) for x, z in foot]))

    def shadow_blob(self, x, z, r, height) -> None:
        if self.style.shadow <= 0:
            return
        sx, sz = self.sun
        cx, cz = x + sx * height, z + sz * height
        self.shadows.append([(cx + r * c, cz + r * 0.7 * s) for c, s in _CIRCLE])

    # -- boxes --------------------------------------------------------------------------------
    def box(self, x0, x1, y0, y1, z0, z1, near: int, side: int, top: int | None = None) -> float | None:
        """Visible faces of an axis-aligned box; returns the x of the drawn side face (or None)."""
        sx = x0 if x0 > 0 else (x1 if x1 < 0 else None)
        if sx is not None and side >= 0:
            self.poly([(sx, y0, z0), (sx, y0, z1), (sx, y1, z1), (sx, y1, z0)], side)
        if top is not None and y1 < self.h:
            self.poly([(x0, y1, z0), (x1, y1, z0), (x1, y1, z1), (x0, y1, z1)], top)
        self.poly([(x0, y0, z0), (x1, y0, z0), (x1, y1, z0), (x0, y1, z0)], near)
        return sx

    def wheel_side(self, sx, yc, zc, r, iid) -> None:
        self.poly([(sx, yc + r * s, zc + r * c) for c, s in _CIRCLE], iid)


# ----------------------------------------------------------------------------------------------
# Objects
# ----------------------------------------------------------------------------------------------

def _building(sc: _Scene, sgn: int, xf: float, z0: float, z1: float, height: float, depth: float,
              windows: bool = True) -> None:
    """A building whose facade (facing the road) is the plane x = xf."""
    rng = sc.rng
    z0 = max(z0, 0.5)
    if z1 <= z0 + 0.5:
        return
    ci = int(rng.integers(len(_MATERIALS["building"][0])))
    base = sc.colour("building", ci)
    xo = xf + sgn * depth
    x0, x1 = min(xf, xo), max(xf, xo)
    facade = sc.inst(BUILDING, base * sc.style.side_shade, 2, abs(xf))
    front = sc.inst(BUILDING, base, 0, z0)
    sc.box(x0, x1, 0.0, height, z0, z1, front, facade)
    sc.shadow_box(x0, x1, z0, z1, height)
    # cornice
    if rng.random() < 0.5:
        corn = sc.inst(BUILDING, base * sc.style.side_shade * 0.8, 2, abs(xf))
        sc.poly([(xf, height - 0.6, z0), (xf, height - 0.6, z1), (xf, height, z1),
                 (xf, height, z0)], corn)
    if not windows:
        return
    win = sc.inst(BUILDING, sc.colour("window"), 2, abs(xf))
    floor_h = rng.uniform(2.9, 3.6)
    ww = rng.uniform(0.8, 1.6)
    spacing = ww + rng.uniform(0.8, 2.2)
    wh = floor_h * rng.uniform(0.4, 0.6)
    n_floors = int((height - 1.0) / floor_h)
    n_cols = int((z1 - z0 - 1.0) / spacing)
    if n_floors < 1 or n_cols < 1:
        return
    margin = (z1 - z0 - n_cols * spacing) / 2 + (spacing - ww) / 2
    zs = z0 + margin + spacing * np.arange(n_cols)
    zs = zs[zs > 1.0]
    if len(zs) == 0:
        return
    f, vx, yh, h = sc.f, sc.vx, sc.yh, sc.h
    ua = vx + f * xf / zs
    ub = vx + f * xf / (zs + ww)
    keep = np.abs(ua - ub) >= 0.8
    zs, ua, ub = zs[keep], ua[keep], ub[keep]
    shop = rng.random() < 0.5
    first = 1 if shop else 0
    for fl in range(first, n_floors):
        ya = fl * floor_h + (floor_h - wh) * 0.6
        yb = ya + wh
        for za, u0, u1 in zip(zs.tolist(), ua.tolist(), ub.tolist()):
            zb = za + ww
            sc.dr.polygon([(u0, yh + f * (h - ya) / za), (u1, yh + f * (h - ya) / zb),
                           (u1, yh + f * (h - yb) / zb), (u0, yh + f * (h - yb) / za)], fill=win)
    if shop:  # a ground-floor shop window band and a door
        zs0, zs1 = max(z0 + 1.0, 1.0), z1 - 1.0
        if zs1 > zs0:
            shopw = sc.inst(BUILDING, sc.colour("window", 1), 2, abs(xf))
            sc.poly([(xf, 0.4, zs0), (xf, 0.4, zs1), (xf, 2.6, zs1), (xf, 2.6, zs0)], shopw)
            zd = zs0 + rng.uniform(0, max(zs1 - zs0 - 1.5, 0.01))
            door = sc.inst(BUILDING, sc.colour("door"), 2, abs(xf))
            sc.poly([(xf, 0.0, zd), (xf, 0.0, zd + 1.3), (xf, 2.3, zd + 1.3), (xf, 2.3, zd)], door)


def _far_box(sc: _Scene, x0, x1, z, height, cls) -> None:
    if cls == BUILDING:
        c = sc.colour("building")
        iid = sc.inst(BUILDING, c, 0, z)
        sc.poly([(x0, 0, z), (x1, 0, z), (x1, height, z), (x0, height, z)], iid)
    else:
        # a row of tree crowns
        u, v, s = sc.bb((x0 + x1) / 2, z)
        iid = sc.inst(VEG, sc.colour("leaf"), 0, z)
        half = (x1 - x0) / 2
        n = max(2, int(half / 3))
        for i in range(n):
            cx = -half + (i + 0.5) * 2 * half / n
            r = height * sc.rng.uniform(0.35, 0.55)
            sc.bell(u, v, s, cx, height - r, 2 * half / n * 0.8, r, iid)
        sc.bpoly(u, v, s, [(-half, 0), (half, 0), (half, height * 0.5), (-half, height * 0.5)], iid)


def _wall(sc: _Scene, sgn, xp, z0, z1, height) -> None:
    """A solid wall (a box 0.35 m thick) along the property line."""
    c = sc.colour("wall")
    z0 = max(z0, 1.0)
    if z1 <= z0:
        return
    x0, x1 = sorted((xp, xp + sgn * 0.35))
    near = sc.inst(WALL, c, 0, z0)
    side = sc.inst(WALL, c * sc.style.side_shade, 2, abs(xp))
    top = sc.inst(WALL, c * sc.style.top_shade * 0.9, 2, abs(xp))
    sc.box(x0, x1, 0.0, height, z0, z1, near, side, top)
    sc.shadow_box(x0, x1, z0, z1, height)
    if sc.rng.random() < 0.6:  # coping stripe
        cop = sc.inst(WALL, c * 0.7, 2, abs(xp))
        sc.hstrip(xp, height - 0.2, 0.2, z0, z1, cop, 2.0)
    if sc.rng.random() < 0.4:  # plinth
        pl = sc.inst(WALL, c * 0.82, 2, abs(xp))
        sc.hstrip(xp, 0.0, 0.3, z0, z1, pl, 1.0)


def _fence(sc: _Scene, sgn, xp, z0, z1, height) -> None:
    """A see-through fence along the property line: posts, rails and an infill of pickets, a
    diagonal lattice or more rails (the background shows through the gaps)."""
    rng = sc.rng
    c = sc.colour("fence")
    iid = sc.inst(FENCE, c, 2, abs(xp))
    dark = sc.inst(FENCE, c * sc.style.side_shade, 2, abs(xp))
    kind = int(rng.choice(3, p=(0.35, 0.35, 0.3)))  # 0 pickets, 1 lattice, 2 rails
    step = rng.uniform(1.8, 2.8)
    pstep = rng.uniform(0.26, 0.36)
    period = rng.uniform(0.5, 0.75)
    n_rails = int(rng.integers(4, 7))
    z0 = max(z0, 1.0)
    if z1 <= z0:
        return
    f, k = sc.f, sc.k
    ax = max(abs(xp), 0.1)

    def gap_px(z, dz):  # on-screen spacing of two elements dz apart at depth z
        return f * ax * dz / (z * (z + dz))

    if kind == 0:  # pickets
        z = z0
        while z < z1 and gap_px(z, pstep) >= 2.0 * k:
            sc.vstrip(xp, z, 0.13, 0.08, height - 0.08, iid)
            z += pstep
        rails = ((0.2, 0.14), (height - 0.35, 0.14))
    elif kind == 1:  # diagonal lattice
        ya, yb = 0.12, height - 0.12
        span = yb - ya
        z = z0 - span
        while z < z1 and gap_px(max(z, z0), period) >= 2.5 * k:
            for rising in (True, False):
                # the bar runs from depth z (height ya or yb) to z + span (height yb or ya)
                za, zb = max(z, z0), min(z + span, z1)
                if zb > za:
                    ta, tb = (za - z) / span, (zb - z) / span
                    y_a = ya + span * (ta if rising else 1 - ta)
                    y_b = ya + span * (tb if rising else 1 - tb)
                    sc.dstrip(xp, za, y_a, zb, y_b, 0.13, iid)
            z += period
        rails = ((0.0, 0.14), (height - 0.14, 0.14))
    else:  # posts and rails
        rails = tuple((float(y), 0.15) for y in np.linspace(0.2, height - 0.15, n_rails))
    for y, t in rails:
        sc.hstrip(xp, y, t, z0, z1, iid, 2.0 if kind != 2 else 1.5)
    z = z0
    while z < z1 and gap_px(z, step) >= 3.0 * k:  # posts
        sc.vstrip(xp, z, 0.15, 0.0, height + 0.1, dark, 2.0)
        z += step


def _railing(sc: _Scene, xp, za, zb, height, iid, dark) -> None:
    """One 2-3 m piece of a pedestrian guard rail on the curb (drawn piecewise so that the
    painter's order against the street objects stays right): a post, two rails, balusters."""
    za = max(za, 1.0)
    if zb <= za:
        return
    f, k = sc.f, sc.k
    ax = max(abs(xp), 0.1)
    z = za + 0.15
    while z < zb - 0.05 and f * ax * 0.22 / (z * (z + 0.22)) >= 2.0 * k:
        sc.vstrip(xp, z, 0.05, 0.15, height, iid)
        z += 0.22
    sc.hstrip(xp, height - 0.1, 0.1, za, zb, iid, 2.0)
    sc.hstrip(xp, 0.15, 0.08, za, zb, iid, 1.0)
    sc.vstrip(xp, za, 0.1, 0.0, height + 0.05, dark, 2.0)


def _hedge(sc: _Scene, sgn, xp, z0, z1, height) -> None:
    z0 = max(z0, 1.0)
    if z1 <= z0:
        return
    c = sc.colour("leaf")
    side = sc.inst(VEG, c * 0.9, 2, abs(xp))
    near = sc.inst(VEG, c, 0, z0)
    n = max(2, int((z1 - z0) / 1.5))
    zs = np.linspace(z0, z1, n + 1)
    tops = height + 0.25 * sc.rng.standard_normal(n + 1)
    sc.poly([(xp, 0, z0)] + [(xp, float(t), float(z)) for z, t in zip(zs, tops)] + [(xp, 0, z1)], side)
    xo = xp + sgn * 0.8
    sc.poly([(xp, 0, z0), (xo, 0, z0), (xo, float(tops[0]), z0), (xp, float(tops[0]), z0)], near)


def _tree(sc: _Scene, x, z, scale=1.0, conifer=False) -> None:
    rng = sc.rng
    u, v, s = sc.bb(x, z)
    trunk = sc.new(VEG, "trunk", z)
    th = rng.uniform(1.6, 3.0) * scale
    sc.bbar(u, v, s, 0.0, rng.uniform(0.22, 0.4) * scale, 0.0, th + 0.5 * scale, trunk)
    li = int(rng.integers(len(_MATERIALS["leaf"][0])))
    shades = [sc.new(VEG, "leaf", z, li, sh) for sh in (0.8, 1.0, 1.15)]
    if conifer:
        w = rng.uniform(1.4, 2.2) * scale
        hgt = rng.uniform(5.0, 8.0) * scale
        for k in range(3):
            yb = th * 0.6 + k * hgt * 0.28
            ww = w * (1.0 - 0.25 * k)
            sc.bpoly(u, v, s, [(-ww, yb), (ww, yb), (0, yb + hgt * 0.45)], shades[k % 3])
        sc.shadow_blob(x, z, w * 0.8, th + hgt * 0.4)
        return
    rc = rng.uniform(1.4, 2.8) * scale
    cy = th + rc * 0.9
    for k in range(int(rng.integers(4, 8))):
        dx, dy = rng.uniform(-0.6, 0.6) * rc, rng.uniform(-0.4, 0.5) * rc
        r = rng.uniform(0.5, 0.8) * rc
        sc.bell(u, v, s, dx, cy + dy, r * rng.uniform(0.9, 1.2), r, shades[k % 3])
    sc.shadow_blob(x, z, rc, cy)


# Minimum on-screen sizes, in pixels per metre of a 256-pixel-wide image (see _Scene.bbm): the
# heads of traffic lights and signs, pedestrians and two-wheelers never shrink below them.
_MIN_S_LIGHT = 11.0    # a 0.6 x 1.2 m light box -> at least 6.6 x 13.2 px
_MIN_S_SIGN_D = 8.0    # sign diameter in pixels
_MIN_S_PERSON = 8.0    # a 1.75 m pedestrian -> at least ~12 px tall, ~4 px wide
_MIN_S_RIDER = 9.0     # two-wheelers (and their riders) -> wheels at least ~6 px across
_POLE_PX = 3.0         # poles are at least 3 px wide


def _lamp(sc: _Scene, x, z, sgn) -> None:
    rng = sc.rng
    u, v, s = sc.bb(x, z)
    iid = sc.new(POLE, "pole", z)
    hp = rng.uniform(5.5, 8.5)
    w = rng.uniform(0.2, 0.3)
    arm_p, arm_l = rng.random(), rng.uniform(1.0, 2.5)
    sc.bbar(u, v, s, 0.0, w, 0.0, hp, iid, _POLE_PX)
    if arm_p < 0.8:
        arm = arm_l * -sgn
        sc.bline(u, v, s, [(0.0, hp - 0.05), (arm * 0.6, hp + 0.25), (arm, hp + 0.2)], 0.12, iid, 2.0)
        head = sc.new(POLE, "pole", z, shade=0.7)
        hu, hv = u + s * arm, v - s * (hp + 0.18)
        hs = max(s, 7.0 * sc.k)  # the lamp head at least ~6 px wide
        sc.bpoly(hu, hv, hs, [(-0.45, 0.12), (0.45, 0.12), (0.32, -0.12), (-0.32, -0.12)], head)
    if sc.style.shadow > 0:
        sx, sz = sc.sun
        sc.shadows.append([(x - w, z), (x + w, z), (x + w + sx * hp, z + sz * hp),
                           (x - w + sx * hp, z + sz * hp)])


def _light_box(sc: _Scene, u, v, s, cx, ytop, front, z) -> None:
    """A traffic-light head hanging from (cx, ytop) of the frame (u, v, s): a dark box with
    three round lamps, never smaller than ``_MIN_S_LIGHT``."""
    box = sc.new(LIGHT, "tl_box", z)
    lit = int(sc.rng.integers(3))
    pu, pv = u + s * cx, v - s * ytop
    hs = max(s, _MIN_S_LIGHT * sc.k)
    w, hb = 0.6, 1.2
    sc.bpoly(pu, pv, hs, [(-w / 2, -hb), (w / 2, -hb), (w / 2, 0.0), (-w / 2, 0.0)], box)
    if front:
        for k, name in enumerate(("tl_red", "tl_amber", "tl_green")):
            iid = sc.new(LIGHT, name if k == lit else "tl_off", z)
            sc.bell(pu, pv, hs, 0.0, -0.22 - k * 0.38, 0.16, 0.16, iid)
        # visor plate beside the box
        sc.bpoly(pu, pv, hs, [(-w / 2 - 0.12, -hb + 0.08), (-w / 2, -hb + 0.08), (-w / 2, -0.08),
                              (-w / 2 - 0.12, -0.08)], box)
    else:
        back = sc.new(LIGHT, "tl_box", z, shade=1.4)
        sc.bpoly(pu, pv, hs, [(-w / 2 + 0.1, -hb + 0.12), (w / 2 - 0.1, -hb + 0.12),
                              (w / 2 - 0.1, -0.12), (-w / 2 + 0.1, -0.12)], back)


def _traffic_light(sc: _Scene, x, z, sgn) -> None:
    rng = sc.rng
    u, v, s = sc.bb(x, z)
    pole = sc.new(POLE, "pole", z, 1)
    front = rng.random() < 0.8
    if rng.random() < 0.45:  # overhead arm over the road
        hp = rng.uniform(5.5, 7.0)
        sc.bbar(u, v, s, 0.0, 0.24, 0.0, hp, pole, _POLE_PX)
        arm = -sgn * rng.uniform(3.0, 6.0)
        sc.bline(u, v, s, [(0.0, hp - 0.2), (arm, hp - 0.2)], 0.16, pole, 2.0)
        _light_box(sc, u, v, s, arm * 0.85, hp - 0.25, front, z)
        if rng.random() < 0.5:
            _light_box(sc, u, v, s, arm * 0.4, hp - 0.25, front, z)
    else:
        hp = rng.uniform(2.6, 3.6)
        sc.bbar(u, v, s, 0.0, 0.18, 0.0, hp, pole, _POLE_PX)
        _light_box(sc, u, v, s, 0.0, hp + max(1.2, _MIN_S_LIGHT * sc.k * 1.2 / s), front, z)
    if sc.style.shadow > 0:
        sx, sz = sc.sun
        sc.shadows.append([(x - 0.15, z), (x + 0.15, z), (x + 0.15 + sx * hp, z + sz * hp),
                           (x - 0.15 + sx * hp, z + sz * hp)])


def _sign(sc: _Scene, u, v, s, kind, z, front=True, r: float | None = None) -> float:
    """A sign plate centred at pixel (u, v) drawn with ``s`` pixels per metre; returns the
    plate's half height in metres."""
    rng = sc.rng
    if r is None:
        r = rng.uniform(0.35, 0.5)
    flip, choice = rng.random(), rng.random()
    cy = 0.0
    if not front:
        back = sc.new(SIGN, "sign_back", z)
        if kind in ("circle", "octagon", "blue"):
            sc.bell(u, v, s, 0, cy, r, r, back)
        elif kind == "triangle":
            sc.bpoly(u, v, s, [(-r * 1.15, cy + r * 0.8), (r * 1.15, cy + r * 0.8), (0, cy - r * 1.1)], back)
        elif kind == "diamond":
            sc.bpoly(u, v, s, [(-r, cy), (0, cy + r), (r, cy), (0, cy - r)], back)
        else:
            sc.bpoly(u, v, s, [(-r * 1.1, cy - r * 0.75), (r * 1.1, cy - r * 0.75),
                               (r * 1.1, cy + r * 0.75), (-r * 1.1, cy + r * 0.75)], back)
        return r
    if kind == "circle":
        outer = sc.new(SIGN, "sign_red", z)
        sc.bell(u, v, s, 0, cy, r, r, outer)
        if flip < 0.5:
            inner = sc.new(SIGN, "sign_white", z)
            sc.bell(u, v, s, 0, cy, r * 0.68, r * 0.68, inner)
        else:  # no-entry bar
            inner = sc.new(SIGN, "sign_white", z)
            sc.bpoly(u, v, s, [(-r * 0.65, -r * 0.2), (r * 0.65, -r * 0.2), (r * 0.65, r * 0.2),
                               (-r * 0.65, r * 0.2)], inner)
    elif kind == "blue":
        disc = sc.new(SIGN, "sign_blue", z)
        sc.bell(u, v, s, 0, cy, r, r, disc)
        arrow = sc.new(SIGN, "sign_white", z)
        sc.bpoly(u, v, s, [(-0.1 * r, cy - r * 0.6), (0.1 * r, cy - r * 0.6), (0.1 * r, cy + 0.1 * r),
                           (r * 0.45, cy + 0.1 * r), (0, cy + r * 0.65), (-r * 0.45, cy + 0.1 * r),
                           (-0.1 * r, cy + 0.1 * r)], arrow)
    elif kind == "triangle":
        outer = sc.new(SIGN, "sign_red", z)
        pts = [(-r * 1.15, cy - r * 0.8), (r * 1.15, cy - r * 0.8), (0, cy + r * 1.1)]
        if flip < 0.5:  # yield sign: pointing down
            pts = [(-r * 1.15, cy + r * 0.8), (r * 1.15, cy + r * 0.8), (0, cy - r * 1.1)]
        sc.bpoly(u, v, s, pts, outer)
        inner = sc.new(SIGN, "sign_white", z)
        sc.bpoly(u, v, s, [(0.55 * px, cy + 0.55 * (py - cy)) for px, py in pts], inner)
    elif kind == "octagon":
        outer = sc.new(SIGN, "sign_red", z)
        sc.bpoly(u, v, s, [(r * math.cos(math.pi / 8 + k * math.pi / 4),
                            cy + r * math.sin(math.pi / 8 + k * math.pi / 4)) for k in range(8)], outer)
        inner = sc.new(SIGN, "sign_white", z)
        sc.bpoly(u, v, s, [(-r * 0.6, -r * 0.15), (r * 0.6, -r * 0.15), (r * 0.6, r * 0.15),
                           (-r * 0.6, r * 0.15)], inner)
    elif kind == "diamond":
        outer = sc.new(SIGN, "sign_white", z)
        sc.bpoly(u, v, s, [(-r, cy), (0, cy + r), (r, cy), (0, cy - r)], outer)
        inner = sc.new(SIGN, "sign_yellow", z)
        sc.bpoly(u, v, s, [(-r * 0.65, cy), (0, cy + r * 0.65), (r * 0.65, cy), (0, cy - r * 0.65)], inner)
    else:  # rectangle
        outer = sc.new(SIGN, "sign_blue" if choice < 0.6 else "sign_white", z)
        w, hh = r * 1.1, r * 0.75
        if flip < 0.4:
            w, hh = hh, w
        sc.bpoly(u, v, s, [(-w, cy - hh), (w, cy - hh), (w, cy + hh), (-w, cy + hh)], outer)
        inner = sc.new(SIGN, "sign_white", z)
        sc.bpoly(u, v, s, [(-w * 0.55, cy - hh * 0.5), (w * 0.55, cy - hh * 0.5),
                           (w * 0.55, cy + hh * 0.5), (-w * 0.55, cy + hh * 0.5)], inner)
        return hh
    return r


_SIGN_KINDS = ("circle", "blue", "triangle", "octagon", "diamond", "rect")


def _sign_post(sc: _Scene, x, z) -> None:
    rng = sc.rng
    u, v, s = sc.bb(x, z)
    pole = sc.new(POLE, "pole", z)
    hp = rng.uniform(2.2, 3.0)
    r = rng.uniform(0.35, 0.5)
    front = rng.random() < 0.82
    kind = _SIGN_KINDS[int(rng.integers(len(_SIGN_KINDS)))]
    second = rng.random() < 0.3
    r2 = rng.uniform(0.3, 0.4)
    hs = max(s, _MIN_S_SIGN_D * sc.k / (2 * r))  # the plate at least ~8 px across
    top = v - s * hp  # the top of the post, the centre of the (first) plate
    sc.bbar(u, v, s, 0.0, 0.1, 0.0, hp, pole, _POLE_PX)
    half = _sign(sc, u, top, hs, kind, z, front, r)
    if second:
        cy = min(top + hs * (half + 0.08 + r2 * 0.75), v - hs * r2 - 2 * sc.k)
        _sign(sc, u, cy, hs, "rect", z, front, r2)
    if sc.style.shadow > 0:
        sx, sz = sc.sun
        sc.shadows.append([(x - 0.05, z), (x + 0.05, z), (x + 0.05 + sx * hp, z + sz * hp),
                           (x - 0.05 + sx * hp, z + sz * hp)])


def _person_colours(sc: _Scene, z, cls):
    return (sc.new(cls, "cloth", z), sc.new(cls, "pants", z), sc.new(cls, "skin", z),
            sc.new(cls, "hair", z))


def _person(sc: _Scene, x, z, view: str, cls: int = PERSON) -> None:
    rng = sc.rng
    u, v, s = sc.bbm(x, z, _MIN_S_PERSON)
    s *= rng.uniform(1.55, 1.95) / 1.75
    shirt, pants, skin, hair = _person_colours(sc, z, cls)
    d = 1 if rng.random() < 0.5 else -1
    st = rng.uniform(0.1, 0.28)
    sp = rng.uniform(0.0, 0.08)
    bag = rng.random() < 0.25
    if view == "side":
        sc.bpoly(u, v, s, [(-0.09, 0.92), (0.09, 0.92), (d * st + 0.09, 0), (d * st - 0.09, 0)], pants)
        sc.bpoly(u, v, s, [(-0.09, 0.92), (0.09, 0.92), (-d * st + 0.09, 0), (-d * st - 0.09, 0)], pants)
        sc.bpoly(u, v, s, [(-0.2, 0.86), (0.2, 0.86), (0.18, 1.46), (-0.18, 1.46)], shirt)
        sc.bpoly(u, v, s, [(-0.07, 1.42), (0.07, 1.42), (d * 0.22 + 0.07, 0.88), (d * 0.22 - 0.07, 0.88)], shirt)
        if bag:  # a backpack
            sc.bpoly(u, v, s, [(-d * 0.15, 1.0), (-d * 0.3, 1.02), (-d * 0.3, 1.38), (-d * 0.15, 1.4)], pants)
        sc.bell(u, v, s, d * 0.02, 1.6, 0.12, 0.13, skin)
        sc.bell(u, v, s, -d * 0.02, 1.67, 0.12, 0.08, hair)
    else:
        sc.bpoly(u, v, s, [(-0.2 - sp, 0), (-0.04 - sp, 0), (-0.02, 0.92), (-0.19, 0.92)], pants)
        sc.bpoly(u, v, s, [(0.04 + sp, 0), (0.2 + sp, 0), (0.19, 0.92), (0.02, 0.92)], pants)
        sc.bpoly(u, v, s, [(-0.22, 0.86), (0.22, 0.86), (0.26, 1.46), (-0.26, 1.46)], shirt)
        sc.bpoly(u, v, s, [(-0.26, 1.44), (-0.18, 1.44), (-0.28, 0.82), (-0.35, 0.85)], shirt)
        sc.bpoly(u, v, s, [(0.18, 1.44), (0.26, 1.44), (0.35, 0.85), (0.28, 0.82)], shirt)
        sc.bell(u, v, s, 0, 1.6, 0.12, 0.13, skin)
        if view == "back":
            sc.bell(u, v, s, 0, 1.63, 0.125, 0.12, hair)
        else:
            sc.bell(u, v, s, 0, 1.69, 0.12, 0.06, hair)
        if bag:  # a bag
            sc.bpoly(u, v, s, [(0.28, 0.72), (0.5, 0.72), (0.5, 1.0), (0.28, 1.0)], pants)
    sc.shadow_blob(x, z, 0.3, 0.8)


def _bicycle_side(sc: _Scene, u, v, s, d, z, c: float = 1.0) -> None:
    """A bicycle seen from the side (``c`` = 1) or obliquely (``c`` < 1: squeezed sideways)."""
    frame = sc.new(BIKE, "bike", z)
    tyre = sc.new(BIKE, "tyre", z)
    D = lambda a, b: (d * c * a, b)  # noqa: E731
    for cx in (-0.55, 0.55):
        sc.bell(u, v, s, d * c * cx, 0.37, 0.37 * max(c, 0.3), 0.37, tyre, ring=0.1)
    pts = [(-0.55, 0.37), (-0.05, 0.37), (-0.15, 0.92), (0.45, 0.92), (0.55, 0.37)]
    sc.bline(u, v, s, [D(a, b) for a, b in pts], 0.08, frame)
    sc.bline(u, v, s, [D(-0.05, 0.37), D(0.45, 0.92)], 0.08, frame)
    sc.bline(u, v, s, [D(-0.55, 0.37), D(-0.15, 0.92)], 0.06, frame)
    sc.bline(u, v, s, [D(0.45, 0.92), D(0.42, 1.07), D(0.3, 1.1)], 0.07, frame)
    sc.bline(u, v, s, [D(-0.27, 0.97), D(-0.05, 0.97)], 0.08, tyre)


def _motorcycle_side(sc: _Scene, u, v, s, d, z, c: float = 1.0) -> None:
    """A motorcycle seen from the side (``c`` = 1) or obliquely (``c`` < 1)."""
    body = sc.new(MOTO, "moto", z)
    dark = sc.new(MOTO, "tyre", z)
    metal = sc.new(MOTO, "metal", z)
    D = lambda a, b: (d * c * a, b)  # noqa: E731
    for cx in (-0.75, 0.75):
        sc.bell(u, v, s, d * c * cx, 0.34, 0.34 * max(c, 0.35), 0.34, dark)
        sc.bell(u, v, s, d * c * cx, 0.34, 0.14 * max(c, 0.35), 0.14, metal)
    sc.bpoly(u, v, s, [D(a, b) for a, b in [(-0.4, 0.22), (0.35, 0.22), (0.45, 0.62), (-0.35, 0.62)]], metal)
    sc.bpoly(u, v, s, [D(a, b) for a, b in [(-0.9, 0.6), (-0.3, 0.52), (0.5, 0.58), (0.68, 0.9),
                                            (0.38, 1.02), (0.0, 0.95), (-0.8, 0.9)]], body)
    sc.bline(u, v, s, [D(0.75, 0.34), D(0.52, 1.02), D(0.4, 1.12)], 0.09, dark)


def _rider(sc: _Scene, x, z, view: str, motor: bool) -> None:
    """A cyclist or motorcyclist: ``view`` is "side", "oblique", "back" or "front"."""
    rng = sc.rng
    u, v, s = sc.bbm(x, z, _MIN_S_RIDER)
    s *= rng.uniform(0.92, 1.08)
    shirt, pants, skin, hair = _person_colours(sc, z, RIDER)
    helmet = sc.new(RIDER, "cloth", z) if (motor or rng.random() < 0.4) else hair
    d = 1 if rng.random() < 0.5 else -1
    c = rng.uniform(0.4, 0.6)
    if view in ("side", "oblique"):
        if view == "side":
            c = 1.0
        if motor:
            _motorcycle_side(sc, u, v, s, d, z, c)
            hip, sh, hand, knee, foot = (-0.2, 1.02), (0.1, 1.6), (0.4, 1.12), (0.2, 0.8), (0.05, 0.35)
        else:
            _bicycle_side(sc, u, v, s, d, z, c)
            hip, sh, hand, knee, foot = (-0.15, 1.0), (0.15, 1.57), (0.34, 1.09), (0.12, 0.68), (-0.02, 0.25)
        D = lambda p: (d * c * p[0], p[1])  # noqa: E731
        sc.bline(u, v, s, [D(hip), D(knee), D(foot)], 0.17, pants)
        sc.bline(u, v, s, [D(hip), D(sh)], 0.36, shirt)
        sc.bline(u, v, s, [D(sh), D((hand[0] - 0.05, hand[1] + 0.12)), D(hand)], 0.12, shirt)
        sc.bell(u, v, s, d * c * (sh[0] + 0.1), sh[1] + 0.18, 0.13, 0.13, skin)
        sc.bell(u, v, s, d * c * (sh[0] + 0.07), sh[1] + 0.25, 0.14 if helmet != hair else 0.12,
                0.1, helmet)
        sc.shadow_blob(x, z, 0.6, 0.5)
        return
    # seen from behind (riding along the road) or from the front
    vehicle_cls = MOTO if motor else BIKE
    tyre = sc.new(vehicle_cls, "tyre", z)
    body = sc.new(vehicle_cls, "moto" if motor else "bike", z)
    if motor:
        sc.bpoly(u, v, s, [(-0.1, 0), (0.1, 0), (0.1, 0.66), (-0.1, 0.66)], tyre)
        sc.bpoly(u, v, s, [(-0.32, 0.42), (0.32, 0.42), (0.27, 0.95), (-0.27, 0.95)], body)
        light = sc.new(MOTO, "taillight" if view == "back" else "headlight", z)
        sc.bpoly(u, v, s, [(-0.12, 0.62), (0.12, 0.62), (0.12, 0.75), (-0.12, 0.75)], light)
        hip_y = 1.02
    else:
        sc.bpoly(u, v, s, [(-0.05, 0), (0.05, 0), (0.05, 0.72), (-0.05, 0.72)], tyre)
        sc.bbar(u, v, s, 0.0, 0.06, 0.0, 0.72, tyre, 2.0)
        sc.bline(u, v, s, [(0.0, 0.5), (0.0, 0.97)], 0.07, body, 2.0)
        sc.bpoly(u, v, s, [(-0.12, 0.62), (0.12, 0.62), (0.1, 0.74), (-0.1, 0.74)], body)  # mudguard
        hip_y = 0.98
    sc.bline(u, v, s, [(-0.11, hip_y), (-0.22, hip_y - 0.35), (-0.16, 0.3)], 0.16, pants)
    sc.bline(u, v, s, [(0.11, hip_y), (0.22, hip_y - 0.3), (0.16, 0.45)], 0.16, pants)
    sc.bpoly(u, v, s, [(-0.21, hip_y - 0.05), (0.21, hip_y - 0.05), (0.25, hip_y + 0.56),
                       (-0.25, hip_y + 0.56)], shirt)
    sc.bline(u, v, s, [(-0.22, hip_y + 0.5), (-0.33, hip_y + 0.1)], 0.1, shirt)
    sc.bline(u, v, s, [(0.22, hip_y + 0.5), (0.33, hip_y + 0.1)], 0.1, shirt)
    sc.bell(u, v, s, 0, hip_y + 0.71, 0.12, 0.13, skin)
    sc.bell(u, v, s, 0, hip_y + 0.76, 0.14, 0.11, helmet)
    # handlebar ends sticking out beside the hands
    sc.bline(u, v, s, [(-0.46, 1.1), (0.46, 1.1)], 0.07, tyre if motor else body, 2.0)
    sc.shadow_blob(x, z, 0.4, 0.6)


def _parked_bicycle(sc: _Scene, x, z) -> None:
    u, v, s = sc.bbm(x, z, _MIN_S_RIDER)
    d = 1 if sc.rng.random() < 0.5 else -1
    c = 1.0 if sc.rng.random() < 0.5 else sc.rng.uniform(0.45, 0.7)
    _bicycle_side(sc, u, v, s, d, z, c)


def _parked_motorcycle(sc: _Scene, x, z) -> None:
    u, v, s = sc.bbm(x, z, _MIN_S_RIDER)
    d = 1 if sc.rng.random() < 0.5 else -1
    c = 1.0 if sc.rng.random() < 0.5 else sc.rng.uniform(0.45, 0.7)
    _motorcycle_side(sc, u, v, s, d, z, c)
    sc.shadow_blob(x, z, 0.6, 0.4)


def _car(sc: _Scene, xc, z0, front: bool) -> None:
    rng = sc.rng
    L = rng.uniform(3.9, 4.9)
    wd = rng.uniform(1.65, 1.9)
    hc = rng.uniform(1.38, 1.62) if rng.random() < 0.8 else rng.uniform(1.7, 1.95)  # SUV/van
    x0, x1 = xc - wd / 2, xc + wd / 2
    st = sc.style
    body = sc.colour("car")
    ib = sc.inst(CAR, body, 0, z0)
    ibs = sc.inst(CAR, body * st.side_shade, 0, z0 + L / 2)
    ibt = sc.inst(CAR, body * st.top_shade, 0, z0 + L / 2)
    ig = sc.new(CAR, "glass", z0)
    igs = sc.new(CAR, "glass", z0, shade=1.2)
    it = sc.new(CAR, "tyre", z0)
    il = sc.new(CAR, "headlight" if front else "taillight", z0)
    yb0, yb1 = 0.3, 0.45 * hc + 0.2
    zr = z0 + 0.8
    for xa in (x0 + 0.06, x1 - 0.32):  # wheels under the near end
        sc.poly([(xa, 0, zr), (xa + 0.26, 0, zr), (xa + 0.26, 0.45, zr), (xa, 0.45, zr)], it)
    side = x0 if x0 > 0 else (x1 if x1 < 0 else None)
    if side is not None:
        sc.poly([(side, yb0, z0), (side, yb0, z0 + L), (side, yb1, z0 + L), (side, yb1, z0)], ibs)
        for zc in (z0 + 0.85, z0 + L - 0.85):
            sc.wheel_side(side, 0.34, zc, 0.34, it)
    if yb1 < sc.h:
        sc.poly([(x0, yb1, z0), (x1, yb1, z0), (x1, yb1, z0 + L), (x0, yb1, z0 + L)], ibt)
    # cabin
    r0, r1 = (1.25, 0.85) if front else (0.85, 1.25)  # hood is longer than the trunk
    cz0, cz1 = z0 + r0, z0 + L - r1
    tz0, tz1 = cz0 + (0.75 if front else 0.5), cz1 - (0.45 if front else 0.7)
    xi0, xi1 = x0 + 0.1, x1 - 0.1
    cs = xi0 if xi0 > 0 else (xi1 if xi1 < 0 else None)
    if cs is not None:
        sc.poly([(cs, yb1, cz0), (cs, yb1, cz1), (cs, hc, tz1), (cs, hc, tz0)], ibs)
        sc.poly([(cs, yb1 + 0.08, cz0 + 0.2), (cs, yb1 + 0.08, cz1 - 0.2), (cs, hc - 0.07, tz1 - 0.05),
                 (cs, hc - 0.07, tz0 + 0.05)], igs)
    if hc < sc.h:
        sc.poly([(xi0, hc, tz0), (xi1, hc, tz0), (xi1, hc, tz1), (xi0, hc, tz1)], ibt)
    sc.poly([(xi0, yb1, cz0), (xi1, yb1, cz0), (xi1, hc, tz0), (xi0, hc, tz0)], ib)
    sc.poly([(xi0 + 0.08, yb1 + 0.06, cz0 + 0.03), (xi1 - 0.08, yb1 + 0.06, cz0 + 0.03),
             (xi1 - 0.1, hc - 0.06, tz0 - 0.04), (xi0 + 0.1, hc - 0.06, tz0 - 0.04)], ig)
    sc.poly([(x0, yb0, z0), (x1, yb0, z0), (x1, yb1, z0), (x0, yb1, z0)], ib)
    for xa in (x0 + 0.08, x1 - 0.38):
        sc.poly([(xa, yb1 - 0.22, z0), (xa + 0.3, yb1 - 0.22, z0), (xa + 0.3, yb1 - 0.08, z0),
                 (xa, yb1 - 0.08, z0)], il)
    if front:  # grille
        gr = sc.new(CAR, "tyre", z0, shade=2.0)
        sc.poly([(xc - 0.4, yb0 + 0.12, z0), (xc + 0.4, yb0 + 0.12, z0), (xc + 0.4, yb1 - 0.12, z0),
                 (xc - 0.4, yb1 - 0.12, z0)], gr)
    sc.shadow_box(x0 - 0.1, x1 + 0.1, z0, z0 + L, 0.6)


def _truck(sc: _Scene, xc, z0, front: bool) -> None:
    rng = sc.rng
    st = sc.style
    wd = rng.uniform(2.3, 2.55)
    x0, x1 = xc - wd / 2, xc + wd / 2
    cab_c = sc.colour("car")
    box_c = sc.colour("truck_box")
    lb = rng.uniform(6.0, 9.0)
    hb = rng.uniform(3.5, 4.1)
    hcab = rng.uniform(2.7, 3.1)
    it = sc.new(TRUCK, "tyre", z0)
    cab = (sc.inst(TRUCK, cab_c, 0, z0), sc.inst(TRUCK, cab_c * st.side_shade, 0, z0 + 1),
           sc.inst(TRUCK, cab_c * st.top_shade, 0, z0 + 1))
    bx = (sc.inst(TRUCK, box_c, 0, z0), sc.inst(TRUCK, box_c * st.side_shade, 0, z0 + 3),
          sc.inst(TRUCK, box_c * st.top_shade, 0, z0 + 3))
    if front:
        zc0, zc1, zb0, zb1 = z0, z0 + 2.2, z0 + 2.4, z0 + 2.4 + lb
    else:
        zb0, zb1, zc0, zc1 = z0, z0 + lb, z0 + lb + 0.2, z0 + lb + 2.4
    parts = [(zb0, zb1, hb, bx, False), (zc0, zc1, hcab, cab, True)]
    parts.sort(key=lambda p: -p[0])
    for za, zb, hh, (n, sd, tp), is_cab in parts:
        sx = sc.box(x0, x1, 0.55, hh, za, zb, n, sd, tp)
        sc.poly([(x0 + 0.1, 0, za + 0.9), (x0 + 0.45, 0, za + 0.9), (x0 + 0.45, 0.6, za + 0.9),
                 (x0 + 0.1, 0.6, za + 0.9)], it)
        sc.poly([(x1 - 0.45, 0, za + 0.9), (x1 - 0.1, 0, za + 0.9), (x1 - 0.1, 0.6, za + 0.9),
                 (x1 - 0.45, 0.6, za + 0.9)], it)
        if sx is not None:
            for zc in ((za + 1.1, zb - 1.1) if not is_cab else (za + 1.0,)):
                sc.wheel_side(sx, 0.5, zc, 0.5, it)
        if is_cab and front:
            g = sc.new(TRUCK, "glass", za)
            sc.poly([(x0 + 0.15, hh * 0.6, za), (x1 - 0.15, hh * 0.6, za), (x1 - 0.15, hh - 0.15, za),
                     (x0 + 0.15, hh - 0.15, za)], g)
            lt = sc.new(TRUCK, "headlight", za)
            for xa in (x0 + 0.1, x1 - 0.4):
                sc.poly([(xa, 0.8, za), (xa + 0.3, 0.8, za), (xa + 0.3, 1.0, za), (xa, 1.0, za)], lt)
        if not is_cab and not front:  # cargo doors: a frame, a seam and a bumper
            seam = sc.new(TRUCK, "tyre", za, shade=2.5)
            sc.poly([(xc - 0.05, 0.7, za), (xc + 0.05, 0.7, za), (xc + 0.05, hh - 0.15, za),
                     (xc - 0.05, hh - 0.15, za)], seam)
            sc.poly([(x0 + 0.05, hh - 0.25, za), (x1 - 0.05, hh - 0.25, za), (x1 - 0.05, hh - 0.1, za),
                     (x0 + 0.05, hh - 0.1, za)], seam)
            sc.poly([(x0 + 0.2, 0.35, za), (x1 - 0.2, 0.35, za), (x1 - 0.2, 0.55, za),
                     (x0 + 0.2, 0.55, za)], it)
            lt = sc.new(TRUCK, "taillight", za)
            for xa in (x0 + 0.05, x1 - 0.3):
                sc.poly([(xa, 0.7, za), (xa + 0.25, 0.7, za), (xa + 0.25, 0.85, za), (xa, 0.85, za)], lt)
    sc.shadow_box(x0, x1, z0, z0 + lb + 2.4, 1.2)


def _bus(sc: _Scene, xc, z0, front: bool, tram: bool = False) -> None:
    rng = sc.rng
    st = sc.style
    cls = TRAIN if tram else BUS
    wd = 2.55 if not tram else 2.65
    L = rng.uniform(10.5, 13.0) if not tram else rng.uniform(22.0, 32.0)
    hb = rng.uniform(3.0, 3.3) if not tram else 3.4
    x0, x1 = xc - wd / 2, xc + wd / 2
    c = sc.colour("tram" if tram else "bus")
    near = sc.inst(cls, c, 0, z0)
    side = sc.inst(cls, c * st.side_shade, 0, z0 + L / 2)
    top = sc.inst(cls, c * st.top_shade, 0, z0 + L / 2)
    it = sc.new(cls, "tyre", z0)
    glass = sc.new(cls, "glass", z0)
    gside = sc.new(cls, "glass", z0, shade=1.2)
    y0 = 0.3 if not tram else 0.4
    for xa in (x0 + 0.1, x1 - 0.45):
        sc.poly([(xa, 0, z0 + 2), (xa + 0.35, 0, z0 + 2), (xa + 0.35, y0 + 0.2, z0 + 2),
                 (xa, y0 + 0.2, z0 + 2)], it)
    sx = sc.box(x0, x1, y0, hb, z0, z0 + L, near, side, top)
    if sx is not None:
        zz = z0 + 0.6
        while zz < z0 + L - 1.5:  # side windows
            sc.poly([(sx, 1.25, zz), (sx, 1.25, zz + 1.25), (sx, hb - 0.4, zz + 1.25),
                     (sx, hb - 0.4, zz)], gside)
            zz += 1.45
        if not tram:
            for zc in (z0 + 2.0, z0 + L - 2.8):
                sc.wheel_side(sx, 0.5, zc, 0.5, it)
    if front:
        sc.poly([(x0 + 0.12, 1.0, z0), (x1 - 0.12, 1.0, z0), (x1 - 0.12, hb - 0.35, z0),
                 (x0 + 0.12, hb - 0.35, z0)], glass)
        disp = sc.new(cls, "tl_box", z0)
        sc.poly([(x0 + 0.3, hb - 0.3, z0), (x1 - 0.3, hb - 0.3, z0), (x1 - 0.3, hb - 0.08, z0),
                 (x0 + 0.3, hb - 0.08, z0)], disp)
        lt = sc.new(cls, "headlight", z0)
    else:
        sc.poly([(x0 + 0.2, 1.9, z0), (x1 - 0.2, 1.9, z0), (x1 - 0.2, hb - 0.3, z0),
                 (x0 + 0.2, hb - 0.3, z0)], glass)
        grille = sc.new(cls, "tyre", z0, shade=1.8)  # engine louvres
        for yg in (1.05, 1.3, 1.55):
            sc.poly([(x0 + 0.45, yg, z0), (x1 - 0.45, yg, z0), (x1 - 0.45, yg + 0.12, z0),
                     (x0 + 0.45, yg + 0.12, z0)], grille)
        lt = sc.new(cls, "taillight", z0)
    for xa in (x0 + 0.1, x1 - 0.4):
        sc.poly([(xa, 0.6, z0), (xa + 0.3, 0.6, z0), (xa + 0.3, 0.85, z0), (xa, 0.85, z0)], lt)
    if tram and hb < 30:  # pantograph
        pan = sc.new(cls, "tyre", z0, shade=1.5)
        zp = z0 + L * 0.4
        pts = [(xc - 0.6, hb, zp), (xc, hb + 1.2, zp + 0.8), (xc + 0.6, hb, zp)]
        sc.poly(pts + [(xc + 0.5, hb, zp), (xc, hb + 1.1, zp + 0.8), (xc - 0.5, hb, zp)], pan)
        sc.poly([(xc - 0.7, hb + 1.15, zp + 0.8), (xc + 0.7, hb + 1.15, zp + 0.8),
                 (xc + 0.7, hb + 1.25, zp + 0.8), (xc - 0.7, hb + 1.25, zp + 0.8)], pan)
    sc.shadow_box(x0, x1, z0, z0 + L, 1.5)


# ----------------------------------------------------------------------------------------------
# Scene layout
# ----------------------------------------------------------------------------------------------

def _layout(sc: _Scene) -> None:
    rng = sc.rng
    st = sc.style
    sx, sz = st.sun
    sc.sun = (sx * (1 if rng.random() < 0.5 else -1), sz)

    # --- road cross-section -------------------------------------------------------------------
    lanes = int(rng.integers(2, 5))
    lw = rng.uniform(3.0, 3.7)
    ego = int(rng.integers(0, lanes))
    xl = -(ego + rng.uniform(0.3, 0.7)) * lw
    xr = xl + lanes * lw
    two_way = lanes >= 2 and rng.random() < 0.65
    n_oncoming = max(1, lanes // 2) if two_way else 0
    zmax = rng.uniform(90.0, 160.0)
    sides = []
    for sgn, edge in ((-1, xl), (1, xr)):
        lawn = rng.uniform(0.8, 2.2) if rng.random() < 0.35 else 0.0
        sw = rng.uniform(1.8, 4.5)
        sides.append(dict(sgn=sgn, edge=edge, lawn=lawn, sw=sw, prop=edge + sgn * (lawn + sw)))

    # --- side segments --------------------------------------------------------------------------
    for side in sides:
        segs = []
        z = rng.uniform(-6.0, 2.0)
        while z < zmax:
            kind = ("building", "park", "wall", "fence", "street")[int(rng.choice(
                5, p=(0.52, 0.12, 0.1, 0.14, 0.12)))]
            if kind == "street":
                if z < 8.0 or (segs and segs[-1][0] == "street"):
                    kind = "building"
                length = rng.uniform(9.0, 15.0)
            elif kind in ("wall", "fence"):
                length = rng.uniform(14.0, 34.0)
            else:
                length = rng.uniform(8.0, 32.0)
            segs.append([kind, z, min(z + length, zmax)])
            z += length
        side["segs"] = segs
    # most images get a wall and a fence at a near/middle distance (far away they are thin
    # slivers along the street): the segments there become one, preferably on the nearer side
    near_first = sorted(sides, key=lambda sd: abs(sd["prop"]))
    for kind, p in (("wall", 0.8), ("fence", 0.9)):
        want, r_side, r_z = rng.random() < p, rng.random(), rng.uniform(1.0, 2.0)
        order = near_first if r_side < 0.75 else near_first[::-1]
        if not want:
            continue
        # buildings and parks give way; failing that, a fence may take over a wall
        tries = [(sd, ("building", "park")) for sd in order]
        if kind == "fence":
            tries += [(sd, ("wall",)) for sd in order]
        for side, ok in tries:
            segs = side["segs"]
            zt = r_z * abs(side["prop"])  # about where it comes into view of the narrower camera
            if any(sg[0] == kind and sg[1] < zt + 6.0 and sg[2] > zt + 10.0 for sg in segs):
                break
            cand = [i for i, sg in enumerate(segs) if sg[2] > zt and sg[1] < zt + 15.0 and sg[0] in ok]
            if cand:
                i = cand[0]
                segs[i][0] = kind
                if (segs[i][2] - max(segs[i][1], zt) < 14.0 and i + 1 < len(segs)
                        and segs[i + 1][0] in ok):
                    segs[i + 1][0] = kind  # too short: the next one too
                break

    # --- ground ------------------------------------------------------------------------------------
    g_terrain = sc.inst(TERRAIN, sc.colour("grass"), 1)
    sc.ground(-400.0, 400.0, _ZNEAR, _ZFAR, g_terrain)
    g_road = sc.inst(ROAD, sc.colour("road"), 1)
    sc.ground(xl, xr, _ZNEAR, _ZFAR, g_road)
    g_lane = sc.inst(ROAD, sc.colour("lane", 0), 1)
    g_yellow = sc.inst(ROAD, sc.colour("lane", 1), 1)
    crossings = []
    for side in sides:
        sgn, edge, lawn, sw, prop = side["sgn"], side["edge"], side["lawn"], side["sw"], side["prop"]
        si = int(rng.integers(2))
        g_side = sc.inst(SIDEWALK, sc.colour("sidewalk", si), 1)
        g_curb = sc.inst(SIDEWALK, sc.colour("curb"), 1)
        g_lawn = sc.inst(TERRAIN, sc.colour("grass"), 1)
        g_back = sc.inst(TERRAIN, sc.colour("grass"), 1)
        g_yard = sc.inst(SIDEWALK, sc.colour("sidewalk", 1 - si), 1)
        spans = [(s[1], s[2]) for s in side["segs"] if s[0] != "street"] + [(zmax, _ZFAR)]
        for z0, z1 in spans:
            a, b = sorted((edge, edge + sgn * 0.25))
            sc.ground(a, b, z0, z1, g_curb)
            if lawn > 0:
                a, b = sorted((edge + sgn * 0.25, edge + sgn * (0.25 + lawn)))
                sc.ground(a, b, z0, z1, g_lawn)
            a, b = sorted((edge + sgn * (lawn + 0.25 * (lawn == 0)), prop))
            sc.ground(a, b, z0, z1, g_side)
        side["setbacks"] = []
        for kind, z0, z1 in side["segs"]:
            if kind == "street":
                a, b = sorted((edge, sgn * 400.0))
                sc.ground(a, b, z0, z1, g_road)
                crossings.append((z0, z1, sgn))
            elif kind in ("park", "fence"):
                a, b = sorted((prop, sgn * 400.0))
                sc.ground(a, b, z0, z1, g_back)
        side["g_yard"] = g_yard
    # lane marks
    dash, period = rng.uniform(2.0, 4.0), rng.uniform(7.0, 12.0)
    off = rng.uniform(0, period)
    for b in range(1, lanes):
        x = xl + b * lw
        if two_way and b == n_oncoming:
            for dx in ((-0.12, 0.12) if rng.random() < 0.5 else (0.0,)):
                sc.ground(x + dx - 0.06, x + dx + 0.06, 1.0, _ZFAR, g_yellow)
            continue
        z = off
        while z < zmax:
            if sc.f * 0.15 / max(z, 1.0) < 0.15:
                break
            sc.ground(x - 0.08, x + 0.08, z, z + dash, g_lane)
            z += period
    if rng.random() < 0.5:
        for x in (xl + 0.3, xr - 0.3):
            sc.ground(x - 0.07, x + 0.07, 1.0, _ZFAR, g_lane)
    # crosswalks before side streets
    for z0, _z1, _sgn in crossings:
        if z0 < 60 and rng.random() < 0.6:
            x = xl + 0.4
            while x < xr - 0.4:
                sc.ground(x, x + 0.5, z0 - 4.0, z0 - 0.5, g_lane)
                x += 1.0
            if rng.random() < 0.5:  # stop line
                sc.ground(xl + 0.2, xr - 0.2, z0 - 5.5, z0 - 5.1, g_lane)
    sc.n_ground = len(sc.cls)

    # --- upright objects: (layer, z key, draw) ---------------------------------------------------
    jobs: list[tuple[int, float, int, object]] = []

    def add(layer: int, zkey: float, fn, *args) -> None:
        jobs.append((layer, zkey, len(jobs), (fn, args)))

    # far band: buildings / tree rows at the end of the street
    zf = zmax + rng.uniform(5.0, 30.0)
    keep_open = rng.random() < 0.6
    x = -260.0
    while x < 260.0:
        w = rng.uniform(12.0, 40.0)
        a, b = x, x + w
        x = b
        if keep_open and b > xl - 2 and a < xr + 2:
            continue
        if rng.random() < 0.7:
            add(0, zf + rng.uniform(0, 15), _far_box, a, b, zf, rng.uniform(6.0, 45.0), BUILDING)
        else:
            add(0, zf + rng.uniform(0, 15), _far_box, a, b, zf, rng.uniform(6.0, 14.0), VEG)

    for side in sides:
        sgn, edge, prop, lawn, sw = side["sgn"], side["edge"], side["prop"], side["lawn"], side["sw"]
        for kind, z0, z1 in side["segs"]:
            if kind == "building":
                setback = 0.0 if rng.random() < 0.6 else rng.uniform(1.0, 4.0)
                xf = prop + sgn * setback
                if setback > 0:
                    a, b = sorted((prop, xf))
                    sc.ground(a, b, z0, z1, side["g_yard"] if rng.random() < 0.5 else g_terrain)
                    r, hy = rng.random(), rng.uniform(1.0, 1.8)
                    if r < 0.2:  # a front-yard wall or fence
                        add(1, z0, _wall, sgn, prop, z0, z1, hy)
                    elif r < 0.4:
                        add(1, z0, _fence, sgn, prop, z0, z1, hy)
                height = (rng.uniform(4.5, 10.0), rng.uniform(10.0, 22.0),
                          rng.uniform(22.0, 45.0))[int(rng.choice(3, p=(0.3, 0.45, 0.25)))]
                add(0, z0, _building, sgn, xf, z0, z1, height, rng.uniform(10.0, 25.0))
            elif kind == "park":
                for _ in range(int(rng.integers(1, 5))):
                    tz = rng.uniform(z0, z1)
                    if tz > 3.0:
                        add(0, tz, _tree, prop + sgn * rng.uniform(2.0, 14.0), tz,
                            rng.uniform(0.8, 1.5), rng.random() < 0.3)
                if rng.random() < 0.4:
                    add(1, z0, _hedge, sgn, prop, z0, z1, rng.uniform(0.9, 1.8))
                if rng.random() < 0.5:
                    add(0, z0 + 1, _building, sgn, prop + sgn * rng.uniform(15.0, 30.0), z0, z1,
                        rng.uniform(8.0, 30.0), 15.0)
            elif kind == "wall":
                wh = rng.uniform(1.6, 3.2)
                add(1, z0, _wall, sgn, prop, z0, z1, wh)
                if rng.random() < 0.6:
                    add(0, z0, _building, sgn, prop + sgn * rng.uniform(3.0, 10.0), z0, z1,
                        rng.uniform(6.0, 25.0), 15.0)
                else:
                    for _ in range(int(rng.integers(1, 4))):
                        tz = rng.uniform(max(z0, 3.0), max(z1, 3.5))
                        add(0, tz, _tree, prop + sgn * rng.uniform(2.0, 8.0), tz, 1.0, False)
            elif kind == "fence":
                add(1, z0, _fence, sgn, prop, z0, z1, rng.uniform(1.6, 2.8))
                if rng.random() < 0.5:
                    add(0, z0, _building, sgn, prop + sgn * rng.uniform(6.0, 20.0), z0, z1,
                        rng.uniform(6.0, 25.0), 15.0)
                for _ in range(int(rng.integers(0, 3))):
                    tz = rng.uniform(max(z0, 3.0), max(z1, 3.5))
                    add(0, tz, _tree, prop + sgn * rng.uniform(2.0, 10.0), tz, 1.0, rng.random() < 0.3)
            else:  # side street: a building across it, a traffic light on the corner
                add(0, z0 + 40, _building, sgn, sgn * (abs(prop) + rng.uniform(30.0, 60.0)),
                    z0 - 5, z1 + 5, rng.uniform(8.0, 30.0), 15.0)
                if 5.0 < z0 < 50.0 and rng.random() < 0.8:
                    tz = z0 - rng.uniform(0.5, 2.0)
                    add(2, tz, _traffic_light, edge + sgn * 0.6, tz, sgn)
                if z1 < 50.0 and rng.random() < 0.4:
                    tz = z1 + rng.uniform(0.5, 2.0)
                    add(2, tz, _traffic_light, edge + sgn * 0.6, tz, sgn)
        # street lamps (few far away, where they would be specks)
        if rng.random() < 0.85:
            z = rng.uniform(3.0, 14.0)
            step = rng.uniform(12.0, 24.0)
            while z < min(zmax, 70.0):
                add(2, z, _lamp, edge + sgn * 0.45, z, sgn)
                z += step * rng.uniform(0.85, 1.15)
        # street trees
        if rng.random() < 0.45:
            z = rng.uniform(4.0, 15.0)
            step = rng.uniform(8.0, 16.0)
            xt = edge + sgn * (0.25 + lawn / 2 if lawn > 0 else 1.0)
            while z < zmax * 0.7:
                add(2, z, _tree, xt, z, rng.uniform(0.8, 1.2), rng.random() < 0.15)
                z += step * rng.uniform(0.8, 1.2)
        # bollards/sign posts
        for _ in range(int(rng.choice(4, p=(0.2, 0.35, 0.3, 0.15)))):
            tz = rng.uniform(4.0, 30.0)
            add(2, tz, _sign_post, edge + sgn * rng.uniform(0.3, 0.7), tz)
        # pedestrians
        for _ in range(int(rng.choice(6, p=(0.15, 0.25, 0.2, 0.15, 0.15, 0.1)))):
            tz = rng.uniform(3.0, 32.0)
            px = edge + sgn * (0.25 + lawn + rng.uniform(0.3, max(sw - 0.3, 0.4)))
            add(2, tz, _person, px, tz, ("front", "back", "side")[int(rng.integers(3))])
        # parked bicycles and motorcycles
        if rng.random() < 0.4:
            tz = rng.uniform(4.0, 20.0)
            for k in range(int(rng.integers(1, 4))):
                add(2, tz + 0.7 * k, _parked_bicycle,
                    edge + sgn * (0.25 + lawn + 0.6), tz + 0.7 * k)
        if rng.random() < 0.2:
            tz = rng.uniform(4.0, 20.0)
            for k in range(int(rng.integers(1, 3))):
                add(2, tz + 1.2 * k, _parked_motorcycle,
                    edge + sgn * (0.25 + lawn + 0.7), tz + 1.2 * k)
    # a pedestrian guard rail along the curb sometimes (near; preferably on the nearer side)
    r_do, r_side = rng.random(), rng.random()
    rz0, rlen, rh = rng.uniform(2.0, 10.0), rng.uniform(12.0, 30.0), rng.uniform(0.9, 1.2)
    if r_do < 0.4:
        side = near_first[0 if r_side < 0.7 else 1]
        c = sc.colour("fence")
        iid = sc.inst(FENCE, c, 2, abs(side["edge"]))
        dark = sc.inst(FENCE, c * st.side_shade, 2, abs(side["edge"]))
        xp = side["edge"] + side["sgn"] * 0.15
        n_pieces = int(rlen / 2.5)
        for i in range(n_pieces):
            za = rz0 + 2.5 * i
            add(2, za + 1.25, _railing, xp, za, za + 2.5, rh, iid, dark)
    # a standalone traffic light sometimes
    if rng.random() < 0.6:
        side = sides[int(rng.integers(2))]
        tz = rng.uniform(6.0, 28.0)
        add(2, tz, _traffic_light, side["edge"] + side["sgn"] * 0.6, tz, side["sgn"])

    # vehicles per lane; a truck and a bus at a near/middle distance in most images
    # (reserved first, the lanes are filled around them)
    # (each the first vehicle of its lane, in another lane than the other where possible)
    reserved: list[list[tuple[float, float]]] = [[] for _ in range(lanes)]
    for fn, p, length in ((_truck, 0.65, 11.5), (_bus, 0.6, 13.0)):
        want, lane, zb = rng.random() < p, int(rng.integers(lanes)), rng.uniform(6.0, 20.0)
        jx = rng.uniform(-0.3, 0.3)
        if not want:
            continue
        if reserved[lane] and lanes > 1:
            lane = (lane + 1) % lanes
        if lane == ego:
            zb += 5.0
        for a, b in reserved[lane]:
            if zb + length > a:
                zb = b + 2.0
        reserved[lane].append((0.0 if not reserved[lane] else zb - 2.0, zb + length + 2.0))
        add(2, zb, fn, xl + (lane + 0.5) * lw + jx, zb, lane < n_oncoming)
    for lane in range(lanes):
        xc = xl + (lane + 0.5) * lw
        oncoming = lane < n_oncoming
        z = rng.uniform(5.0, 18.0) if lane != ego else rng.uniform(7.0, 25.0)
        while z < min(zmax * 0.8, 80.0):
            if rng.random() < 0.55:
                r = rng.random()
                x = xc + rng.uniform(-0.3, 0.3)
                kind, length = ((_truck, 11.5) if r < 0.12 else (_bus, 13.0) if r < 0.2
                                else (_car, 5.0))
                hit = [b for a, b in reserved[lane] if z < b and z + length > a]
                if hit:
                    z = max(hit)
                else:
                    add(2, z, kind, x, z, oncoming)
                    z += length
            z += rng.uniform(4.0, 25.0)
    # parked cars along the curbs
    for side in sides:
        if rng.random() < 0.35:
            x = side["edge"] - side["sgn"] * 1.1
            z = rng.uniform(4.0, 15.0)
            while z < 60.0:
                add(2, z, _car, x, z, rng.random() < 0.3)
                z += rng.uniform(5.0, 9.0)
    # a tram in the middle of the road
    if rng.random() < 0.06:
        tz = rng.uniform(15.0, 50.0)
        add(2, tz, _bus, (xl + xr) / 2, tz, rng.random() < 0.5, True)
    # riders on the road
    for _ in range(int(rng.choice(3, p=(0.3, 0.42, 0.28)))):
        lane = int(rng.integers(lanes))
        tz = rng.uniform(4.0, 26.0)
        motor = rng.random() < 0.35
        r = rng.random()
        view = "side" if r < 0.25 else "oblique" if r < 0.65 else "back"
        add(2, tz, _rider, xl + (lane + rng.uniform(0.2, 0.8)) * lw, tz, view, motor)
    # pedestrians crossing
    for z0, _z1, _sgn in crossings:
        if z0 < 50 and rng.random() < 0.5:
            for _ in range(int(rng.integers(1, 4))):
                tz = z0 - rng.uniform(0.8, 3.5)
                add(2, tz, _person, rng.uniform(xl, xr), tz, "side")

    # draw far -> near within each layer (0: behind the property line, 1: on it, 2: street)
    jobs.sort(key=lambda j: (j[0], -j[1], j[2]))
    for _layer, _z, _i, (fn, args) in jobs:
        fn(sc, *args)

    # ego-vehicle hood (camera style)
    if st.hood > 0:
        H, W = sc.H, sc.W
        hh = st.hood * H
        hood = sc.inst(IGNORE_INDEX, sc.colour("hood"), 0, 1.0)
        sc.dr.polygon([(0, H), (0, H - 0.45 * hh), (0.12 * W, H - 0.8 * hh), (0.3 * W, H - 0.97 * hh),
                       (0.5 * W, H - hh), (0.7 * W, H - 0.97 * hh), (0.88 * W, H - 0.8 * hh),
                       (W, H - 0.45 * hh), (W, H)], fill=hood)


# ----------------------------------------------------------------------------------------------
# Composition
# ----------------------------------------------------------------------------------------------

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


def _compose(sc: _Scene) -> tuple[np.ndarray, np.ndarray]:
    """Instance image -> (styled RGB image, trainIds).

    The linear colour grade commutes with the multiplicative effects (texture, shadow) and with
    the blend toward the haze colour, so it is applied to the colour tables, not to pixels."""
    st, rng = sc.style, sc.rng
    H, W = sc.H, sc.W
    exposure = float(math.exp(st.exposure_jitter * rng.standard_normal()))
    M = _grade_linear(st, exposure).T
    inst = np.asarray(sc.im)
    labels = np.asarray(sc.cls, np.uint8)[inst]
    table = np.clip(np.asarray(sc.col, np.float32), 0.0, 1.0) @ M
    img = table[inst]
    rows = np.arange(H, dtype=np.float32) + 0.5
    # sky gradient (plus clouds through the sky texture)
    t = np.clip(rows / max(sc.yh, 1.0), 0.0, 1.0)[:, None]
    grad = (np.asarray(st.sky_top, np.float32) * (1 - t)
            + np.asarray(st.sky_bottom, np.float32) * t) @ M
    sky = inst == 0
    ys, xs = np.nonzero(sky)
    img[ys, xs] = grad[ys]

    zrow = (sc.f * sc.h / np.maximum(rows - sc.yh, 0.5)).astype(np.float32)  # ground depth per row
    gain = None  # per-pixel brightness factor (texture, shadows)
    if st.texture > 0:
        tex = _TEX[0][labels] * rng.standard_normal((H, W), dtype=np.float32)
        tex += _TEX[1][labels] * _noise_field(rng, H, W, 4)
        tex += _TEX[2][labels] * _noise_field(rng, H, W, 16)
        # paving lines on near sidewalks, in ground coordinates
        py, px = np.nonzero(labels == SIDEWALK)
        if len(py):
            Z = zrow[py]
            X = (px.astype(np.float32) + 0.5 - sc.vx) / sc.f * Z
            X, Zs = X * 1.6, Z * 1.6
            lines = ((X - np.floor(X)) < 0.1) | ((Zs - np.floor(Zs)) < 0.1)
            tex[py, px] -= lines * np.clip(1.0 - Z / 25.0, 0.0, 1.0) * np.float32(0.25)
        gain = 1.0 + np.float32(st.texture) * tex
    if st.shadow > 0 and sc.shadows:
        mask = Image.new("L", (W, H), 0)
        md = ImageDraw.Draw(mask)
        for poly in sc.shadows:
            if len(poly) >= 3:
                md.polygon([sc.P(x, 0.0, max(z, _ZNEAR)) for x, z in poly], fill=255)
        m = (np.asarray(mask) > 0) & (inst > 0) & (inst < sc.n_ground)
        shade = 1.0 - np.float32(st.shadow) * m
        gain = shade if gain is None else gain * shade
    if st.haze > 0:
        # haze opacity from the depth of each pixel: per instance (constant depth), per row
        # (ground) or per column (facades parallel to the road)
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
            zcol = sc.f / np.maximum(np.abs(np.arange(W, dtype=np.float32) + 0.5 - sc.vx), 0.5)
            a[fy, fx] = hz * (1.0 - np.exp(-dval[inst[fy, fx]] * zcol[fx] * k))
        keep = 1.0 - a
        gain = keep if gain is None else gain * keep
        img *= gain[..., None]
        img += a[..., None] * (np.asarray(st.haze_colour, np.float32) @ M)
    elif gain is not None:
        img *= gain[..., None]
    # contrast around mid grey, clip, vignette and quantise in one pass
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
    if lut is not None:
        out = lut[out]
    if st.blur > 0:
        radius = st.blur * W / 512.0
        out = np.asarray(Image.fromarray(out).filter(ImageFilter.GaussianBlur(radius)))
    if st.noise > 0:
        # sensor noise: mostly luminance, a little chroma
        n = rng.standard_normal((H, W), dtype=np.float32) * np.float32(st.noise)
        noisy = out.astype(np.float32)
        noisy += n[..., None]
        chroma = rng.standard_normal((H, W, 2), dtype=np.float32)
        noisy[..., ::2] += chroma * np.float32(0.35 * st.noise)  # red and blue
        noisy += np.float32(0.5)
        np.clip(noisy, 0, 255, out=noisy)
        out = noisy.astype(np.uint8)
    return np.ascontiguousarray(out), np.ascontiguousarray(labels)


def render_scene(rng: np.random.Generator, size: tuple[int, int],
                 style: StyleConfig) -> tuple[np.ndarray, np.ndarray]:
    """Draw one random street scene in ``style``.

    Returns the (H, W, 3) uint8 image and the (H, W) uint8 Cityscapes trainIds (255 = ignore:
    the ego-vehicle hood). The layout depends only on ``rng`` (the same generator state gives the
    same layout in any style)."""
    sc = _Scene(rng, size, style)
    _layout(sc)
    return _compose(sc)


# ----------------------------------------------------------------------------------------------
# Benchmark files
# ----------------------------------------------------------------------------------------------

TRAINID_TO_LABELID = np.zeros(256, np.uint8)  # ignore -> 0 (unlabeled)
for _lid, _tid in CITYSCAPES_ID_TO_TRAINID.items():
    TRAINID_TO_LABELID[_tid] = _lid

_GTA5_PALETTE = [0] * 768
for _lid, _tid in CITYSCAPES_ID_TO_TRAINID.items():
    _GTA5_PALETTE[3 * _lid: 3 * _lid + 3] = CITYSCAPES_PALETTE[_tid]


def trainid_to_labelid(labels: np.ndarray) -> np.ndarray:
    """Cityscapes trainIds (255 = ignore) -> labelIds (ignore -> 0)."""
    return TRAINID_TO_LABELID[labels]


def _save(im: Image.Image, path: Path, **kw) -> None:
    """Write through a hidden temporary name and rename, so a partial file never has the name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    im.save(tmp, format="PNG", **kw)
    os.replace(tmp, path)


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    os.replace(tmp, path)


_SUBDIRS = ("source", "source_val", "target")


def _jobs(out: Path, n_train: int, n_val: int):
    """(domain index, split index, k, image path, label path, label format) of every file pair."""
    for split_i, (sub, n) in enumerate((("source", n_train), ("source_val", n_val))):
        for k in range(n):
            yield (0, split_i, k, out / sub / "images" / f"{k:05d}.png",
                   out / sub / "labels" / f"{k:05d}.png", "gta5")
    for split_i, (split, n) in enumerate((("train", n_train), ("val", n_val))):
        for k in range(n):
            stem = f"synthcity_000000_{k:06d}"
            yield (1, split_i, k,
                   out / "target" / "leftImg8bit" / split / "synthcity" / f"{stem}_leftImg8bit.png",
                   out / "target" / "gtFine" / split / "synthcity" / f"{stem}_gtFine_labelIds.png",
                   "cityscapes")


def generate_benchmark(out: Path, n_train: int = 400, n_val: int = 100,
                       size: tuple[int, int] = (128, 256), seed: int = 0,
                       progress: bool = True, *, source_style: StyleConfig | None = None,
                       target_style: StyleConfig | None = None,
                       gap: float | None = None) -> Path:
    """Write the two-domain benchmark under ``out`` and return ``out``.

    * ``out/source/{images,labels}/00000.png`` (GTA5 layout, ``n_train`` pairs) and
      ``out/source_val/...`` (``n_val`` pairs): RGB images, palette PNG labels of Cityscapes
      labelIds (ignore -> 0);
    * ``out/target/leftImg8bit/{train,val}/synthcity/synthcity_000000_{k:06d}_leftImg8bit.png`` and
      ``out/target/gtFine/{train,val}/synthcity/..._gtFine_labelIds.png`` (8-bit labelIds);
    * ``out/benchmark.json``: the parameters and ``"complete": true`` (written last).

    A complete benchmark with the same parameters is returned at once. Otherwise the folders
    ``source``, ``source_val`` and ``target`` under ``out`` are removed and rewritten. Image
    ``k`` of a split is drawn from ``default_rng([seed, domain, split, k])`` so the files depend
    only on the parameters (same seed -> byte-identical files).

    The target domain is drawn in ``target_style`` (default :data:`TARGET_STYLE`); ``gap``
    instead picks the camera style ``target_style(gap)`` of that strength (0 = no domain gap,
    1 = the full gap; not both)."""
    out = Path(out)
    H, W = int(size[0]), int(size[1])
    if H < 16 or W < 16:
        raise ValueError(f"image size {size} too small (at least 16x16)")
    if n_train < 0 or n_val < 0:
        raise ValueError("n_train and n_val must be >= 0")
    if gap is not None and target_style is not None:
        raise ValueError("give target_style or gap, not both")
    src = source_style if source_style is not None else SOURCE_STYLE
    if gap is not None:
        tgt = _interpolated_style(float(gap), src)
    else:
        tgt = target_style if target_style is not None else TARGET_STYLE
    params = {
        "format_version": FORMAT_VERSION, "seed": int(seed), "size": [H, W],
        "n_train": int(n_train), "n_val": int(n_val),
        "source_style": asdict(src), "target_style": asdict(tgt),
    }
    params = json.loads(json.dumps(params))  # tuples -> lists, as read back
    meta = out / "benchmark.json"
    if meta.is_file():
        try:
            old = json.loads(meta.read_text())
        except (OSError, ValueError):
            old = {}
        if old.get("complete") is True and all(old.get(k) == v for k, v in params.items()):
            return out
    out.mkdir(parents=True, exist_ok=True)
    _write_json(meta, {**params, "complete": False})
    for sub in _SUBDIRS:
        if (out / sub).is_dir():
            shutil.rmtree(out / sub)

    jobs = list(_jobs(out, n_train, n_val))
    bar = None
    if progress:
        try:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )
            bar = Progress(TextColumn("synthetic benchmark"), BarColumn(), MofNCompleteColumn(),
                           TimeRemainingColumn(), transient=True)
        except ImportError:  # pragma: no cover - rich is a dependency
            bar = None
    task = None
    if bar is not None:
        bar.start()
        task = bar.add_task("generate", total=len(jobs))
    try:
        for domain, split_i, k, img_path, lbl_path, fmt in jobs:
            rng = np.random.default_rng([int(seed), domain, split_i, k])
            image, labels = render_scene(rng, (H, W), src if domain == 0 else tgt)
            _save(Image.fromarray(image, "RGB"), img_path, compress_level=1)
            ids = trainid_to_labelid(labels)
            if fmt == "gta5":
                lbl = Image.frombytes("P", (W, H), ids.tobytes())
                lbl.putpalette(_GTA5_PALETTE)
                _save(lbl, lbl_path)
            else:
                _save(Image.fromarray(ids, "L"), lbl_path)
            if bar is not None:
                bar.advance(task)
    finally:
        if bar is not None:
            bar.stop()
    _write_json(meta, {
        **params,
        "layout": {"source": "gta5", "source_val": "gta5", "target": "cityscapes",
                   "city": "synthcity"},
        "complete": True,
    })
    return out
