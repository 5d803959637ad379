"""Drawers of pedestrians, riders and their (or parked) bicycles and motorcycles."""

from __future__ import annotations

from .materials import BIKE, MOTO, PERSON, RIDER
from .scene import Scene

# Minimum on-screen sizes, in pixels per metre of a 256-pixel-wide image (see Scene.bbm):
# pedestrians and two-wheelers never shrink below them.
_MIN_S_PERSON = 8.0    # a 1.75 m pedestrian -> at least ~12 px tall, ~4 px wide
_MIN_S_RIDER = 9.0     # two-wheelers (and their riders) -> wheels at least ~6 px across


def _person_colours(sc: Scene, z, cls):
    return (sc.new(cls, "cloth", z), sc.new(cls, "pants", z), sc.new(cls, "skin", z),
            sc.new(cls, "hair", z))


def person(sc: Scene, x, z, view: str, cls: int = PERSON) -> None:
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


def _bicycle_side(sc: Scene, u, v, s, d, z, c: float = 1.0) -> None:
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


def _motorcycle_side(sc: Scene, u, v, s, d, z, c: float = 1.0) -> None:
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


def rider(sc: Scene, x, z, view: str, motor: bool) -> None:
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


def parked_bicycle(sc: Scene, x, z) -> None:
    u, v, s = sc.bbm(x, z, _MIN_S_RIDER)
    d = 1 if sc.rng.random() < 0.5 else -1
    c = 1.0 if sc.rng.random() < 0.5 else sc.rng.uniform(0.45, 0.7)
    _bicycle_side(sc, u, v, s, d, z, c)


def parked_motorcycle(sc: Scene, x, z) -> None:
    u, v, s = sc.bbm(x, z, _MIN_S_RIDER)
    d = 1 if sc.rng.random() < 0.5 else -1
    c = 1.0 if sc.rng.random() < 0.5 else sc.rng.uniform(0.45, 0.7)
    _motorcycle_side(sc, u, v, s, d, z, c)
    sc.shadow_blob(x, z, 0.6, 0.4)
