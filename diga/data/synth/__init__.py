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
the Cityscapes layout, so the ordinary dataset loaders read them. Its ``conditions`` shift the
target domain further with named, composable conditions (``camera``, ``texture``, ``fog``,
``rain``, ``night``, ``color``; :mod:`.conditions`): the same scenes, drawn under conditions that
adaptation was not tuned on.

Modules: :mod:`.style` (the two styles and the ones between), :mod:`.materials` (classes,
material colours, textures), :mod:`.scene` (camera and drawing primitives), :mod:`.roadside`,
:mod:`.street_furniture`, :mod:`.people` and :mod:`.vehicles` (the object drawers),
:mod:`.layout` (the random street), :mod:`.render` (compositing), :mod:`.conditions` and
:mod:`.effects` (the target conditions) and :mod:`.writer` (the files).
"""

from .conditions import CONDITIONS, ConditionSpec, parse_conditions, render_conditioned
from .render import render_scene
from .style import SOURCE_STYLE, TARGET_STYLE, StyleConfig, target_style
from .writer import FORMAT_VERSION, TRAINID_TO_LABELID, generate_benchmark, trainid_to_labelid

__all__ = [
    "FORMAT_VERSION", "StyleConfig", "SOURCE_STYLE", "TARGET_STYLE", "target_style",
    "render_scene", "generate_benchmark", "trainid_to_labelid", "TRAINID_TO_LABELID",
    "CONDITIONS", "ConditionSpec", "parse_conditions", "render_conditioned",
]
