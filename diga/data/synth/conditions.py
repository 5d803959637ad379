"""Named target conditions: shifts of the target domain that adaptation was not tuned on.

Each condition is a documented transformation of the target domain's rendering with a
``strength`` in (0, 1] (1 = the full condition, smaller = proportionally milder):

* ``camera``  -- another camera: higher, narrower field of view, pitched down (geometry, so the
  labels move with the picture);
* ``texture`` -- another rendering style: posterised colours, hatching, outlines;
* ``fog``     -- dense haze growing with depth, grey sky, lower contrast, no shadows;
* ``rain``    -- duller light, rain streaks, water on the lens, noise;
* ``night``   -- low light, lights glowing, high-gain sensor noise;
* ``color``   -- a white-balance error (a warm colour cast).

All but ``camera`` keep the labels of the plain target image exactly: the same scene, drawn
differently. Conditions compose in the fixed order above, whatever order they are given in:
the camera and the rendering style first (they decide what is drawn and how), then the
weather between scene and camera (fog, rain: the streaks are lit like the rest of the scene),
the light on all of it (night) and last the camera's own processing (colour balance). Each condition changes the style before
the scene is drawn, retouches the finished image, or both (see :mod:`.effects`).

Tuning and evaluation: choose methods and settings on ``color``, ``fog`` and ``camera``; keep
``night``, ``rain`` and ``texture`` (``held_out``) for the final numbers, so that they measure
shifts nobody tuned for.

Randomness: the scene is drawn from the very generator it is drawn from without conditions, so
a condition never changes the layout's draws; every condition draws from its own generator,
seeded from the image's key and the condition's fixed stream number, so adding or removing
one condition changes neither the scene nor the draws of any other.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from diga.errors import ConfigError

from . import effects
from .render import Layers, render_layers, render_scene
from .style import StyleConfig

Restyle = Callable[[StyleConfig, float, np.random.Generator], StyleConfig]
Retouch = Callable[[np.ndarray, Layers, float, np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class Condition:
    """One named condition: what it changes before drawing and after compositing."""

    name: str
    stream: int  # its random stream; fixed forever, so its draws never depend on the others
    summary: str
    held_out: bool  # kept for the final evaluation: choose settings on the other conditions
    changes_labels: bool = False
    restyle: Restyle | None = None
    retouch: Retouch | None = None


# In the order they are applied.
CONDITIONS: dict[str, Condition] = {c.name: c for c in (
    Condition("camera", 1, "a higher camera with a narrower field of view, pitched down",
              held_out=False, changes_labels=True, restyle=effects.camera_restyle),
    Condition("texture", 2, "a drawn rendering style: posterised colours, hatching, outlines",
              held_out=True, restyle=effects.texture_restyle, retouch=effects.texture_retouch),
    Condition("fog", 3, "dense haze growing with depth, a grey sky, lower contrast",
              held_out=False, restyle=effects.fog_restyle),
    Condition("rain", 5, "duller light, rain streaks, water on the lens, noise",
              held_out=True, retouch=effects.rain_retouch),
    Condition("night", 4, "low light, glowing lights, high-gain sensor noise",
              held_out=True, restyle=effects.night_restyle, retouch=effects.night_retouch),
    Condition("color", 6, "a white-balance error (a warm colour cast)",
              held_out=False, retouch=effects.colour_retouch),
)}

_STREAMS = 0x636F6E64  # separates the conditions' seeds from the scenes' seeds


@dataclass(frozen=True)
class ConditionSpec:
    """A chosen condition and its strength."""

    name: str
    strength: float = 1.0

    def __str__(self) -> str:
        return f"{self.name}:{self.strength:g}"


def parse_conditions(conditions: Iterable[str | ConditionSpec | tuple[str, float]]
                     ) -> tuple[ConditionSpec, ...]:
    """Check ``NAME[:STRENGTH]`` strings, ``(name, strength)`` pairs or specs and return them
    in the order they are applied. Raises :class:`~diga.errors.ConfigError` naming the valid
    conditions for an unknown name, a strength outside (0, 1] or a condition given twice."""
    if isinstance(conditions, (str, ConditionSpec)):
        conditions = [conditions]
    specs: dict[str, ConditionSpec] = {}
    for item in conditions:
        spec = _parse_one(item)
        if spec.name in specs:
            raise ConfigError(f"target condition '{spec.name}' given twice ({specs[spec.name]} "
                              f"and {spec}); give each condition once")
        specs[spec.name] = spec
    return tuple(specs[name] for name in CONDITIONS if name in specs)


def _parse_one(item: str | ConditionSpec | tuple[str, float]) -> ConditionSpec:
    if isinstance(item, ConditionSpec):
        name, strength, shown = item.name, item.strength, repr(item)
    elif isinstance(item, str):
        name, sep, raw = item.strip().partition(":")
        strength, shown = (raw if sep else 1.0), repr(item)
    elif isinstance(item, tuple) and len(item) == 2:
        (name, strength), shown = item, repr(item)
    else:
        raise ConfigError(f"target condition {item!r}: expected NAME[:STRENGTH], e.g. 'fog:0.7' "
                          f"({_valid()})")
    name = str(name).strip().lower()
    if name not in CONDITIONS:
        raise ConfigError(f"unknown target condition {shown} ({_valid()})")
    value = _strength(strength)
    if value is None:
        raise ConfigError(f"target condition {shown}: the strength must be a number in (0, 1], "
                          f"got {strength!r} ({_valid()})")
    return ConditionSpec(name, value)


def _strength(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) and 0.0 < v <= 1.0 else None


def _valid() -> str:
    return "valid conditions: " + ", ".join(CONDITIONS) + "; strength in (0, 1], default 1"


def describe(specs: Sequence[ConditionSpec]) -> list[dict]:
    """The conditions as written into ``benchmark.json`` (in the order applied)."""
    return [{"name": s.name, "strength": s.strength} for s in specs]


def condition_rng(key: Sequence[int], name: str) -> np.random.Generator:
    """The generator of condition ``name`` for the image drawn from ``default_rng(key)``."""
    return np.random.default_rng([*(int(k) for k in key), _STREAMS, CONDITIONS[name].stream])


def render_conditioned(key: Sequence[int], size: tuple[int, int], style: StyleConfig,
                       conditions: Sequence[ConditionSpec] = ()) -> tuple[np.ndarray, np.ndarray]:
    """The image and trainIds of the scene drawn from ``default_rng(key)`` in ``style`` under
    ``conditions`` (checked and ordered by :func:`parse_conditions`). With no conditions it is
    exactly :func:`~.render.render_scene`."""
    specs = parse_conditions(conditions)
    rng = np.random.default_rng([int(k) for k in key])
    if not specs:
        return render_scene(rng, size, style)
    rngs = {s.name: condition_rng(key, s.name) for s in specs}
    for s in specs:
        restyle = CONDITIONS[s.name].restyle
        if restyle is not None:
            style = restyle(style, s.strength, rngs[s.name])
    layers = render_layers(rng, size, style)
    image = layers.image
    for s in specs:
        retouch = CONDITIONS[s.name].retouch
        if retouch is not None:
            image = retouch(image, layers, s.strength, rngs[s.name])
    return np.ascontiguousarray(image), layers.labels
