"""The Gradio web demo over :class:`diga.export.Predictor`.

* :func:`build_app` -- the ``gr.Blocks`` app for a loaded predictor (and optionally the
  before-adaptation predictor); requests are queued, the model runs at most ``concurrency``
  times at once (one ``concurrency_id`` shared by every event that runs a model).
* :func:`serve` -- launch it (127.0.0.1 by default, upload size limit, files only under the
  demo's output directory).
* :func:`launch` -- what ``diga demo`` does: find the model, load it (and its
  before-adaptation model, see :func:`find_before_model`), generate the examples, serve.

Files written: only under the demo's output directory (a fresh temporary directory unless
``output_dir`` is given): ``requests/<random id>/`` per request (label PNG + colour mask, pruned
after ``keep_seconds``) and, when :func:`launch` is used, Gradio's own upload/cache folder
``gradio/``. User input is never passed to a shell and never used as a path.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import shutil
import signal
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
from PIL import Image

from .inputs import MAX_PIXELS, DemoInputError, LoadedImage, decode_image, safe_stem
from .render import colorize, render_prediction, runtime_markdown, share_figure

log = logging.getLogger(__name__)

TITLE = "DiGA — domain-adapted street-scene segmentation"
MAX_IMAGES = 8
DEFAULT_MAX_FILE_SIZE = "20mb"


class NoModelError(FileNotFoundError):
    """No model was given and none was found; the message says how to make one."""


class PortInUseError(ValueError):
    """The server could not bind its port."""


# ----------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------

def newest_model(project: str | Path = "runs") -> Path | None:
    """The newest (by modification time) ``PROJECT/adapt/*/final.safetensors``, or None."""
    found = [p for p in Path(project).glob("adapt/*/final.safetensors") if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def resolve_model(model: str | Path | None, project: str | Path = "runs") -> Path:
    """``model`` if given (it must exist), else the newest adapted model; NoModelError otherwise."""
    if model is not None:
        path = Path(model).expanduser()
        if not path.exists():
            raise NoModelError(f"model not found: {path}")
        return path
    path = newest_model(project)
    if path is None:
        raise NoModelError(
            f"no model given and no adapted model found ({Path(project) / 'adapt' / '*' / 'final.safetensors'}). "
            "Make one with `diga adapt` (with no data options it adapts on the built-in synthetic benchmark; "
            "`--preset cpu` for a machine without GPU), or pass --model PATH (a .safetensors checkpoint or an "
            "exported model).")
    return path


def _model_metadata(path: Path) -> dict[str, Any]:
    """The diga metadata of a checkpoint or an exported model ({} if it has none)."""
    try:
        from diga.export import read_export_metadata

        meta = read_export_metadata(path)
        if isinstance(meta, dict):
            return meta
    except Exception:  # noqa: BLE001 - no metadata: the sibling rule still applies
        pass
    sidecar = path.with_suffix(".json")  # a checkpoint's sidecar beside an export of the same name
    if sidecar.is_file():
        try:
            meta = json.loads(sidecar.read_text())
            return meta if isinstance(meta, dict) else {}
        except (OSError, ValueError):
            return {}
    return {}


EXPORT_SUFFIXES = {"onnx": (".onnx",), "tensorrt": (".engine", ".plan", ".trt"), "pt2": (".pt2",)}


def model_for_backend(model_path: str | Path, backend: str) -> Path:
    """The file to load for ``backend``: a checkpoint asked to run on ONNX/TensorRT/.pt2 is replaced
    by its export beside it (``final.safetensors`` -> ``final.onnx``, what ``diga export`` writes);
    without one, a ValueError says how to make it."""
    model_path = Path(model_path)
    if backend not in EXPORT_SUFFIXES or model_path.suffix.lower() != ".safetensors":
        return model_path
    for suffix in EXPORT_SUFFIXES[backend]:
        cand = model_path.with_suffix(suffix)
        if cand.is_file():
            return cand
    fmt = {"onnx": "onnx", "tensorrt": "tensorrt", "pt2": "pt2"}[backend]
    raise ValueError(f"--backend {backend} needs an exported model and {model_path.name} has none beside it; "
                     f"export it first: `diga export {model_path} --format {fmt}` (or use --backend torch)")


def find_before_model(model_path: str | Path) -> Path | None:
    """The "before adaptation" model of the run that produced ``model_path``, or None.

    The rule, in order:

    1. the model's metadata key ``before_adaptation`` (the safetensors header of a checkpoint,
       or the ``.json`` sidecar of an exported model): a path *relative to the model's folder*
       -- ``diga adapt`` writes ``"before.safetensors"`` into ``runs/adapt/NAME/final.safetensors``;
    2. a sibling file ``before.safetensors`` in the model's folder.

    The result is never the model itself; absolute paths in the metadata are ignored."""
    model_path = Path(model_path)
    folder = model_path.parent
    candidates = []
    rel = _model_metadata(model_path).get("before_adaptation")
    if isinstance(rel, str) and rel and not Path(rel).is_absolute():
        candidates.append(folder / rel)
    candidates.append(folder / "before.safetensors")
    for cand in candidates:
        try:
            if cand.is_file() and cand.resolve() != model_path.resolve():
                return cand
        except OSError:
            continue
    return None


def _meta_classes(predictor) -> tuple[list[str], list[tuple[int, int, int]]]:
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
# The request logic (no layout here; testable without a server)
# ----------------------------------------------------------------------------------------------

class DemoLogic:
    """Decode -> predict -> write downloads -> render; every user-facing failure becomes a message."""

    def __init__(self, predictor, before_predictor=None, *, output_dir: str | Path, max_images: int = MAX_IMAGES,
                 max_pixels: int = MAX_PIXELS, keep_seconds: float = 3600.0, model_name: str | None = None):
        self.predictor = predictor
        self.before = before_predictor
        self.classes, self.palette = _meta_classes(predictor)
        self.output_dir = Path(output_dir)
        self.requests_dir = self.output_dir / "requests"
        self.requests_dir.mkdir(parents=True, exist_ok=True)
        self.max_images = max_images
        self.max_pixels = max_pixels
        self.keep_seconds = keep_seconds
        self.model_name = model_name
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
        paths = [_as_path(f) for f in (files or []) if f is not None]
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
    @staticmethod
    def run_model(predictor, arrays: list[np.ndarray]) -> tuple[list[np.ndarray], float]:
        t0 = time.perf_counter()
        preds = predictor.predict(arrays)
        ms = (time.perf_counter() - t0) * 1000
        labels = [np.asarray(p.labels, dtype=np.uint8) for p in preds]
        for a, lab in zip(arrays, labels):
            if lab.shape != a.shape[:2]:
                raise RuntimeError(f"the predictor returned a {lab.shape} mask for a {a.shape[:2]} image")
        return labels, ms

    def segment(self, files, compare: bool = False) -> tuple[dict | None, str, list[str]]:
        """(state, status markdown, download paths). ``state`` is None when nothing could be segmented."""
        images, notices, errors = self.load_inputs(files)
        for msg in errors:
            _warn(msg)
        for msg in notices:
            _info(msg)
        if not images:
            if errors:
                return None, _status("No image could be segmented.", notices, errors), []
            return None, "Upload one or several street images, or click an example.", []
        arrays = [im.array for im in images]
        try:
            labels, ms = self.run_model(self.predictor, arrays)
        except Exception as e:  # noqa: BLE001 - shown as one line; the traceback goes to the log
            log.exception("inference failed")
            msg = f"Inference failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            _warn(msg)
            return None, _status(msg, notices, errors), []
        items = [{"name": im.name, "stem": safe_stem(im.name, f"image{i + 1}"), "image": im.array,
                  "labels": lab, "before": None} for i, (im, lab) in enumerate(zip(images, labels))]
        state = {"items": items, "latency_ms": ms, "before_ms": None, "dir": str(self.new_request_dir()),
                 "backend": str(getattr(self.predictor, "backend", "?")),
                 "device": str(getattr(self.predictor, "device", "?"))}
        if compare and self.before is not None:
            err = self.ensure_before(state)
            if err:
                errors.append(err)
        downloads = self.write_downloads(items, Path(state["dir"]))
        n = len(items)
        head = f"Segmented **{n}** image{'s' if n > 1 else ''} with `{_md(self.model_name or 'the model')}`."
        return state, _status(head, notices, errors), downloads

    def ensure_before(self, state: dict) -> str | None:
        """Run the before-adaptation model on the items that lack its prediction; an error message or None."""
        todo = [it for it in state["items"] if it.get("before") is None]
        if not todo or self.before is None:
            return None
        try:
            labels, ms = self.run_model(self.before, [it["image"] for it in todo])
        except Exception as e:  # noqa: BLE001
            log.exception("before-adaptation inference failed")
            msg = f"The before-adaptation model failed: {type(e).__name__}: {e}"
            _warn(msg)
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
            out.append(_save_png(d / f"{stem}_labels.png", it["labels"]))
            out.append(_save_png(d / f"{stem}_color.png", colorize(it["labels"], self.palette)))
        return out

    # -- views -----------------------------------------------------------------------------------
    def view(self, state: dict | None, index: int | None, alpha: float, compare: bool) -> dict[str, Any]:
        """What the display components show for item ``index`` of ``state``."""
        if not state or not state.get("items"):
            return {"input": None, "mask": None, "overlay": None, "before": None, "after": None,
                    "compare_visible": False, "legend": "", "plot": None, "runtime": ""}
        items = state["items"]
        i = int(index) if isinstance(index, (int, float)) and 0 <= int(index) < len(items) else 0
        it = items[i]
        show_before = bool(compare and it.get("before") is not None)
        r = render_prediction(it["image"], it["labels"], self.classes, self.palette, alpha,
                              before_labels=it["before"] if show_before else None)
        runtime = runtime_markdown(state["backend"], state["device"], state["latency_ms"], len(items),
                                   _md(self.model_name) if self.model_name else None,
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
        i = int(index) if isinstance(index, (int, float)) and 0 <= int(index) < len(state["items"]) else 0
        stem = state["items"][i]["stem"]
        for key in ("input", "mask", "overlay", "before", "after"):
            if v[key] is not None:
                v[key] = _save_png(d / f"{stem}_{key}.png", v[key])
        return v


def _save_png(path: Path, array: np.ndarray) -> str:
    """Write ``array`` as PNG through a temporary name (a reader never sees a partial file)."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    Image.fromarray(np.ascontiguousarray(array)).save(tmp, format="PNG")
    os.replace(tmp, path)
    return str(path)


def _as_path(f: Any) -> str | None:
    """A server-side upload path from what Gradio hands a File input (str, dict or FileData)."""
    if isinstance(f, (str, os.PathLike)):
        return str(f)
    if isinstance(f, dict):
        return f.get("path") or f.get("name")
    return getattr(f, "path", None) or getattr(f, "name", None)


def _md(text: str | None) -> str:
    return (text or "").replace("`", "'")


def _status(head: str, notices: list[str], errors: list[str]) -> str:
    lines = [head]
    lines += [f"- ⚠️ {_md(e)}" for e in errors]
    lines += [f"- ℹ️ {_md(n)}" for n in notices]
    return "\n".join(lines)


def _warn(msg: str) -> None:
    try:
        gr.Warning(msg)
    except Exception:  # noqa: BLE001 - outside a request there is nobody to show it to
        log.warning(msg)


def _info(msg: str) -> None:
    try:
        gr.Info(msg)
    except Exception:  # noqa: BLE001
        log.info(msg)


# ----------------------------------------------------------------------------------------------
# The Gradio app
# ----------------------------------------------------------------------------------------------

def _make_output_dir(output_dir: str | Path | None) -> Path:
    if output_dir is not None:
        d = Path(output_dir).expanduser().resolve()
        d.mkdir(parents=True, exist_ok=True)
        return d
    d = Path(tempfile.mkdtemp(prefix="diga-demo-"))
    atexit.register(shutil.rmtree, d, True)
    return d


def build_app(
    predictor,
    before_predictor=None,
    examples: Sequence[str | Path] | None = None,
    *,
    model_name: str | None = None,
    output_dir: str | Path | None = None,
    concurrency: int = 1,
    max_queue: int = 32,
    max_images: int = MAX_IMAGES,
    max_pixels: int = MAX_PIXELS,
    keep_seconds: float = 3600.0,
    title: str = TITLE,
):
    """The demo as a ``gr.Blocks`` app (queued: ``concurrency`` model runs at once, ``max_queue`` waiting).

    ``examples``: image paths shown as a clickable gallery (target-domain images, see
    :func:`diga.demo.examples.ensure_examples`). The API endpoint ``/segment`` takes
    ``(files, alpha, compare)``."""
    out_dir = _make_output_dir(output_dir)
    logic = DemoLogic(predictor, before_predictor, output_dir=out_dir, max_images=max_images,
                      max_pixels=max_pixels, keep_seconds=keep_seconds, model_name=model_name)
    example_paths = [str(Path(p)) for p in (examples or []) if Path(p).is_file()]
    has_before = before_predictor is not None
    backend = str(getattr(predictor, "backend", "?"))
    device = str(getattr(predictor, "device", "?"))

    cache_policy = (1800, int(keep_seconds))  # Gradio's own copies: swept every 30 min, kept keep_seconds
    with gr.Blocks(title="DiGA segmentation demo", analytics_enabled=False, delete_cache=cache_policy) as demo:
        state = gr.State(None, time_to_live=int(keep_seconds))
        stage = (getattr(predictor, "meta", None) or {}).get("stage")
        gr.Markdown(f"# {title}\n"
                    "A segmentation model trained on a synthetic source domain and adapted to real-looking "
                    "target images with DiGA. Upload street images (or click an example): every pixel gets one of "
                    f"{len(logic.classes)} classes. Model `{_md(model_name or '?')}`"
                    + (f" (stage `{_md(str(stage))}`)" if stage else "")
                    + f" · backend `{backend}` · device `{device}`.", elem_id="diga-title")
        with gr.Row():
            with gr.Column(scale=1, min_width=260):
                files = gr.File(label="Street images", file_count="multiple", type="filepath", height=130,
                                elem_id="diga-files")
                run_btn = gr.Button("Segment", variant="primary", elem_id="diga-run")
                alpha = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="Overlay opacity", elem_id="diga-alpha")
                compare = gr.Checkbox(value=False, label="Before vs after adaptation", visible=has_before,
                                      info="Compare with the model before domain adaptation.",
                                      elem_id="diga-compare")
                if not has_before:
                    gr.Markdown("<small>No before-adaptation model found for this run, so there is no "
                                "before/after comparison.</small>")
                gallery = None
                if example_paths:
                    gallery = gr.Gallery(
                        value=[(p, f"example {i + 1}") for i, p in enumerate(example_paths)],
                        label="Examples (target domain) — click one", columns=2, height=260,
                        allow_preview=False, interactive=False, buttons=[], elem_id="diga-examples")
            with gr.Column(scale=3):
                status = gr.Markdown("Upload one or several street images, or click an example.",
                                     elem_id="diga-status")
                selector = gr.Dropdown(choices=[], label="Image", visible=False, interactive=True,
                                       elem_id="diga-select")
                with gr.Row():
                    in_img = gr.Image(label="Input", type="filepath", format="png", interactive=False, height=240)
                    mask_img = gr.Image(label="Colour mask", type="filepath", format="png", interactive=False,
                                        height=240)
                    ov_img = gr.Image(label="Overlay", type="filepath", format="png", interactive=False, height=240)
                with gr.Row(visible=False) as compare_row:
                    before_img = gr.Image(label="Before adaptation", type="filepath", format="png",
                                          interactive=False, height=240)
                    after_img = gr.Image(label="After adaptation (DiGA)", type="filepath", format="png",
                                         interactive=False, height=240)
                with gr.Row():
                    with gr.Column(scale=3):
                        gr.Markdown("**Legend** (share of pixels per class)")
                        legend = gr.HTML(logic_legend_placeholder(logic), elem_id="diga-legend")
                    with gr.Column(scale=2):
                        plot = gr.Plot(label="Share of pixels per class", show_label=False, format="png",
                                       elem_id="diga-plot")
                runtime = gr.Markdown("", elem_id="diga-runtime")
                downloads = gr.File(label="Downloads: label PNG (class ids, 255 = ignore) and colour mask",
                                    file_count="multiple", interactive=False, height=120,
                                    elem_id="diga-downloads")

        view_outputs = [in_img, mask_img, ov_img, compare_row, before_img, after_img, legend, plot, runtime]

        def _view_values(st, index, a, cmp):
            v = logic.view_files(st, index, a, cmp)
            return [v["input"], v["mask"], v["overlay"], gr.update(visible=v["compare_visible"]),
                    v["before"], v["after"], v["legend"] or logic_legend_placeholder(logic), v["plot"], v["runtime"]]

        def _segment(file_list, a, cmp):
            st, msg, dl = logic.segment(file_list, compare=bool(cmp))
            items = st["items"] if st else []
            sel = gr.update(choices=[(f"{i + 1}. {it['name']}", i) for i, it in enumerate(items)],
                            value=0 if items else None, visible=len(items) > 1)
            return [st, msg, sel, *_view_values(st, 0, a, cmp), dl or None]

        def segment(file_list, a=0.5, cmp=False):
            """Segment the uploaded images; returns the views of the first one and the downloads."""
            try:
                return _segment(file_list, a, cmp)
            except Exception as e:  # noqa: BLE001 - last line of defence: a message, never a traceback
                log.exception("segment failed")
                return [None, f"Something went wrong: {type(e).__name__}: {_md(str(e))}",
                        gr.update(choices=[], value=None, visible=False), *_view_values(None, 0, a, cmp), None]

        def segment_example(a, cmp, evt: gr.SelectData):
            idx = evt.index if isinstance(evt.index, int) else (evt.index[0] if evt.index else 0)
            if not (0 <= idx < len(example_paths)):
                return segment([], a, cmp)
            return segment([example_paths[idx]], a, cmp)  # a server-side path chosen by index only

        def rerender(st, index, a, cmp):
            try:
                if cmp and st:
                    err = logic.ensure_before(st)
                    if err:
                        gr.Warning(err)
                return [st, *_view_values(st, index, a, cmp)]
            except Exception as e:  # noqa: BLE001
                log.exception("rerender failed")
                gr.Warning(f"Could not update the view: {type(e).__name__}")
                return [st, *_view_values(None, 0, a, cmp)]

        seg_outputs = [state, status, selector, *view_outputs, downloads]
        model_events = dict(concurrency_limit=concurrency, concurrency_id="model")
        run_btn.click(segment, [files, alpha, compare], seg_outputs, api_name="segment", **model_events)
        files.upload(segment, [files, alpha, compare], seg_outputs, api_visibility="private", **model_events)
        if gallery is not None:
            gallery.select(segment_example, [alpha, compare], seg_outputs, api_visibility="private", **model_events)
        # Deep link: /?example=N[&compare=1] segments example N when the page opens (for sharing a
        # view, and for screenshots with a headless browser).
        def on_load(a, cmp, request: gr.Request):
            params = dict(getattr(request, "query_params", None) or {})
            n, want = str(params.get("example", "")), str(params.get("compare", "")).lower() in ("1", "true", "yes")
            if not (n.isdigit() and 1 <= int(n) <= len(example_paths)):
                return [gr.skip()] * (len(seg_outputs) + 1)
            want = want and has_before
            return [*segment([example_paths[int(n) - 1]], a, want), want]

        demo.load(on_load, [alpha, compare], [*seg_outputs, compare], api_visibility="private", **model_events)
        # Toggling the comparison may run the before model, so it shares the model's concurrency.
        compare.input(rerender, [state, selector, alpha, compare], [state, *view_outputs],
                       api_visibility="private", **model_events)
        alpha.release(rerender, [state, selector, alpha, compare], [state, *view_outputs],
                      api_visibility="private", trigger_mode="always_last", **model_events)
        selector.input(rerender, [state, selector, alpha, compare], [state, *view_outputs],
                       api_visibility="private", **model_events)

    demo.queue(default_concurrency_limit=concurrency, max_size=max_queue)
    demo.diga_logic = logic  # for tests and launch()
    demo.diga_output_dir = out_dir
    return demo


def logic_legend_placeholder(logic: DemoLogic) -> str:
    from .render import class_shares, legend_html

    return legend_html(class_shares(np.zeros((0,), np.uint8), logic.classes, logic.palette))


def serve(demo, host: str = "127.0.0.1", port: int | None = 7860, share: bool = False,
          max_file_size: str | int | None = DEFAULT_MAX_FILE_SIZE, prevent_thread_lock: bool = False,
          quiet: bool = False):
    """Launch a built app: binds ``host`` (loopback by default), limits uploads to ``max_file_size``."""
    allowed = [str(demo.diga_output_dir)]
    try:
        return demo.launch(server_name=host, server_port=port, share=share, max_file_size=max_file_size,
                           prevent_thread_lock=prevent_thread_lock, quiet=quiet, show_error=False,
                           allowed_paths=allowed, footer_links=["api"], ssr_mode=False)
    except OSError as e:
        if "port" in str(e).lower():
            raise PortInUseError(f"cannot serve on {host}:{port}: the port is in use or not allowed; "
                                 "choose another with --port") from None
        raise


def launch(
    model: str | Path | None = None,
    backend: str = "auto",
    host: str = "127.0.0.1",
    port: int | None = 7860,
    share: bool = False,
    *,
    device: str | None = None,
    project: str | Path = "runs",
    output_dir: str | Path | None = None,
    concurrency: int = 1,
    max_queue: int = 32,
    max_file_size: str | int | None = DEFAULT_MAX_FILE_SIZE,
    max_pixels: int = MAX_PIXELS,
    n_examples: int = 4,
    compare: bool = True,
    prevent_thread_lock: bool = False,
    echo=print,
):
    """``diga demo``: resolve and load the model (and its before-adaptation model), then serve."""
    model_path = resolve_model(model, project)  # first: "no model" must not depend on anything else

    from diga.export import Predictor

    from .examples import ensure_examples

    load_path = model_for_backend(model_path, backend)
    out_dir = _make_output_dir(output_dir)
    # Gradio's uploads and served copies go inside the demo's own folder too.
    os.environ.setdefault("GRADIO_TEMP_DIR", str(out_dir / "gradio"))
    predictor = Predictor.load(load_path, backend=backend, device=device)
    before = None
    before_path = find_before_model(model_path) if compare else None
    if before_path is not None:
        try:  # its own export for the same backend if there is one, else the checkpoint with PyTorch
            try:
                before_path = model_for_backend(before_path, backend)
            except ValueError:
                pass
            before = Predictor.load(before_path, backend="auto", device=str(predictor.device))
        except Exception as e:  # noqa: BLE001 - the comparison is optional
            echo(f"warning: before-adaptation model {before_path} not loaded ({type(e).__name__}: {e}); "
                 "no before/after comparison")
    examples = ensure_examples(n_examples)
    demo = build_app(predictor, before, examples, model_name=_display_name(load_path), output_dir=out_dir,
                     concurrency=concurrency, max_queue=max_queue, max_pixels=max_pixels)
    echo(f"model {load_path} (backend {predictor.backend}, device {predictor.device})"
         + (f"; before adaptation: {before_path}" if before is not None else "; no before-adaptation model"))
    if not prevent_thread_lock and threading.current_thread() is threading.main_thread():
        # `kill` (SIGTERM) stops like Ctrl+C: the server closes and the temporary folder is removed.
        signal.signal(signal.SIGTERM, _interrupt)
    serve(demo, host, port, share, max_file_size, prevent_thread_lock)
    return demo


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _display_name(path: Path) -> str:
    parts = path.parts[-3:] if path.parent.name else path.parts[-1:]
    return "/".join(parts)
