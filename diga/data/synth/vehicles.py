"""Drawers of cars, trucks, buses and trams (each a few boxes seen from the front or back)."""

from __future__ import annotations

from .materials import BUS, CAR, TRAIN, TRUCK
from .scene import Scene


def car(sc: Scene, xc, z0, front: bool) -> None:
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


def truck(sc: Scene, xc, z0, front: bool) -> None:
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


def bus(sc: Scene, xc, z0, front: bool, tram: bool = False) -> None:
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
