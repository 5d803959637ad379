"""The Gradio demo, started in-process on a free 127.0.0.1 port and driven over real HTTP with
gradio_client (and, with ``-m browser``, loaded in headless Chromium). Tiny random-weight
deeplabv2_light checkpoints and 64x128 synthetic target-domain images keep it fast."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMIUM = "/usr/bin/chromium"
CONCURRENCY = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _checkpoint(path: Path, seed: int, **extra) -> Path:
    import torch

    import diga.checkpoint
    import diga.models

    torch.manual_seed(seed)
    model = diga.models.create("deeplabv2_light", 19)
    meta = diga.checkpoint.model_metadata("deeplabv2_light", "cityscapes19", input_size=(64, 128), **extra)
    return diga.checkpoint.save_weights(path, model.state_dict(), meta)


class CountingPredictor:
    """Wraps a Predictor and records how many ``predict`` calls ran at the same time."""

    def __init__(self, inner, delay: float = 0.0):
        self.inner, self.delay = inner, delay
        self.active = self.max_active = self.calls = 0
        self.lock = threading.Lock()

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def predict(self, images, **kw):
        with self.lock:
            self.active += 1
            self.calls += 1
            self.max_active = max(self.max_active, self.active)
        try:
            time.sleep(self.delay)
            return self.inner.predict(images, **kw)
        finally:
            with self.lock:
                self.active -= 1


@pytest.fixture(scope="module")
def demo_env(tmp_path_factory):
    """(runs dir with final + before checkpoints, a few synthetic target images, scratch dir)."""
    from diga.data.synth import TARGET_STYLE, render_scene

    root = tmp_path_factory.mktemp("demo")
    run = root / "runs" / "adapt" / "tiny"
    final = _checkpoint(run / "final.safetensors", 0, before_adaptation="before.safetensors")
    _checkpoint(run / "before.safetensors", 1)
    images = []
    for k in range(3):
        img, _ = render_scene(np.random.default_rng([0, 1, 1, k]), (64, 128), TARGET_STYLE)
        p = root / "inputs" / f"street_{k}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(p)
        images.append(p)
    return {"root": root, "final": final, "images": images}


@pytest.fixture(scope="module")
def server(demo_env):
    """The app on a free 127.0.0.1 port; Gradio's own files go to the demo's output dir too."""
    from diga.demo.app import serve
    from diga.demo.discovery import find_before_model
    from diga.demo.layout import build_app
    from diga.export import Predictor

    out = demo_env["root"] / "out"
    mp = pytest.MonkeyPatch()
    mp.setenv("GRADIO_TEMP_DIR", str(out / "gradio"))
    mp.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    pred = CountingPredictor(Predictor.load(demo_env["final"]), delay=0.05)
    before = Predictor.load(find_before_model(demo_env["final"]))
    demo = build_app(pred, before, examples=demo_env["images"][:2], model_name="adapt/tiny/final.safetensors",
                     output_dir=out, concurrency=CONCURRENCY, max_queue=16, max_pixels=40_000)
    port = _free_port()
    serve(demo, "127.0.0.1", port, prevent_thread_lock=True, quiet=True, max_file_size="2mb")
    url = f"http://127.0.0.1:{port}/"
    yield {"demo": demo, "url": url, "out": out, "pred": pred, "port": port}
    demo.close()
    mp.undo()


@pytest.fixture(scope="module")
def client(server, tmp_path_factory):
    from gradio_client import Client

    return Client(server["url"], verbose=False, download_files=str(tmp_path_factory.mktemp("client_dl")))


# Output order of /segment (the State and the layout Row are not part of the API): status, selector,
# input, mask, overlay, before, after, legend, plot, runtime, downloads.
STATUS, SELECTOR, INPUT, MASK, OVERLAY, BEFORE, AFTER, LEGEND, PLOT, RUNTIME, DOWNLOADS = range(11)


def _segment(client, paths, alpha=0.5, compare=False):
    from gradio_client import handle_file

    return client.predict([handle_file(str(p)) for p in paths], alpha, compare, api_name="/segment")


def test_binds_loopback_only(server):
    assert server["demo"].server_name == "127.0.0.1"
    assert server["demo"].local_url.startswith("http://127.0.0.1:")


def test_synthetic_image_gives_mask_of_the_right_size(client, server, demo_env):
    res = _segment(client, [demo_env["images"][0]])
    assert "Segmented **1** image" in res[STATUS], res[STATUS]
    labels_png, color_png = res[DOWNLOADS]
    labels = np.asarray(Image.open(labels_png))
    assert labels.shape == (64, 128) and labels.dtype == np.uint8
    assert set(np.unique(labels)) <= set(range(19))  # classes of the label space
    color = np.asarray(Image.open(color_png).convert("RGB"))
    assert color.shape == (64, 128, 3)
    assert np.asarray(Image.open(res[MASK]).convert("RGB")).shape == (64, 128, 3)
    assert np.asarray(Image.open(res[OVERLAY]).convert("RGB")).shape == (64, 128, 3)
    from diga.classes import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE
    present = [CITYSCAPES_CLASSES[i] for i in np.unique(labels)]
    assert all(name in res[LEGEND] for name in present)
    # the colour mask is the palette applied to the labels
    lut = np.asarray(CITYSCAPES_PALETTE, np.uint8)
    np.testing.assert_array_equal(color, lut[labels])
    assert "`torch`" in res[RUNTIME] and "`cpu`" in res[RUNTIME] and "ms/image" in res[RUNTIME]
    # downloads were written inside the demo's output dir only
    written = list((server["out"] / "requests").glob("*/*_labels.png"))
    assert any(p.name == "street_0_labels.png" for p in written)


def test_before_vs_after_and_several_images(client, demo_env):
    res = _segment(client, demo_env["images"], compare=True)
    assert "Segmented **3** images" in res[STATUS]
    assert len(res[DOWNLOADS]) == 6  # label PNG + colour mask per image
    assert res[BEFORE] and res[AFTER] and "before" in res[LEGEND]
    assert "before-adaptation model" in res[RUNTIME]


def test_non_image_returns_a_readable_message(client, demo_env, tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("this is not a street image")
    res = _segment(client, [bad])
    assert "No image could be segmented" in res[STATUS]
    assert "notes.txt: not an image" in res[STATUS]
    assert "Traceback" not in res[STATUS]
    assert res[MASK] is None and not res[DOWNLOADS]


def test_mixed_upload_corrupt_large_and_rgba(client, demo_env, tmp_path):
    good = demo_env["images"][1]
    data = good.read_bytes()
    broken = tmp_path / "broken.png"
    broken.write_bytes(data[: len(data) // 3])
    big = tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8)).save(big)
    rgba = tmp_path / "cutout.png"
    Image.open(good).convert("RGBA").save(rgba)
    res = _segment(client, [good, broken, big, rgba])
    status = res[STATUS]
    assert "Segmented **3** images" in status, status
    assert "broken.png: looks like a PNG file but cannot be decoded" in status or "broken.png: the image file" in status
    assert "downscaled" in status and "transparency" in status
    big_labels = np.asarray(Image.open(res[DOWNLOADS][2]))
    assert big_labels.shape[0] * big_labels.shape[1] <= 40_000  # the configured pixel limit


def test_upload_size_limit_is_enforced(client, tmp_path):
    huge = tmp_path / "huge.png"
    huge.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(3 * 1024 * 1024))
    with pytest.raises(Exception, match="maximum file size") as e:  # refused at upload (max_file_size=2mb)
        _segment(client, [huge])
    assert "Traceback" not in str(e.value)


def test_concurrent_requests_all_succeed_within_the_concurrency_limit(server, demo_env, tmp_path):
    from gradio_client import Client, handle_file

    pred = server["pred"]
    pred.max_active = 0
    clients = [Client(server["url"], verbose=False, download_files=str(tmp_path / f"c{i}")) for i in range(3)]
    jobs = [clients[i % 3].submit([handle_file(str(demo_env["images"][i % 3]))], 0.5, False, api_name="/segment")
            for i in range(6)]
    results = [j.result(timeout=60) for j in jobs]
    assert all("Segmented **1** image" in r[STATUS] for r in results)
    assert all(np.asarray(Image.open(r[DOWNLOADS][0])).shape == (64, 128) for r in results)
    assert 1 <= pred.max_active <= CONCURRENCY


def test_gradio_files_stay_in_the_output_dir(server, client, demo_env):
    _segment(client, [demo_env["images"][2]])
    cache = server["out"] / "gradio"
    assert cache.is_dir() and any(cache.rglob("*.png"))


def test_launch_resolves_model_and_before(demo_env, monkeypatch, tmp_path):
    from diga.demo.app import PortInUseError, launch

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "g"))
    lines = []
    demo = launch(None, project=demo_env["root"] / "runs", port=_free_port(), n_examples=0,
                  output_dir=tmp_path / "o", prevent_thread_lock=True, echo=lines.append)
    try:
        assert demo.server_name == "127.0.0.1"
        assert "before adaptation" in lines[-1] and "final.safetensors" in lines[-1]
        assert demo.diga_logic.before is not None
    finally:
        demo.close()
    with pytest.raises(ValueError, match="diga export"):
        launch(demo_env["final"], backend="onnx", output_dir=tmp_path / "o2", n_examples=0)
    with socket.socket() as busy:  # a taken port is one readable line, not a traceback
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        with pytest.raises(PortInUseError, match="--port"):
            launch(demo_env["final"], port=busy.getsockname()[1], output_dir=tmp_path / "o3", n_examples=0,
                   prevent_thread_lock=True, echo=lines.append)


@pytest.mark.browser
def test_browser_renders_the_app(server, tmp_path):
    if not Path(CHROMIUM).exists():
        print(f"skipped: {CHROMIUM} is missing (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--window-size=1280,1000", "--virtual-time-budget=15000"]
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, *flags, f"--user-data-dir={tmp_path / 'p1'}", f"--screenshot={shot}", server["url"]],
                   capture_output=True, timeout=60, check=False)
    assert shot.is_file(), "chromium wrote no screenshot"
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert pixels.shape[0] > 500 and pixels.std() > 5.0, "the screenshot is blank"
    dom = subprocess.run([CHROMIUM, *flags, f"--user-data-dir={tmp_path / 'p2'}", "--dump-dom", server["url"]],
                         capture_output=True, text=True, timeout=60, check=False).stdout
    for text in ("DiGA", "domain-adapted street-scene segmentation", "Street images", "Overlay opacity",
                 "Colour mask", "Before vs after adaptation", "Examples (target domain)"):
        assert text in dom, f"{text!r} not in the rendered page"


def test_rerender_views_opacity_selection_and_comparison(server, demo_env):
    """What the slider, the image selector and the before/after toggle call (private events)."""
    logic = server["demo"].diga_logic
    state, status, downloads = logic.segment([str(p) for p in demo_env["images"][:2]], compare=False)
    assert state and len(state["items"]) == 2 and len(downloads) == 4
    v0 = logic.view_files(state, 1, 0.0, False)
    v1 = logic.view_files(state, 1, 1.0, False)
    img = np.asarray(Image.open(demo_env["images"][1]).convert("RGB"))
    np.testing.assert_array_equal(np.asarray(Image.open(v0["overlay"])), img)  # opacity 0: the image
    np.testing.assert_array_equal(np.asarray(Image.open(v1["overlay"])), np.asarray(Image.open(v1["mask"])))
    assert v0["before"] is None and not v0["compare_visible"]
    assert logic.ensure_before(state) is None
    v2 = logic.view_files(state, 0, 0.5, True)
    assert v2["compare_visible"] and Path(v2["before"]).is_file() and "before" in v2["legend"]
    out = server["out"].resolve()
    for v in (v0, v1, v2):
        for key in ("input", "mask", "overlay"):
            assert Path(v[key]).resolve().is_relative_to(out)
    assert logic.view_files(None, 0, 0.5, True)["input"] is None
    assert logic.view_files(state, 99, 0.5, False)["input"] is not None  # a stale index falls back to the first
