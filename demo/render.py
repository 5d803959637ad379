"""Pure functions that turn a segmentation (labels + the label space) into what the demo shows.

No Gradio here: colour masks, overlays, per-class pixel shares, the legend HTML, the share bar
chart (a matplotlib figure, drawn without pyplot so it is thread-safe) and the runtime line.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from diga.classes import colorize  # re-exported: the demo colours labels like every other caller

IGNORE = 255
Color = tuple[int, int, int]


@dataclass(frozen=True)
class ClassShare:
    """The share of the (non-ignored) pixels predicted as one class."""

    index: int
    name: str
    color: Color
    pixels: int
    share: float  # 0..1

    @property
    def hex(self) -> str:
        return rgb_hex(self.color)


@dataclass
class Rendered:
    """Everything the demo displays for one image."""

    color: np.ndarray  # (H, W, 3) uint8 colour mask
    overlay: np.ndarray  # (H, W, 3) uint8 image blended with the mask
    shares: list[ClassShare]  # every class of the label space, in label order
    legend_html: str
    before_color: np.ndarray | None = None
    before_overlay: np.ndarray | None = None
    before_shares: list[ClassShare] | None = None
    notes: list[str] = field(default_factory=list)

    def share_rows(self) -> list[dict]:
        """Rows ``{"class", "share", "model", "color"}`` (share in %) of the classes present."""
        rows = [{"class": s.name, "share": 100 * s.share, "model": "after adaptation" if self.before_shares
                 else "prediction", "color": s.hex} for s in self.shares if s.pixels]
        if self.before_shares:
            rows += [{"class": s.name, "share": 100 * s.share, "model": "before adaptation", "color": s.hex}
                     for s in self.before_shares if s.pixels]
        return rows


def rgb_hex(color: Sequence[int]) -> str:
    r, g, b = (int(c) for c in color[:3])
    return f"#{r:02x}{g:02x}{b:02x}"


def blend(image: np.ndarray, color: np.ndarray, alpha: float, labels: np.ndarray | None = None) -> np.ndarray:
    """``image`` with ``color`` laid over it at opacity ``alpha`` (0 = image, 1 = mask).

    Pixels whose label is ignore (255) keep the image."""
    alpha = float(np.clip(alpha, 0.0, 1.0))
    if image.shape[:2] != color.shape[:2]:
        raise ValueError(f"image {image.shape[:2]} and mask {color.shape[:2]} differ in size")
    out = image.astype(np.float32) * (1.0 - alpha) + color.astype(np.float32) * alpha
    if labels is not None:
        keep = labels == IGNORE
        out[keep] = image[keep]
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def class_shares(labels: np.ndarray, classes: Sequence[str], palette: Sequence[Sequence[int]]) -> list[ClassShare]:
    """Per-class pixel counts and shares over the non-ignored pixels, for every class."""
    n = len(classes)
    counts = np.bincount(np.asarray(labels, dtype=np.uint8).ravel(), minlength=256)
    valid = int(counts[:n].sum())
    return [ClassShare(i, str(classes[i]), tuple(int(c) for c in palette[i][:3]), int(counts[i]),
                       (counts[i] / valid) if valid else 0.0) for i in range(n)]


def legend_html(shares: Sequence[ClassShare], before: Sequence[ClassShare] | None = None) -> str:
    """An HTML legend: a swatch and name per class; classes present first, with their share.

    With ``before`` the share before adaptation is shown next to it. Class names are escaped."""
    order = sorted(shares, key=lambda s: (-s.share, s.index))
    bmap = {s.index: s for s in before} if before is not None else None
    items = []
    for s in order:
        present = s.pixels > 0 or (bmap is not None and bmap[s.index].pixels > 0)
        text = f"{s.share * 100:.1f}%" if s.pixels else "—"
        if bmap is not None and present:
            text += f" <span style='opacity:.7'>(before {bmap[s.index].share * 100:.1f}%)</span>"
        style = "" if present else "opacity:.45;"
        border = "1px solid #0003" if sum(s.color) > 600 else "1px solid transparent"
        items.append(
            f"<div class='diga-legend-item' style='display:flex;align-items:center;gap:6px;{style}'>"
            f"<span style='display:inline-block;width:14px;height:14px;border-radius:3px;flex:none;"
            f"background:{s.hex};border:{border}'></span>"
            f"<span>{html.escape(s.name)}</span>"
            f"<span style='margin-left:auto;font-variant-numeric:tabular-nums'>{text}</span></div>")
    return ("<div class='diga-legend' style='display:grid;grid-template-columns:repeat(auto-fill,minmax(190px,1fr));"
            "gap:4px 16px;font-size:0.9em'>" + "".join(items) + "</div>")


def render_prediction(
    image: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[str],
    palette: Sequence[Sequence[int]],
    alpha: float = 0.5,
    before_labels: np.ndarray | None = None,
) -> Rendered:
    """The colour mask, overlay, shares and legend of one prediction (and of the before model)."""
    if labels.shape != image.shape[:2]:
        raise ValueError(f"labels {labels.shape} do not match the image {image.shape[:2]}")
    color = colorize(labels, palette)
    shares = class_shares(labels, classes, palette)
    out = Rendered(color=color, overlay=blend(image, color, alpha, labels), shares=shares, legend_html="")
    if before_labels is not None:
        out.before_color = colorize(before_labels, palette)
        out.before_overlay = blend(image, out.before_color, alpha, before_labels)
        out.before_shares = class_shares(before_labels, classes, palette)
    out.legend_html = legend_html(shares, out.before_shares)
    return out


def render_from_predictions(prediction, meta: dict, alpha: float = 0.5, before=None) -> Rendered:
    """:func:`render_prediction` for :class:`diga.export.Prediction` objects (``.image``, ``.labels``)
    and a predictor's ``meta`` (``classes``, ``palette``)."""
    image = prediction.image if getattr(prediction, "image", None) is not None else prediction.color
    return render_prediction(np.asarray(image, np.uint8), np.asarray(prediction.labels, np.uint8), meta["classes"],
                             meta["palette"], alpha, None if before is None else np.asarray(before.labels, np.uint8))


def share_figure(rendered: Rendered, top: int = 12):
    """A horizontal bar chart (matplotlib ``Figure``) of the class shares, largest first.

    With a before-adaptation prediction, each class gets two bars: before (hatched, pale) and
    after. Uses ``matplotlib.figure.Figure`` directly (no pyplot state, safe across threads)."""
    from matplotlib.figure import Figure

    after = {s.index: s for s in rendered.shares}
    before = {s.index: s for s in rendered.before_shares} if rendered.before_shares else None
    key = (lambda i: max(after[i].share, before[i].share)) if before else (lambda i: after[i].share)
    idx = [i for i in sorted(after, key=lambda i: -key(i)) if key(i) > 0][:top]
    height = max(2.0, 0.6 + 0.3 * max(len(idx), 1) * (1.6 if before else 1))
    fig = Figure(figsize=(5.2, height), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    y = np.arange(len(idx))[::-1].astype(float)
    cols = [np.asarray(after[i].color) / 255 for i in idx]
    if before:
        h = 0.4
        ax.barh(y + h / 2, [100 * before[i].share for i in idx], height=h, color=cols, alpha=0.45,
                hatch="///", edgecolor="#555", linewidth=0.4, label="before adaptation")
        ax.barh(y - h / 2, [100 * after[i].share for i in idx], height=h, color=cols, edgecolor="#555",
                linewidth=0.4, label="after adaptation")
        ax.legend(loc="lower right", fontsize=8, frameon=False)
    else:
        ax.barh(y, [100 * after[i].share for i in idx], color=cols, edgecolor="#555", linewidth=0.4)
        for yy, i in zip(y, idx):
            ax.text(100 * after[i].share, yy, f" {100 * after[i].share:.1f}%", va="center", fontsize=8)
    ax.set_yticks(y, [after[i].name for i in idx], fontsize=9)
    ax.set_xlabel("share of pixels (%)", fontsize=9)
    ax.set_title("Share of pixels per class", fontsize=10, loc="left")
    ax.tick_params(axis="x", labelsize=8)
    xmax = max([100 * key(i) for i in idx] or [1.0])
    ax.set_xlim(0, min(100.0, xmax * 1.18 + 1))
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    if not idx:
        ax.text(0.5, 0.5, "no classes predicted", ha="center", va="center", transform=ax.transAxes)
    return fig


def runtime_markdown(backend: str, device: str, latency_ms: float, n_images: int,
                     model_name: str | None = None, before_latency_ms: float | None = None) -> str:
    """One Markdown line: backend, device and inference latency (ms per image)."""
    per = latency_ms / max(n_images, 1)
    parts = [f"**backend** `{backend}`", f"**device** `{device}`",
             f"**latency** {per:.1f} ms/image"
             + (f" ({n_images} images, {latency_ms:.0f} ms total)" if n_images > 1 else "")]
    if before_latency_ms is not None:
        parts.append(f"**before-adaptation model** {before_latency_ms / max(n_images, 1):.1f} ms/image")
    if model_name:
        parts.append(f"**model** `{model_name}`")
    return " · ".join(parts)
