"""PNG grids that show what a stage does: one row per sample, one column per view."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..classes import LabelSpace
from ..io import atomic_write


def _to_rgb(t: torch.Tensor, space: LabelSpace) -> np.ndarray:
    """(3,H,W) float [0,1] image or (H,W) / (C,h,w) labels/logits -> (H,W,3) uint8."""
    t = t.detach().float().cpu()
    if t.dim() == 3 and t.shape[0] == 3:
        return (t.clamp(0, 1).permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    if t.dim() == 3:  # logits
        t = t.argmax(0)
    return space.colorize(t.numpy().astype(np.uint8))


def save_grid(path: Path, columns: dict[str, torch.Tensor], space: LabelSpace, max_rows: int = 4) -> Path:
    """Write a titled grid; every column holds a batch of images, labels or logits."""
    titles = list(columns)
    rows = min(max_rows, min(len(v) for v in columns.values()))
    cells = [[_to_rgb(columns[t][r], space) for t in titles] for r in range(rows)]
    h, w = cells[0][0].shape[:2]
    cells = [[np.asarray(Image.fromarray(c).resize((w, h), Image.NEAREST)) for c in row] for row in cells]
    top = 14
    canvas = Image.new("RGB", (w * len(titles), top + h * rows), "white")
    draw = ImageDraw.Draw(canvas)
    for j, title in enumerate(titles):
        draw.text((j * w + 3, 1), title, fill="black")
    for i, row in enumerate(cells):
        for j, cell in enumerate(row):
            canvas.paste(Image.fromarray(cell), (j * w, top + i * h))
    return atomic_write(path, lambda tmp: canvas.save(tmp, format="PNG"))
