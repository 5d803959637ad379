"""One image being drawn: the camera (horizon, vanishing point, focal length), the table of
instances (class, colour, depth of each) and the drawing primitives of the object drawers.

Everything is drawn as instance ids into one 32-bit image; :mod:`.render` later turns the ids
into classes and colours, so labels and pixels align exactly.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from .materials import EMISSIVE, MATERIALS, SKY
from .style import StyleConfig

ZNEAR = 0.3   # metres: ground polygons start here (well below the bottom image row)
ZFAR = 3000.0  # metres: "infinitely" far end of road and sidewalks


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


class Scene:
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
        self.sun: tuple[float, float] = style.sun  # the layout mirrors it at random
        self.n_ground = 1
        self.lights: list[int] = []  # instances of an emissive material (see materials.EMISSIVE)

    # -- instances and colours ----------------------------------------------------------------
    def colour(self, name: str, idx: int | None = None, shade: float = 1.0) -> np.ndarray:
        game, photo = MATERIALS[name]
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
        iid = self.inst(cls, self.colour(name, idx, shade), 0, z)
        if name in EMISSIVE:
            self.lights.append(iid)
        return iid

    # -- projection and drawing -----------------------------------------------------------------
    def P(self, x: float, y: float, z: float) -> tuple[float, float]:
        return (self.vx + self.f * x / z, self.yh + self.f * (self.h - y) / z)

    def poly(self, pts3, iid: int) -> None:
        f, vx, yh, h = self.f, self.vx, self.yh, self.h
        self.dr.polygon([(vx + f * x / z, yh + f * (h - y) / z) for x, y, z in pts3], fill=iid)

    def ground(self, x0: float, x1: float, z0: float, z1: float, iid: int) -> None:
        z0 = max(z0, ZNEAR)
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
