"""A random street layout, drawn with the painter's algorithm.

:func:`layout` picks the road (lanes, sidewalks, what lines each side), paints the ground at
once, then queues every upright object with a depth key and draws the queue far -> near. The
random draws happen in a fixed order (the helpers below are called in that order, and each draws
in the order its code reads), so one generator state always gives the same street.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from diga.classes import IGNORE_INDEX

from . import people, roadside, street_furniture, vehicles
from .materials import BUILDING, FENCE, ROAD, SIDEWALK, TERRAIN, VEG
from .scene import ZFAR, ZNEAR, Scene


@dataclass
class _Side:
    """One side of the road: ``sgn`` -1 left, 1 right; x positions in metres from the camera."""

    sgn: int
    edge: float   # the curb
    lawn: float   # a grass strip between curb and sidewalk (0: none)
    sw: float     # sidewalk width
    prop: float   # the property line behind the sidewalk
    segs: list[list] = field(default_factory=list)  # [kind, z0, z1] along the street
    g_yard: int = 0  # instance of the paved front yards


@dataclass
class _Road:
    lanes: int
    lw: float          # lane width
    ego: int           # the camera's lane
    xl: float          # left and right road edges
    xr: float
    two_way: bool
    n_oncoming: int    # the first lanes (from the left) carry oncoming traffic
    zmax: float        # where the street ends (a band of far buildings and trees)
    sides: list[_Side]


@dataclass
class _Ground:
    """Instances of the ground shared by later steps, and the side streets' (z0, z1, sgn)."""

    terrain: int
    road: int
    lane: int
    yellow: int
    crossings: list[tuple[float, float, int]]


class _DrawQueue:
    """Upright objects waiting to be drawn: far -> near within each layer (0: behind the property
    line, 1: on it, 2: the street), in insertion order at equal depth."""

    def __init__(self) -> None:
        self.jobs: list[tuple[int, float, int, tuple[Callable, tuple]]] = []

    def add(self, layer: int, zkey: float, fn: Callable, *args) -> None:
        self.jobs.append((layer, zkey, len(self.jobs), (fn, args)))

    def draw(self, sc: Scene) -> None:
        self.jobs.sort(key=lambda j: (j[0], -j[1], j[2]))
        for _layer, _z, _i, (fn, args) in self.jobs:
            fn(sc, *args)


def layout(sc: Scene) -> None:
    """Lay out one random street in ``sc`` and draw it (ground, upright objects, the hood)."""
    rng = sc.rng
    sx, sz = sc.style.sun
    sc.sun = (sx * (1 if rng.random() < 0.5 else -1), sz)
    road = _road(rng)
    for side in road.sides:
        side.segs = _side_segments(rng, road.zmax)
    near_first = sorted(road.sides, key=lambda sd: abs(sd.prop))
    _place_wall_and_fence(rng, near_first)

    ground = _paint_ground(sc, road)
    _paint_lane_marks(sc, road, ground)
    _paint_crosswalks(sc, road, ground)
    sc.n_ground = len(sc.cls)

    queue = _DrawQueue()
    _far_band(rng, road, queue)
    for side in road.sides:
        for kind, z0, z1 in side.segs:
            _SEGMENT_OBJECTS[kind](sc, side, z0, z1, ground, queue)
        _sidewalk_furniture(rng, side, road.zmax, queue)
        _sidewalk_people(rng, side, queue)
    _guard_rail(sc, near_first, queue)
    _standalone_traffic_light(rng, road.sides, queue)
    reserved = _truck_and_bus(rng, road, queue)
    _lane_traffic(rng, road, reserved, queue)
    _parked_cars(rng, road.sides, queue)
    _tram(rng, road, queue)
    _riders(rng, road, queue)
    _crossing_pedestrians(rng, road, ground.crossings, queue)
    queue.draw(sc)
    _hood(sc)


# -- the street plan ------------------------------------------------------------------------------

def _road(rng: np.random.Generator) -> _Road:
    """The road cross-section: lanes, the camera's lane, sidewalks and property lines."""
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
        sides.append(_Side(sgn=sgn, edge=edge, lawn=lawn, sw=sw, prop=edge + sgn * (lawn + sw)))
    return _Road(lanes, lw, ego, xl, xr, two_way, n_oncoming, zmax, sides)


def _side_segments(rng: np.random.Generator, zmax: float) -> list[list]:
    """What lines one side of the street, segment by segment: [kind, z0, z1]."""
    segs: list[list] = []
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
    return segs


def _place_wall_and_fence(rng: np.random.Generator, near_first: list[_Side]) -> None:
    """Most images get a wall and a fence at a near/middle distance (far away they are thin
    slivers along the street): the segments there become one, preferably on the nearer side."""
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
            segs = side.segs
            zt = r_z * abs(side.prop)  # about where it comes into view of the narrower camera
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


# -- the ground (painted at once, before any upright object) --------------------------------------

def _paint_ground(sc: Scene, road: _Road) -> _Ground:
    """Terrain, the road, and each side's curb, lawn, sidewalk and side streets."""
    g_terrain = sc.inst(TERRAIN, sc.colour("grass"), 1)
    sc.ground(-400.0, 400.0, ZNEAR, ZFAR, g_terrain)
    g_road = sc.inst(ROAD, sc.colour("road"), 1)
    sc.ground(road.xl, road.xr, ZNEAR, ZFAR, g_road)
    g_lane = sc.inst(ROAD, sc.colour("lane", 0), 1)
    g_yellow = sc.inst(ROAD, sc.colour("lane", 1), 1)
    crossings: list[tuple[float, float, int]] = []
    for side in road.sides:
        crossings += _paint_side_ground(sc, side, road.zmax, g_road)
    return _Ground(g_terrain, g_road, g_lane, g_yellow, crossings)


def _paint_side_ground(sc: Scene, side: _Side, zmax: float, g_road: int) -> list[tuple[float, float, int]]:
    """One side's curb, lawn and sidewalk (broken by side streets), the side streets' road and
    the grass behind parks and fences; returns the side streets as (z0, z1, sgn)."""
    sgn, edge, lawn, prop = side.sgn, side.edge, side.lawn, side.prop
    si = int(sc.rng.integers(2))
    g_side = sc.inst(SIDEWALK, sc.colour("sidewalk", si), 1)
    g_curb = sc.inst(SIDEWALK, sc.colour("curb"), 1)
    g_lawn = sc.inst(TERRAIN, sc.colour("grass"), 1)
    g_back = sc.inst(TERRAIN, sc.colour("grass"), 1)
    side.g_yard = sc.inst(SIDEWALK, sc.colour("sidewalk", 1 - si), 1)
    spans = [(s[1], s[2]) for s in side.segs if s[0] != "street"] + [(zmax, ZFAR)]
    for z0, z1 in spans:
        a, b = sorted((edge, edge + sgn * 0.25))
        sc.ground(a, b, z0, z1, g_curb)
        if lawn > 0:
            a, b = sorted((edge + sgn * 0.25, edge + sgn * (0.25 + lawn)))
            sc.ground(a, b, z0, z1, g_lawn)
        a, b = sorted((edge + sgn * (lawn + 0.25 * (lawn == 0)), prop))
        sc.ground(a, b, z0, z1, g_side)
    crossings = []
    for kind, z0, z1 in side.segs:
        if kind == "street":
            a, b = sorted((edge, sgn * 400.0))
            sc.ground(a, b, z0, z1, g_road)
            crossings.append((z0, z1, sgn))
        elif kind in ("park", "fence"):
            a, b = sorted((prop, sgn * 400.0))
            sc.ground(a, b, z0, z1, g_back)
    return crossings


def _paint_lane_marks(sc: Scene, road: _Road, ground: _Ground) -> None:
    """Dashed lane lines, a (double) yellow centre line on two-way roads, sometimes edge lines."""
    rng, xl, lw = sc.rng, road.xl, road.lw
    dash, period = rng.uniform(2.0, 4.0), rng.uniform(7.0, 12.0)
    off = rng.uniform(0, period)
    for b in range(1, road.lanes):
        x = xl + b * lw
        if road.two_way and b == road.n_oncoming:
            for dx in ((-0.12, 0.12) if rng.random() < 0.5 else (0.0,)):
                sc.ground(x + dx - 0.06, x + dx + 0.06, 1.0, ZFAR, ground.yellow)
            continue
        z = off
        while z < road.zmax:
            if sc.f * 0.15 / max(z, 1.0) < 0.15:
                break
            sc.ground(x - 0.08, x + 0.08, z, z + dash, ground.lane)
            z += period
    if rng.random() < 0.5:
        for x in (xl + 0.3, road.xr - 0.3):
            sc.ground(x - 0.07, x + 0.07, 1.0, ZFAR, ground.lane)


def _paint_crosswalks(sc: Scene, road: _Road, ground: _Ground) -> None:
    """Zebra crossings (and sometimes a stop line) before near side streets."""
    rng, xl, xr = sc.rng, road.xl, road.xr
    for z0, _z1, _sgn in ground.crossings:
        if z0 < 60 and rng.random() < 0.6:
            x = xl + 0.4
            while x < xr - 0.4:
                sc.ground(x, x + 0.5, z0 - 4.0, z0 - 0.5, ground.lane)
                x += 1.0
            if rng.random() < 0.5:  # stop line
                sc.ground(xl + 0.2, xr - 0.2, z0 - 5.5, z0 - 5.1, ground.lane)


# -- what lines the street --------------------------------------------------------------------------

def _far_band(rng: np.random.Generator, road: _Road, queue: _DrawQueue) -> None:
    """Buildings and tree rows across the end of the street (often open over the road)."""
    zf = road.zmax + rng.uniform(5.0, 30.0)
    keep_open = rng.random() < 0.6
    x = -260.0
    while x < 260.0:
        w = rng.uniform(12.0, 40.0)
        a, b = x, x + w
        x = b
        if keep_open and b > road.xl - 2 and a < road.xr + 2:
            continue
        if rng.random() < 0.7:
            queue.add(0, zf + rng.uniform(0, 15), roadside.far_box, a, b, zf, rng.uniform(6.0, 45.0),
                      BUILDING)
        else:
            queue.add(0, zf + rng.uniform(0, 15), roadside.far_box, a, b, zf, rng.uniform(6.0, 14.0),
                      VEG)


def _building_segment(sc: Scene, side: _Side, z0: float, z1: float, ground: _Ground,
                      queue: _DrawQueue) -> None:
    """A building, sometimes set back behind a front yard with a low wall or fence."""
    rng, sgn, prop = sc.rng, side.sgn, side.prop
    setback = 0.0 if rng.random() < 0.6 else rng.uniform(1.0, 4.0)
    xf = prop + sgn * setback
    if setback > 0:
        a, b = sorted((prop, xf))
        sc.ground(a, b, z0, z1, side.g_yard if rng.random() < 0.5 else ground.terrain)
        r, hy = rng.random(), rng.uniform(1.0, 1.8)
        if r < 0.2:  # a front-yard wall or fence
            queue.add(1, z0, roadside.wall, sgn, prop, z0, z1, hy)
        elif r < 0.4:
            queue.add(1, z0, roadside.fence, sgn, prop, z0, z1, hy)
    height = (rng.uniform(4.5, 10.0), rng.uniform(10.0, 22.0),
              rng.uniform(22.0, 45.0))[int(rng.choice(3, p=(0.3, 0.45, 0.25)))]
    queue.add(0, z0, roadside.building, sgn, xf, z0, z1, height, rng.uniform(10.0, 25.0))


def _park_segment(sc: Scene, side: _Side, z0: float, z1: float, ground: _Ground,
                  queue: _DrawQueue) -> None:
    """Trees on grass, sometimes a hedge along the sidewalk and a building behind."""
    rng, sgn, prop = sc.rng, side.sgn, side.prop
    for _ in range(int(rng.integers(1, 5))):
        tz = rng.uniform(z0, z1)
        if tz > 3.0:
            queue.add(0, tz, roadside.tree, prop + sgn * rng.uniform(2.0, 14.0), tz,
                      rng.uniform(0.8, 1.5), rng.random() < 0.3)
    if rng.random() < 0.4:
        queue.add(1, z0, roadside.hedge, sgn, prop, z0, z1, rng.uniform(0.9, 1.8))
    if rng.random() < 0.5:
        queue.add(0, z0 + 1, roadside.building, sgn, prop + sgn * rng.uniform(15.0, 30.0), z0, z1,
                  rng.uniform(8.0, 30.0), 15.0)


def _wall_segment(sc: Scene, side: _Side, z0: float, z1: float, ground: _Ground,
                  queue: _DrawQueue) -> None:
    """A solid wall on the property line, a building or trees behind it."""
    rng, sgn, prop = sc.rng, side.sgn, side.prop
    wh = rng.uniform(1.6, 3.2)
    queue.add(1, z0, roadside.wall, sgn, prop, z0, z1, wh)
    if rng.random() < 0.6:
        queue.add(0, z0, roadside.building, sgn, prop + sgn * rng.uniform(3.0, 10.0), z0, z1,
                  rng.uniform(6.0, 25.0), 15.0)
    else:
        for _ in range(int(rng.integers(1, 4))):
            tz = rng.uniform(max(z0, 3.0), max(z1, 3.5))
            queue.add(0, tz, roadside.tree, prop + sgn * rng.uniform(2.0, 8.0), tz, 1.0, False)


def _fence_segment(sc: Scene, side: _Side, z0: float, z1: float, ground: _Ground,
                   queue: _DrawQueue) -> None:
    """A see-through fence on the property line, sometimes a building and trees behind it."""
    rng, sgn, prop = sc.rng, side.sgn, side.prop
    queue.add(1, z0, roadside.fence, sgn, prop, z0, z1, rng.uniform(1.6, 2.8))
    if rng.random() < 0.5:
        queue.add(0, z0, roadside.building, sgn, prop + sgn * rng.uniform(6.0, 20.0), z0, z1,
                  rng.uniform(6.0, 25.0), 15.0)
    for _ in range(int(rng.integers(0, 3))):
        tz = rng.uniform(max(z0, 3.0), max(z1, 3.5))
        queue.add(0, tz, roadside.tree, prop + sgn * rng.uniform(2.0, 10.0), tz, 1.0,
                  rng.random() < 0.3)


def _side_street_segment(sc: Scene, side: _Side, z0: float, z1: float, ground: _Ground,
                         queue: _DrawQueue) -> None:
    """A side street: a building across it, traffic lights on its near corners."""
    rng, sgn, edge = sc.rng, side.sgn, side.edge
    queue.add(0, z0 + 40, roadside.building, sgn, sgn * (abs(side.prop) + rng.uniform(30.0, 60.0)),
              z0 - 5, z1 + 5, rng.uniform(8.0, 30.0), 15.0)
    if 5.0 < z0 < 50.0 and rng.random() < 0.8:
        tz = z0 - rng.uniform(0.5, 2.0)
        queue.add(2, tz, street_furniture.traffic_light, edge + sgn * 0.6, tz, sgn)
    if z1 < 50.0 and rng.random() < 0.4:
        tz = z1 + rng.uniform(0.5, 2.0)
        queue.add(2, tz, street_furniture.traffic_light, edge + sgn * 0.6, tz, sgn)


_SEGMENT_OBJECTS = {
    "building": _building_segment, "park": _park_segment, "wall": _wall_segment,
    "fence": _fence_segment, "street": _side_street_segment,
}


# -- on the sidewalks ---------------------------------------------------------------------------------

def _sidewalk_furniture(rng: np.random.Generator, side: _Side, zmax: float,
                        queue: _DrawQueue) -> None:
    """Street lamps (few far away, where they would be specks), street trees, sign posts."""
    sgn, edge, lawn = side.sgn, side.edge, side.lawn
    if rng.random() < 0.85:
        z = rng.uniform(3.0, 14.0)
        step = rng.uniform(12.0, 24.0)
        while z < min(zmax, 70.0):
            queue.add(2, z, street_furniture.lamp, edge + sgn * 0.45, z, sgn)
            z += step * rng.uniform(0.85, 1.15)
    if rng.random() < 0.45:
        z = rng.uniform(4.0, 15.0)
        step = rng.uniform(8.0, 16.0)
        xt = edge + sgn * (0.25 + lawn / 2 if lawn > 0 else 1.0)
        while z < zmax * 0.7:
            queue.add(2, z, roadside.tree, xt, z, rng.uniform(0.8, 1.2), rng.random() < 0.15)
            z += step * rng.uniform(0.8, 1.2)
    for _ in range(int(rng.choice(4, p=(0.2, 0.35, 0.3, 0.15)))):
        tz = rng.uniform(4.0, 30.0)
        queue.add(2, tz, street_furniture.sign_post, edge + sgn * rng.uniform(0.3, 0.7), tz)


def _sidewalk_people(rng: np.random.Generator, side: _Side, queue: _DrawQueue) -> None:
    """Pedestrians, and sometimes a row of parked bicycles or motorcycles."""
    sgn, edge, lawn, sw = side.sgn, side.edge, side.lawn, side.sw
    for _ in range(int(rng.choice(6, p=(0.15, 0.25, 0.2, 0.15, 0.15, 0.1)))):
        tz = rng.uniform(3.0, 32.0)
        px = edge + sgn * (0.25 + lawn + rng.uniform(0.3, max(sw - 0.3, 0.4)))
        queue.add(2, tz, people.person, px, tz, ("front", "back", "side")[int(rng.integers(3))])
    if rng.random() < 0.4:
        tz = rng.uniform(4.0, 20.0)
        for k in range(int(rng.integers(1, 4))):
            queue.add(2, tz + 0.7 * k, people.parked_bicycle,
                      edge + sgn * (0.25 + lawn + 0.6), tz + 0.7 * k)
    if rng.random() < 0.2:
        tz = rng.uniform(4.0, 20.0)
        for k in range(int(rng.integers(1, 3))):
            queue.add(2, tz + 1.2 * k, people.parked_motorcycle,
                      edge + sgn * (0.25 + lawn + 0.7), tz + 1.2 * k)


def _guard_rail(sc: Scene, near_first: list[_Side], queue: _DrawQueue) -> None:
    """Sometimes a pedestrian guard rail along the curb (near; preferably on the nearer side),
    queued in 2.5 m pieces so that it sorts correctly against the street objects."""
    rng = sc.rng
    r_do, r_side = rng.random(), rng.random()
    rz0, rlen, rh = rng.uniform(2.0, 10.0), rng.uniform(12.0, 30.0), rng.uniform(0.9, 1.2)
    if r_do >= 0.4:
        return
    side = near_first[0 if r_side < 0.7 else 1]
    c = sc.colour("fence")
    iid = sc.inst(FENCE, c, 2, abs(side.edge))
    dark = sc.inst(FENCE, c * sc.style.side_shade, 2, abs(side.edge))
    xp = side.edge + side.sgn * 0.15
    for i in range(int(rlen / 2.5)):
        za = rz0 + 2.5 * i
        queue.add(2, za + 1.25, roadside.railing, xp, za, za + 2.5, rh, iid, dark)


def _standalone_traffic_light(rng: np.random.Generator, sides: list[_Side],
                              queue: _DrawQueue) -> None:
    if rng.random() < 0.6:
        side = sides[int(rng.integers(2))]
        tz = rng.uniform(6.0, 28.0)
        queue.add(2, tz, street_furniture.traffic_light, side.edge + side.sgn * 0.6, tz, side.sgn)


# -- on the road --------------------------------------------------------------------------------------

def _truck_and_bus(rng: np.random.Generator, road: _Road,
                   queue: _DrawQueue) -> list[list[tuple[float, float]]]:
    """A truck and a bus at a near/middle distance in most images, each the first vehicle of its
    lane (in another lane than the other where possible); returns each lane's reserved (z0, z1)
    spans, which the lane traffic is filled around."""
    lanes = road.lanes
    reserved: list[list[tuple[float, float]]] = [[] for _ in range(lanes)]
    for fn, p, length in ((vehicles.truck, 0.65, 11.5), (vehicles.bus, 0.6, 13.0)):
        want, lane, zb = rng.random() < p, int(rng.integers(lanes)), rng.uniform(6.0, 20.0)
        jx = rng.uniform(-0.3, 0.3)
        if not want:
            continue
        if reserved[lane] and lanes > 1:
            lane = (lane + 1) % lanes
        if lane == road.ego:
            zb += 5.0
        for a, b in reserved[lane]:
            if zb + length > a:
                zb = b + 2.0
        reserved[lane].append((0.0 if not reserved[lane] else zb - 2.0, zb + length + 2.0))
        queue.add(2, zb, fn, road.xl + (lane + 0.5) * road.lw + jx, zb, lane < road.n_oncoming)
    return reserved


def _lane_traffic(rng: np.random.Generator, road: _Road, reserved: list[list[tuple[float, float]]],
                  queue: _DrawQueue) -> None:
    """Cars (and some trucks and buses) in every lane, clear of the reserved spans."""
    for lane in range(road.lanes):
        xc = road.xl + (lane + 0.5) * road.lw
        oncoming = lane < road.n_oncoming
        z = rng.uniform(5.0, 18.0) if lane != road.ego else rng.uniform(7.0, 25.0)
        while z < min(road.zmax * 0.8, 80.0):
            if rng.random() < 0.55:
                r = rng.random()
                x = xc + rng.uniform(-0.3, 0.3)
                kind, length = ((vehicles.truck, 11.5) if r < 0.12 else (vehicles.bus, 13.0) if r < 0.2
                                else (vehicles.car, 5.0))
                hit = [b for a, b in reserved[lane] if z < b and z + length > a]
                if hit:
                    z = max(hit)
                else:
                    queue.add(2, z, kind, x, z, oncoming)
                    z += length
            z += rng.uniform(4.0, 25.0)


def _parked_cars(rng: np.random.Generator, sides: list[_Side], queue: _DrawQueue) -> None:
    for side in sides:
        if rng.random() < 0.35:
            x = side.edge - side.sgn * 1.1
            z = rng.uniform(4.0, 15.0)
            while z < 60.0:
                queue.add(2, z, vehicles.car, x, z, rng.random() < 0.3)
                z += rng.uniform(5.0, 9.0)


def _tram(rng: np.random.Generator, road: _Road, queue: _DrawQueue) -> None:
    """Rarely a tram in the middle of the road."""
    if rng.random() < 0.06:
        tz = rng.uniform(15.0, 50.0)
        queue.add(2, tz, vehicles.bus, (road.xl + road.xr) / 2, tz, rng.random() < 0.5, True)


def _riders(rng: np.random.Generator, road: _Road, queue: _DrawQueue) -> None:
    """Up to two cyclists or motorcyclists on the road, seen from the side, obliquely or behind."""
    for _ in range(int(rng.choice(3, p=(0.3, 0.42, 0.28)))):
        lane = int(rng.integers(road.lanes))
        tz = rng.uniform(4.0, 26.0)
        motor = rng.random() < 0.35
        r = rng.random()
        view = "side" if r < 0.25 else "oblique" if r < 0.65 else "back"
        queue.add(2, tz, people.rider, road.xl + (lane + rng.uniform(0.2, 0.8)) * road.lw, tz, view,
                  motor)


def _crossing_pedestrians(rng: np.random.Generator, road: _Road,
                          crossings: list[tuple[float, float, int]], queue: _DrawQueue) -> None:
    """Pedestrians crossing the road before near side streets."""
    for z0, _z1, _sgn in crossings:
        if z0 < 50 and rng.random() < 0.5:
            for _ in range(int(rng.integers(1, 4))):
                tz = z0 - rng.uniform(0.8, 3.5)
                queue.add(2, tz, people.person, rng.uniform(road.xl, road.xr), tz, "side")


def _hood(sc: Scene) -> None:
    """The ego-vehicle hood of the camera style (labelled ignore), drawn over everything."""
    st = sc.style
    if st.hood <= 0:
        return
    H, W = sc.H, sc.W
    hh = st.hood * H
    hood = sc.inst(IGNORE_INDEX, sc.colour("hood"), 0, 1.0)
    sc.dr.polygon([(0, H), (0, H - 0.45 * hh), (0.12 * W, H - 0.8 * hh), (0.3 * W, H - 0.97 * hh),
                   (0.5 * W, H - hh), (0.7 * W, H - 0.97 * hh), (0.88 * W, H - 0.8 * hh),
                   (W, H - 0.45 * hh), (W, H)], fill=hood)
