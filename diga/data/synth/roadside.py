"""Drawers of what lines the street: buildings, the far band at the end of the street, walls,
fences, guard rails, hedges and trees."""

from __future__ import annotations

import numpy as np

from .materials import BUILDING, FENCE, MATERIALS, VEG, WALL
from .scene import Scene


def building(sc: Scene, sgn: int, xf: float, z0: float, z1: float, height: float, depth: float,
              windows: bool = True) -> None:
    """A building whose facade (facing the road) is the plane x = xf."""
    rng = sc.rng
    z0 = max(z0, 0.5)
    if z1 <= z0 + 0.5:
        return
    ci = int(rng.integers(len(MATERIALS["building"][0])))
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


def far_box(sc: Scene, x0, x1, z, height, cls) -> None:
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


def wall(sc: Scene, sgn, xp, z0, z1, height) -> None:
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


def fence(sc: Scene, sgn, xp, z0, z1, height) -> None:
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


def railing(sc: Scene, xp, za, zb, height, iid, dark) -> None:
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


def hedge(sc: Scene, sgn, xp, z0, z1, height) -> None:
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


def tree(sc: Scene, x, z, scale=1.0, conifer=False) -> None:
    rng = sc.rng
    u, v, s = sc.bb(x, z)
    trunk = sc.new(VEG, "trunk", z)
    th = rng.uniform(1.6, 3.0) * scale
    sc.bbar(u, v, s, 0.0, rng.uniform(0.22, 0.4) * scale, 0.0, th + 0.5 * scale, trunk)
    li = int(rng.integers(len(MATERIALS["leaf"][0])))
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
