"""Drawers of street furniture on the sidewalk edge: lamps, traffic lights and sign posts."""

from __future__ import annotations

import math

from .materials import LIGHT, POLE, SIGN
from .scene import Scene

# Minimum on-screen sizes, in pixels per metre of a 256-pixel-wide image (see Scene.bbm): the
# heads of traffic lights and signs never shrink below them.
_MIN_S_LIGHT = 11.0    # a 0.6 x 1.2 m light box -> at least 6.6 x 13.2 px
_MIN_S_SIGN_D = 8.0    # sign diameter in pixels
_POLE_PX = 3.0         # poles are at least 3 px wide


def lamp(sc: Scene, x, z, sgn) -> None:
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


def _light_box(sc: Scene, u, v, s, cx, ytop, front, z) -> None:
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


def traffic_light(sc: Scene, x, z, sgn) -> None:
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


def _sign(sc: Scene, u, v, s, kind, z, front=True, r: float | None = None) -> float:
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


def sign_post(sc: Scene, x, z) -> None:
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
