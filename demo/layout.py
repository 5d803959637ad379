"""The Gradio page: components, and events wired to :mod:`diga.demo.logic`.

The handlers below only turn what the logic returns into component values; requests are
queued and the model runs at most ``concurrency`` times at once (one ``concurrency_id`` shared
by every event that may run a model).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import gradio as gr

from diga.inference import AUTO, MODE_CHOICES

from .inputs import MAX_PIXELS
from .logic import (
    IDLE_STATUS,
    IDLE_VIDEO_STATUS,
    MAX_IMAGES,
    DemoLogic,
    deep_link,
    empty_view,
    failure_message,
    image_choices,
    make_output_dir,
    md,
    segment_video,
    selected_example,
)

log = logging.getLogger(__name__)

TITLE = "DiGA — domain-adapted street-scene segmentation"


def toast_warning(msg: str) -> None:
    try:
        gr.Warning(msg)
    except Exception:  # noqa: BLE001 - outside a request there is nobody to show it to
        log.warning(msg)


def toast_info(msg: str) -> None:
    try:
        gr.Info(msg)
    except Exception:  # noqa: BLE001
        log.info(msg)


# ----------------------------------------------------------------------------------------------
# Handlers (bound to one DemoLogic with functools.partial)
# ----------------------------------------------------------------------------------------------

def view_values(logic: DemoLogic, v: dict[str, Any]) -> list:
    """A view of the logic as values of the view components (``view_outputs`` in :func:`build_app`)."""
    return [v["input"], v["mask"], v["overlay"], gr.update(visible=v["compare_visible"]),
            v["before"], v["after"], v["legend"] or logic.empty_legend(), v["plot"], v["runtime"]]


def segment(logic: DemoLogic, files, alpha: float = 0.5, compare: bool = False, mode: str | None = None) -> list:
    """Segment the uploaded images; returns the views of the first one and the downloads."""
    try:
        state, status, downloads = logic.segment(files, compare=bool(compare), mode=mode or None)
        choices = image_choices(state)
        selector = gr.update(choices=choices, value=0 if choices else None, visible=len(choices) > 1)
        view = logic.view_files(state, 0, alpha, compare)
        return [state, status, selector, *view_values(logic, view), downloads or None]
    except Exception as e:  # noqa: BLE001 - last line of defence: a message, never a traceback
        log.exception("segment failed")
        return [None, md(failure_message("Something went wrong", e)),
                gr.update(choices=[], value=None, visible=False), *view_values(logic, empty_view()), None]


def rerender(logic: DemoLogic, state: dict | None, index: Any, alpha: float, compare: bool) -> list:
    """The opacity, the selected image or the before/after switch changed."""
    try:
        return [state, *view_values(logic, logic.toggle(state, index, alpha, compare))]
    except Exception as e:  # noqa: BLE001
        log.exception("rerender failed")
        toast_warning(f"Could not update the view: {type(e).__name__}")
        return [state, *view_values(logic, empty_view())]


def segment_video_request(logic: DemoLogic, video, alpha: float = 0.5) -> list:
    """Segment an uploaded video: [overlay video path or None, status markdown]."""
    try:
        return list(segment_video(logic.predictor, video, logic.new_request_dir(), alpha=alpha,
                                  model_name=logic.model_name, max_pixels=logic.max_pixels))
    except Exception as e:  # noqa: BLE001 - last line of defence: a message, never a traceback
        log.exception("segment_video failed")
        return [None, md(failure_message("Something went wrong", e))]


def video_tab(logic: DemoLogic, alpha: gr.Slider, model_events: dict[str, Any]) -> None:
    """The Video tab: upload a short clip, get the overlay video (same fps and size, no sound)."""
    with gr.Tab("Video", elem_id="diga-video-tab"):
        with gr.Row():
            video_in = gr.Video(label="Street video", sources=["upload"], include_audio=True, height=260,
                                elem_id="diga-video-in")
            video_out = gr.Video(label="Overlay", interactive=False, autoplay=True, loop=True, height=260,
                                 elem_id="diga-video-out")
        video_status = gr.Markdown(IDLE_VIDEO_STATUS, elem_id="diga-video-status")
        video_btn = gr.Button("Segment video", variant="primary", elem_id="diga-video-run")
    on_video = partial(segment_video_request, logic)
    video_btn.click(on_video, [video_in, alpha], [video_out, video_status], api_name="segment_video",
                    **model_events)


# ----------------------------------------------------------------------------------------------
# The page
# ----------------------------------------------------------------------------------------------

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
) -> gr.Blocks:
    """The demo as a ``gr.Blocks`` app (queued: ``concurrency`` model runs at once, ``max_queue`` waiting).

    ``examples``: image paths shown as a clickable gallery (target-domain images, see
    :func:`diga.demo.examples.ensure_examples`). The API endpoint ``/segment`` takes
    ``(files, alpha, compare, mode)`` (``mode`` may be left out: the predictor's default). Files are
    written under ``output_dir`` only (a temporary folder by default), see :mod:`diga.demo.logic`."""
    out_dir = make_output_dir(output_dir)
    logic = DemoLogic(predictor, before_predictor, output_dir=out_dir, max_images=max_images,
                      max_pixels=max_pixels, keep_seconds=keep_seconds, model_name=model_name,
                      warn=toast_warning, info=toast_info)
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
                    f"{len(logic.classes)} classes. Model `{md(model_name or '?')}`"
                    + (f" (stage `{md(str(stage))}`)" if stage else "")
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
                mode = gr.Dropdown(choices=list(MODE_CHOICES), value=getattr(predictor, "mode", AUTO),
                                   label="Inference mode", interactive=True, elem_id="diga-mode",
                                   info="auto: by image size vs the training scale; whole image; resize to the "
                                        "training scale; slide windows of the training crop.")
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
                status = gr.Markdown(IDLE_STATUS, elem_id="diga-status")
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
                        legend = gr.HTML(logic.empty_legend(), elem_id="diga-legend")
                    with gr.Column(scale=2):
                        plot = gr.Plot(label="Share of pixels per class", show_label=False, format="png",
                                       elem_id="diga-plot")
                runtime = gr.Markdown("", elem_id="diga-runtime")
                downloads = gr.File(label="Downloads: label PNG (class ids, 255 = ignore) and colour mask",
                                    file_count="multiple", interactive=False, height=120,
                                    elem_id="diga-downloads")

        view_outputs = [in_img, mask_img, ov_img, compare_row, before_img, after_img, legend, plot, runtime]
        seg_outputs = [state, status, selector, *view_outputs, downloads]
        on_segment = partial(segment, logic)
        on_change = partial(rerender, logic)

        # Gradio finds gr.SelectData / gr.Request through the handler's own annotations, which a
        # partial hides: these two stay small functions.
        def on_example(a, cmp, m, evt: gr.SelectData):
            idx = selected_example(evt.index, len(example_paths))
            return on_segment([] if idx is None else [example_paths[idx]], a, cmp, m)  # a path chosen by index only

        def on_load(a, cmp, m, request: gr.Request):
            # Deep link /?example=N[&compare=1]: segments example N when the page opens (for sharing a
            # view, and for screenshots with a headless browser).
            link = deep_link(dict(getattr(request, "query_params", None) or {}), len(example_paths), has_before)
            if link is None:
                return [gr.skip()] * (len(seg_outputs) + 1)
            idx, want = link
            return [*on_segment([example_paths[idx]], a, want, m), want]

        model_events = dict(concurrency_limit=concurrency, concurrency_id="model")
        video_tab(logic, alpha, model_events)
        run_btn.click(on_segment, [files, alpha, compare, mode], seg_outputs, api_name="segment", **model_events)
        files.upload(on_segment, [files, alpha, compare, mode], seg_outputs, api_visibility="private", **model_events)
        if gallery is not None:
            gallery.select(on_example, [alpha, compare, mode], seg_outputs, api_visibility="private", **model_events)
        demo.load(on_load, [alpha, compare, mode], [*seg_outputs, compare], api_visibility="private", **model_events)
        # Toggling the comparison may run the before model, so it shares the model's concurrency.
        view_inputs, view_targets = [state, selector, alpha, compare], [state, *view_outputs]
        compare.input(on_change, view_inputs, view_targets, api_visibility="private", **model_events)
        alpha.release(on_change, view_inputs, view_targets, api_visibility="private", trigger_mode="always_last",
                      **model_events)
        selector.input(on_change, view_inputs, view_targets, api_visibility="private", **model_events)

    demo.queue(default_concurrency_limit=concurrency, max_size=max_queue)
    demo.diga_logic = logic  # for tests and serve()
    demo.diga_output_dir = out_dir
    return demo
