"""What the demo does for a request, with no Gradio: decode the uploads, run the model (and the
before-adaptation model), write the downloads, build the views, word the messages.

:class:`DemoLogic` holds one served model and its limits; the Gradio handlers in
:mod:`diga.demo.layout` call its methods and the plain functions below, and only turn their
results into component updates. Everything here is testable without a server.

Files written: only under the demo's output directory: ``requests/<random id>/`` per request
(label PNG + colour mask, each view in its own subfolder), pruned after ``keep_seconds``. User
input is never passed to a shell and never used as a path.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from diga.io import atomic_write

from .inputs import MAX_PIXELS, DemoInputError, LoadedImage, decode_image, safe_stem
from .render import class_shares, colorize, legend_html, render_prediction, runtime_markdown, share_figure

log = logging.getLogger(__name__)

MAX_IMAGES = 8
IDLE_STATUS = "Upload one or several street images, or click an example."
# A video request holds a worker for its whole length: the demo segments short clips only.
MAX_VIDEO_SECONDS = 30.0
MAX_VIDEO_FRAMES = 600
IDLE_VIDEO_STATUS = (f"Upload a short street video: the first {MAX_VIDEO_SECONDS:g} s (at most {MAX_VIDEO_FRAMES} "
                     "frames) are segmented, the sound is dropped. For longer videos use `diga predict VIDEO`.")

Notify = Callable[[str], None]


def make_output_dir(output_dir: str | Path | None) -> Path:
    """``output_dir`` (created), or a fresh temporary folder removed at exit."""
    if output_dir is not None:
        d = Path(output_dir).expanduser().resolve()
        d.mkdir(parents=True, exist_ok=True)
        return d
    d = Path(tempfile.mkdtemp(prefix="diga-demo-"))
    atexit.register(shutil.rmtree, d, True)
    return d


def meta_classes(predictor) -> tuple[list[str], list[tuple[int, int, int]]]:
    """(class names, palette) of the predictor's label space; Cityscapes where its metadata lacks them."""
    meta = getattr(predictor, "meta", None) or {}
    classes = list(meta.get("classes") or [])
    palette = [tuple(int(v) for v in c[:3]) for c in (meta.get("palette") or [])]
    if not classes:
        from diga.classes import CITYSCAPES_CLASSES

        classes = list(CITYSCAPES_CLASSES)
    if len(palette) < len(classes):
        from diga.classes import CITYSCAPES_PALETTE

        palette = list(palette) + [CITYSCAPES_PALETTE[i % 19] for i in range(len(palette), len(classes))]
    return classes, palette


# ----------------------------------------------------------------------------------------------
# Messages
# ----------------------------------------------------------------------------------------------

def md(text: str | None) -> str:
    """``text`` safe inside Markdown inline code (no backticks)."""
    return (text or "").replace("`", "'")


def status_markdown(head: str, notices: Sequence[str], errors: Sequence[str]) -> str:
    """The status line: ``head``, then one bullet per error and per notice."""
    lines = [head]
    lines += [f"- ⚠️ {md(e)}" for e in errors]
    lines += [f"- ℹ️ {md(n)}" for n in notices]
    return "\n".join(lines)


def failure_message(what: str, error: BaseException) -> str:
    """One line for the user: ``what: ErrorType: first line of the message`` (never a traceback)."""
    text = str(error).strip()
    return f"{what}: {type(error).__name__}" + (f": {text.splitlines()[0]}" if text else "")


# ----------------------------------------------------------------------------------------------
# Small pure helpers for the handlers
# ----------------------------------------------------------------------------------------------

def as_upload_path(f: Any) -> str | None:
    """A server-side upload path from what Gradio hands a File input (str, dict or FileData)."""
    if isinstance(f, (str, os.PathLike)):
        return str(f)
    if isinstance(f, dict):
        return f.get("path") or f.get("name")
    return getattr(f, "path", None) or getattr(f, "name", None)


def image_choices(state: dict | None) -> list[tuple[str, int]]:
    """The image selector's (label, index) choices for a segmented request."""
    items = state["items"] if state else []
    return [(f"{i + 1}. {it['name']}", i) for i, it in enumerate(items)]


def item_index(state: dict | None, index: Any) -> int:
    """``index`` when it names an item of ``state``, else 0 (a stale or missing selection)."""
    n = len(state["items"]) if state and state.get("items") else 0
    return int(index) if isinstance(index, (int, float)) and 0 <= int(index) < n else 0


def selected_example(index: Any, n_examples: int) -> int | None:
    """The example a gallery click selected (Gradio gives an int or a [row, col] pair), or None."""
    idx = index if isinstance(index, int) else (index[0] if index else 0)
    return idx if isinstance(idx, int) and 0 <= idx < n_examples else None


def deep_link(params: Mapping[str, Any], n_examples: int, has_before: bool) -> tuple[int, bool] | None:
    """``/?example=N[&compare=1]``: (example index, compare) or None when the link names no example."""
    n = str(params.get("example", ""))
    if not (n.isdigit() and 1 <= int(n) <= n_examples):
        return None
    compare = str(params.get("compare", "")).lower() in ("1", "true", "yes")
    return int(n) - 1, compare and has_before


def empty_view() -> dict[str, Any]:
    """The view with nothing segmented (keys as :meth:`DemoLogic.view`)."""
    return {"input": None, "mask": None, "overlay": None, "before": None, "after": None,
            "compare_visible": False, "legend": "", "plot": None, "runtime": ""}


def save_png(path: Path, array: np.ndarray) -> str:
    """Write ``array`` as PNG atomically (a reader never sees a partial file; no fsync: downloads
    of one request are not worth a disk flush each)."""
    atomic_write(path, lambda tmp: Image.fromarray(np.ascontiguousarray(array)).save(tmp, format="PNG"),
                 durable=False)
    return str(path)


def run_model(predictor, arrays: list[np.ndarray], mode: str | None = None) -> tuple[list[np.ndarray], float]:
    """(label maps, milliseconds) of ``predictor`` on ``arrays`` in inference ``mode`` (None: the
    predictor's own); a mask of the wrong size is an error."""
    t0 = time.perf_counter()
    preds = predictor.predict(arrays) if mode is None else predictor.predict(arrays, mode=mode)
    ms = (time.perf_counter() - t0) * 1000
    labels = [np.asarray(p.labels, dtype=np.uint8) for p in preds]
    for a, lab in zip(arrays, labels):
        if lab.shape != a.shape[:2]:
            raise RuntimeError(f"the predictor returned a {lab.shape} mask for a {a.shape[:2]} image")
    return labels, ms


def mode_description(predictor, image: np.ndarray, mode: str | None) -> str | None:
    """How ``predictor`` runs an image like ``image`` in ``mode``, e.g. ``resize (image 512x1024 vs
    training scale 128x256: ...)``; None for a predictor that does not say."""
    plan = getattr(predictor, "plan", None)
    return plan(*image.shape[:2], mode).describe() if callable(plan) else None


def segment_video(predictor, upload: Any, request_dir: Path, *, alpha: float = 0.5, model_name: str | None = None,
                  max_seconds: float = MAX_VIDEO_SECONDS, max_frames: int = MAX_VIDEO_FRAMES,
                  max_pixels: int = MAX_PIXELS) -> tuple[str | None, str]:
    """(overlay video path or None, status markdown) of an uploaded video, through the same
    :func:`diga.export.video.predict_video` as ``diga predict``: the first ``max_seconds`` /
    ``max_frames`` only, frames of at most ``max_pixels``. Bad input becomes a message naming the file."""
    from diga.export.errors import PredictorError
    from diga.export.video import predict_video

    path = as_upload_path(upload)
    if not path:
        return None, IDLE_VIDEO_STATUS
    name = Path(path).name

    def named(text: str) -> str:  # the upload's name, never the server's folder
        return text.replace(str(path), name)

    try:
        result = predict_video(predictor, path, request_dir, alpha=alpha, show_progress=False,
                               max_frames=max_frames, max_seconds=max_seconds, max_pixels=max_pixels)
    except PredictorError as e:
        return None, status_markdown("The video could not be segmented.", [], [named(str(e))])
    except Exception as e:  # noqa: BLE001 - shown as one line; the traceback goes to the log
        log.exception("video inference failed")
        return None, status_markdown(failure_message("Inference failed", e), [], [])
    h, w = result.size
    rate = f", {float(result.rate):.3g} fps" if result.rate else ""
    head = (f"Segmented **{result.frames}** frames of `{md(name)}` ({w}×{h}{rate}) with "
            f"`{md(model_name or 'the model')}`.")
    return str(result.overlay), status_markdown(head, [named(n) for n in result.notes],
                                                [named(p) for p in result.problems])


# ----------------------------------------------------------------------------------------------
# The request logic of one served model
# ----------------------------------------------------------------------------------------------

class DemoLogic:
    """Decode -> predict -> write downloads -> render; every user-facing failure becomes a message.

    ``warn`` / ``info`` show a message to the user (the layout passes Gradio's toasts); by
    default they go to the log."""

    def __init__(self, predictor, before_predictor=None, *, output_dir: str | Path, max_images: int = MAX_IMAGES,
                 max_pixels: int = MAX_PIXELS, keep_seconds: float = 3600.0, model_name: str | None = None,
                 warn: Notify = log.warning, info: Notify = log.info):
        self.predictor = predictor
        self.before = before_predictor
        self.classes, self.palette = meta_classes(predictor)
        self.output_dir = Path(output_dir)
        self.requests_dir = self.output_dir / "requests"
        self.requests_dir.mkdir(parents=True, exist_ok=True)
        self.max_images = max_images
        self.max_pixels = max_pixels
        self.keep_seconds = keep_seconds
        self.model_name = model_name
        self.warn, self.info = warn, info
        self._prune_lock = threading.Lock()

    # -- files ---------------------------------------------------------------------------------
    def new_request_dir(self) -> Path:
        """A fresh ``requests/<random hex>`` folder under the output dir (old ones are pruned)."""
        self.prune()
        d = self.requests_dir / uuid.uuid4().hex
        d.mkdir(parents=True)
        return d

    def prune(self) -> None:
        if not self._prune_lock.acquire(blocking=False):
            return
        try:
            cutoff = time.time() - self.keep_seconds
            for d in self.requests_dir.iterdir():
                try:
                    if d.is_dir() and not d.is_symlink() and d.stat().st_mtime < cutoff:
                        shutil.rmtree(d, ignore_errors=True)
                except OSError:
                    continue
        finally:
            self._prune_lock.release()

    # -- decoding --------------------------------------------------------------------------------
    def load_inputs(self, files: Sequence[Any] | None) -> tuple[list[LoadedImage], list[str], list[str]]:
        """(images, notices, errors) of the uploaded paths."""
        paths = [as_upload_path(f) for f in (files or []) if f is not None]
        paths = [p for p in paths if p]
        notices, errors = [], []
        if len(paths) > self.max_images:
            notices.append(f"{len(paths)} files uploaded: only the first {self.max_images} are segmented")
            paths = paths[: self.max_images]
        images = []
        for p in paths:
            try:
                img = decode_image(p, max_pixels=self.max_pixels)
            except DemoInputError as e:
                errors.append(str(e))
                continue
            except Exception as e:  # noqa: BLE001 - a decoder bug must not show a stack trace
                log.exception("unexpected error decoding %s", p)
                errors.append(f"{Path(p).name}: cannot be read as an image ({type(e).__name__})")
                continue
            images.append(img)
            notices.extend(img.notices)
        return images, notices, errors

    # -- inference -------------------------------------------------------------------------------
    def segment(self, files, compare: bool = False, mode: str | None = None) -> tuple[dict | None, str, list[str]]:
        """(state, status markdown, download paths). ``state`` is None when nothing could be segmented.
        ``mode``: the inference mode (:mod:`diga.inference`; None: the predictor's default)."""
        images, notices, errors = self.load_inputs(files)
        for msg in errors:
            self.warn(msg)
        for msg in notices:
            self.info(msg)
        if not images:
            if errors:
                return None, status_markdown("No image could be segmented.", notices, errors), []
            return None, IDLE_STATUS, []
        arrays = [im.array for im in images]
        try:
            labels, ms = run_model(self.predictor, arrays, mode)
        except Exception as e:  # noqa: BLE001 - shown as one line; the traceback goes to the log
            log.exception("inference failed")
            msg = failure_message("Inference failed", e)
            self.warn(msg)
            return None, status_markdown(msg, notices, errors), []
        items = [{"name": im.name, "stem": safe_stem(im.name, f"image{i + 1}"), "image": im.array,
                  "labels": lab, "before": None} for i, (im, lab) in enumerate(zip(images, labels))]
        state = {"items": items, "latency_ms": ms, "before_ms": None, "dir": str(self.new_request_dir()),
                 "backend": str(getattr(self.predictor, "backend", "?")),
                 "device": str(getattr(self.predictor, "device", "?")), "mode": mode}
        if compare and self.before is not None:
            err = self.ensure_before(state)
            if err:
                errors.append(err)
        downloads = self.write_downloads(items, Path(state["dir"]))
        n = len(items)
        head = f"Segmented **{n}** image{'s' if n > 1 else ''} with `{md(self.model_name or 'the model')}`."
        how = mode_description(self.predictor, arrays[0], mode)
        if how:
            head += f" Mode: `{md(how)}`."
        return state, status_markdown(head, notices, errors), downloads

    def ensure_before(self, state: dict) -> str | None:
        """Run the before-adaptation model on the items that lack its prediction; an error message or None."""
        todo = [it for it in state["items"] if it.get("before") is None]
        if not todo or self.before is None:
            return None
        try:
            labels, ms = run_model(self.before, [it["image"] for it in todo], state.get("mode"))
        except Exception as e:  # noqa: BLE001
            log.exception("before-adaptation inference failed")
            msg = failure_message("The before-adaptation model failed", e)
            self.warn(msg)
            return msg
        for it, lab in zip(todo, labels):
            it["before"] = lab
        state["before_ms"] = ms
        return None

    def write_downloads(self, items: list[dict], d: Path) -> list[str]:
        """Label PNGs (class ids, 255 = ignore) and colour masks into the request folder ``d``."""
        out = []
        for i, it in enumerate(items):
            stem = it["stem"] if len(items) == 1 else f"{i + 1:02d}_{it['stem']}"
            out.append(save_png(d / f"{stem}_labels.png", it["labels"]))
            out.append(save_png(d / f"{stem}_color.png", colorize(it["labels"], self.palette)))
        return out

    # -- views -----------------------------------------------------------------------------------
    def empty_legend(self) -> str:
        """The legend before anything is segmented: every class, no shares."""
        return legend_html(class_shares(np.zeros((0,), np.uint8), self.classes, self.palette))

    def view(self, state: dict | None, index: int | None, alpha: float, compare: bool) -> dict[str, Any]:
        """What the display components show for item ``index`` of ``state``."""
        if not state or not state.get("items"):
            return empty_view()
        items = state["items"]
        it = items[item_index(state, index)]
        show_before = bool(compare and it.get("before") is not None)
        r = render_prediction(it["image"], it["labels"], self.classes, self.palette, alpha,
                              before_labels=it["before"] if show_before else None)
        runtime = runtime_markdown(state["backend"], state["device"], state["latency_ms"], len(items),
                                   md(self.model_name) if self.model_name else None,
                                   state.get("before_ms") if show_before else None)
        return {"input": it["image"], "mask": r.color, "overlay": r.overlay,
                "before": r.before_overlay if show_before else None,
                "after": r.overlay if show_before else None, "compare_visible": show_before,
                "legend": r.legend_html, "plot": share_figure(r), "runtime": runtime}

    def view_files(self, state: dict | None, index: int | None, alpha: float, compare: bool) -> dict[str, Any]:
        """:meth:`view` with the images saved as PNGs in a fresh folder inside the request's folder.

        Files, not arrays: every render gets its own paths, so concurrent requests never write a
        file that is being served (Gradio names arrays by content, which races)."""
        v = self.view(state, index, alpha, compare)
        if not state or v["input"] is None:
            return v
        d = Path(state["dir"])
        if not d.resolve().is_relative_to(self.requests_dir.resolve()):  # the state is ours; be strict anyway
            raise RuntimeError("request folder outside the demo's output directory")
        d = d / uuid.uuid4().hex[:12]
        d.mkdir(parents=True, exist_ok=True)
        stem = state["items"][item_index(state, index)]["stem"]
        for key in ("input", "mask", "overlay", "before", "after"):
            if v[key] is not None:
                v[key] = save_png(d / f"{stem}_{key}.png", v[key])
        return v

    def toggle(self, state: dict | None, index: int | None, alpha: float, compare: bool) -> dict[str, Any]:
        """The view after the opacity, the selected image or the before/after switch changed: with
        ``compare``, the before-adaptation model first runs on the images that lack its prediction
        (its failure is reported through ``warn`` and the view shows the adapted model only)."""
        if compare and state:
            self.ensure_before(state)
        return self.view_files(state, index, alpha, compare)
