"""diga.demo.inputs (decoding/validation of uploads), diga.demo.render (pure view logic), the model
lookup rules of diga.demo.discovery and the ``diga demo`` CLI errors. No server, no model runs here."""

from __future__ import annotations

import io
import os
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diga.demo.inputs import DemoInputError, decode_image, fit_pixels, safe_stem
from diga.demo.render import (
    blend,
    class_shares,
    colorize,
    legend_html,
    render_prediction,
    runtime_markdown,
    share_figure,
)


def _png(arr: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format="PNG") if mode else Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _rgb(h=32, w=48, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def _png_raw(w: int, h: int, bit_depth: int, color_type: int, rows: bytes) -> bytes:
    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(rows)) + _chunk(b"IEND", b"")


# ---------------------------------------------------------------------------------------------
# good images
# ---------------------------------------------------------------------------------------------

def test_rgb_png_roundtrip_from_bytes_and_path(tmp_path):
    arr = _rgb()
    out = decode_image(_png(arr), name="a.png")
    assert out.array.dtype == np.uint8 and out.array.shape == (32, 48, 3)
    np.testing.assert_array_equal(out.array, arr)
    assert out.notices == []
    p = tmp_path / "street.png"
    p.write_bytes(_png(arr))
    out = decode_image(p)
    assert out.name == "street.png" and out.size == (32, 48)
    np.testing.assert_array_equal(out.array, arr)


def test_grayscale_is_converted_with_notice():
    gray = np.random.default_rng(1).integers(0, 256, (20, 30), dtype=np.uint8)
    out = decode_image(_png(gray), name="g.png")
    assert out.array.shape == (20, 30, 3)
    np.testing.assert_array_equal(out.array[..., 0], gray)
    assert any("grayscale" in n for n in out.notices)


def test_16bit_grayscale_is_scaled_to_8_bits():
    arr16 = np.full((20, 30), 65535, dtype=np.uint16)
    arr16[:, :10] = 0
    buf = io.BytesIO()
    Image.fromarray(arr16).save(buf, format="PNG")
    out = decode_image(buf.getvalue(), name="deep.png")
    assert out.array.shape == (20, 30, 3)
    assert out.array[0, 0, 0] == 0 and out.array[0, 20, 0] == 255
    assert any("16-bit" in n for n in out.notices)


def test_16bit_per_channel_rgb_is_reduced_with_notice():
    rows = b"".join(b"\x00" + np.full((24, 3), 40000, dtype=">u2").tobytes() for _ in range(18))
    out = decode_image(_png_raw(24, 18, 16, 2, rows), name="rgb48.png")
    assert out.array.shape == (18, 24, 3) and out.array.dtype == np.uint8
    assert out.array[0, 0, 0] == 40000 >> 8  # the high byte, as everywhere (diga.data.decode)
    assert any("16-bit" in n for n in out.notices)


def test_cmyk_jpeg_is_converted_with_notice():
    buf = io.BytesIO()
    Image.new("CMYK", (40, 30), (0, 255, 255, 0)).save(buf, format="JPEG")
    out = decode_image(buf.getvalue(), name="print.jpg")
    assert out.array.shape == (30, 40, 3)
    assert out.array[..., 0].mean() > 200 and out.array[..., 1].mean() < 60  # red
    assert any("CMYK" in n for n in out.notices)


def test_rgba_is_composited_on_white_with_notice():
    rgba = np.zeros((20, 30, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[:, 15:, 3] = 255  # left half fully transparent
    out = decode_image(_png(rgba, "RGBA"), name="cut.png")
    assert out.array.shape == (20, 30, 3)
    assert tuple(out.array[0, 0]) == (255, 255, 255)
    assert tuple(out.array[0, 20]) == (200, 0, 0)
    assert any("transparency" in n for n in out.notices)


def test_palette_with_transparency_and_gif_frames():
    frames = [Image.new("P", (32, 32), i) for i in range(3)]
    for f in frames:
        f.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] * 64)
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], transparency=0)
    out = decode_image(buf.getvalue(), name="anim.gif")
    assert out.array.shape == (32, 32, 3)
    assert any("frames" in n for n in out.notices)


def test_large_image_is_downscaled_with_notice():
    arr = _rgb(300, 400)
    out = decode_image(_png(arr), name="big.png", max_pixels=30_000)
    h, w = out.size
    assert h * w <= 30_000 and abs(w / h - 400 / 300) < 0.05
    assert out.original_size == (300, 400)
    assert any("downscaled" in n and "400×300" in n for n in out.notices)


def test_fit_pixels():
    assert fit_pixels((100, 50), 10_000) == (100, 50)
    w, h = fit_pixels((4000, 3000), 2_000_000)
    assert w * h <= 2_000_000 and abs(w / h - 4 / 3) < 0.01


# ---------------------------------------------------------------------------------------------
# bad inputs: each gives a DemoInputError with a readable message
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("data, words", [
    (b"hello, I am a text file\n", "not an image"),
    (b"<svg xmlns='http://www.w3.org/2000/svg'></svg>", "not an image"),
    (b"%PDF-1.4\n%...", "not an image"),
    (b"", "empty"),
])
def test_non_images(data, words):
    with pytest.raises(DemoInputError, match=words) as e:
        decode_image(data, name="upload.bin")
    assert str(e.value).startswith("upload.bin:")


def test_truncated_png():
    data = _png(_rgb(64, 64))
    with pytest.raises(DemoInputError, match="truncated|corrupt"):
        decode_image(data[: len(data) // 2], name="half.png")


def test_corrupt_jpeg():
    buf = io.BytesIO()
    Image.fromarray(_rgb(64, 64)).save(buf, format="JPEG")
    data = bytearray(buf.getvalue())
    data = data[:200] + bytes(200) + b"\xff\xd9"  # header, then garbage, then an end marker
    with pytest.raises(DemoInputError, match="truncated|corrupt"):
        decode_image(bytes(data), name="broken.jpg")


def test_header_only_bomb_is_refused_without_decoding():
    # A PNG header claiming 60000 x 60000 pixels (3.6 GP) and a few bytes of data.
    data = _png_raw(60000, 60000, 8, 2, b"\x00" * 16)
    t0 = time.perf_counter()
    with pytest.raises(DemoInputError, match="too large"):
        decode_image(data, name="bomb.png")
    assert time.perf_counter() - t0 < 5.0  # decoding 3.6 GP would take minutes (or exhaust memory)


def test_hard_pixel_limit_and_small_images():
    with pytest.raises(DemoInputError, match="too large"):
        decode_image(_png(_rgb(100, 100)), name="x.png", hard_max_pixels=5_000)
    with pytest.raises(DemoInputError, match="too small"):
        decode_image(_png(_rgb(8, 100)), name="thin.png")


def test_file_size_limit_and_missing_file(tmp_path):
    p = tmp_path / "big.png"
    p.write_bytes(_png(_rgb(64, 64)))
    with pytest.raises(DemoInputError, match="file too large"):
        decode_image(p, max_bytes=100)
    with pytest.raises(DemoInputError, match="cannot be read"):
        decode_image(tmp_path / "nope.png")


def test_safe_stem_is_the_predict_rule():
    """The demo names its downloads with ``diga predict``'s rule (one function)."""
    from diga.export.images import safe_stem as predict_stem

    assert safe_stem is predict_stem
    assert safe_stem("../../etc/passwd") == "passwd"
    assert safe_stem("C:\\x\\my street.PNG") == "my street"
    assert safe_stem("....", "image3") == "image3"
    assert "/" not in safe_stem("a/b/c.png")


# ---------------------------------------------------------------------------------------------
# render: Prediction -> outputs
# ---------------------------------------------------------------------------------------------

CLASSES = ["road", "car", "sky<script>"]
PALETTE = [(128, 64, 128), (0, 0, 142), (70, 130, 180)]


def test_colorize_blend_and_shares():
    labels = np.array([[0, 0, 1, 255], [2, 2, 2, 7]], dtype=np.uint8)
    color = colorize(labels, PALETTE)
    assert color.shape == (2, 4, 3) and tuple(color[0, 2]) == (0, 0, 142)
    assert tuple(color[0, 3]) == (0, 0, 0) and tuple(color[1, 3]) == (0, 0, 0)
    img = np.full((2, 4, 3), 100, np.uint8)
    np.testing.assert_array_equal(blend(img, color, 0.0), img)
    full = blend(img, color, 1.0, labels)
    assert tuple(full[0, 0]) == (128, 64, 128) and tuple(full[0, 3]) == (100, 100, 100)  # ignore keeps image
    shares = class_shares(labels, CLASSES, PALETTE)
    assert [s.pixels for s in shares] == [2, 1, 3]
    assert sum(s.share for s in shares) == pytest.approx(1.0)
    assert shares[2].hex == "#4682b4"


def test_render_prediction_legend_and_figure():
    img = np.zeros((4, 6, 3), np.uint8)
    labels = np.zeros((4, 6), np.uint8)
    labels[:, 3:] = 2
    before = np.ones((4, 6), np.uint8)
    r = render_prediction(img, labels, CLASSES, PALETTE, alpha=0.5, before_labels=before)
    assert r.color.shape == (4, 6, 3) and r.overlay.shape == (4, 6, 3) and r.before_overlay.shape == (4, 6, 3)
    assert "sky&lt;script&gt;" in r.legend_html and "<script>" not in r.legend_html
    assert "#804080" in r.legend_html and "50.0%" in r.legend_html and "before" in r.legend_html
    rows = r.share_rows()
    assert {row["model"] for row in rows} == {"after adaptation", "before adaptation"}
    assert share_figure(r).axes
    r2 = render_prediction(img, labels, CLASSES, PALETTE)
    assert r2.before_shares is None and "before" not in legend_html(r2.shares)
    assert share_figure(r2).axes
    with pytest.raises(ValueError, match="match"):
        render_prediction(img, labels[:2], CLASSES, PALETTE)
    md = runtime_markdown("onnx", "cpu", 30.0, 3, "adapt/x/final.safetensors")
    assert "`onnx`" in md and "`cpu`" in md and "10.0 ms/image" in md


# ---------------------------------------------------------------------------------------------
# model lookup and CLI errors
# ---------------------------------------------------------------------------------------------

def _ckpt(path: Path, **extra) -> Path:
    """A checkpoint file with diga metadata; the weights are a single dummy tensor (never loaded here)."""
    import torch

    from diga.checkpoint import model_metadata, save_weights

    return save_weights(path, {"w": torch.zeros(1)}, model_metadata("deeplabv2_light", "cityscapes19", **extra))


def test_find_before_model(tmp_path):
    from diga.demo.discovery import find_before_model

    run = tmp_path / "runs" / "adapt" / "a"
    final = _ckpt(run / "final.safetensors", before_adaptation="warmup/weights/last.safetensors")
    assert find_before_model(final) is None  # the metadata names a file that is not there, no sibling
    _ckpt(run / "before.safetensors")
    assert find_before_model(final) == run / "before.safetensors"  # sibling rule
    _ckpt(run / "warmup" / "weights" / "last.safetensors")
    assert find_before_model(final) == run / "warmup" / "weights" / "last.safetensors"  # metadata wins
    other = _ckpt(tmp_path / "elsewhere.safetensors", before_adaptation=str(run / "before.safetensors"))
    assert find_before_model(other) is None  # absolute paths in the metadata are ignored
    assert find_before_model(run / "before.safetensors") is None  # never the model itself
    exported = run / "model.onnx"  # an exported model: its JSON sidecar, else the sibling rule
    exported.write_bytes(b"onnx")
    assert find_before_model(exported) == run / "before.safetensors"
    (run / "model.json").write_text('{"before_adaptation": "warmup/weights/last.safetensors"}')
    assert find_before_model(exported) == run / "warmup" / "weights" / "last.safetensors"


def test_newest_model_and_resolve(tmp_path):
    from diga.demo.discovery import NoModelError, newest_model, resolve_model

    assert newest_model(tmp_path) is None
    with pytest.raises(NoModelError, match="diga adapt"):
        resolve_model(None, tmp_path)
    old = _ckpt(tmp_path / "adapt" / "old" / "final.safetensors")
    new = _ckpt(tmp_path / "adapt" / "new" / "final.safetensors")
    os.utime(old, (time.time() + 100, time.time() + 100))
    assert newest_model(tmp_path) == old
    os.utime(new, (time.time() + 200, time.time() + 200))
    assert resolve_model(None, tmp_path) == new
    assert resolve_model(old, tmp_path) == old
    with pytest.raises(NoModelError, match="not found"):
        resolve_model(tmp_path / "missing.safetensors")


def test_cli_demo_without_model_says_how_to_make_one(cli, tmp_path):
    result = cli("demo", "--project", tmp_path / "runs")
    text = " ".join(result.output.split())
    assert result.exit_code == 1, text
    assert "diga adapt" in text and "--model" in text
    assert "Traceback" not in text
    result = cli("demo", "--model", tmp_path / "nope.safetensors")
    assert result.exit_code == 1 and "not found" in " ".join(result.output.split())
    result = cli("demo", "--backend", "cuda-magic", "--project", tmp_path)
    assert result.exit_code != 0 and "cuda-magic" in result.output


def test_render_from_a_predictor_prediction(tmp_path):
    from diga.demo.render import render_from_predictions
    from diga.export import Prediction

    labels = np.array([[0, 1], [1, 1]], np.uint8)
    pred = Prediction(labels=labels, palette=np.asarray(PALETTE, np.uint8), image=np.zeros((2, 2, 3), np.uint8))
    r = render_from_predictions(pred, {"classes": CLASSES, "palette": PALETTE}, alpha=1.0, before=pred)
    np.testing.assert_array_equal(r.overlay, pred.color)
    assert [s.pixels for s in r.shares] == [1, 3, 0] and r.before_shares is not None
