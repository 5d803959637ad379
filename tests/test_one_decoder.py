"""One image decoder (diga.data.decode) for the datasets, ``diga predict`` and the demo.

The policy its docstring states (alpha composited on white, EXIF orientation applied, 16-bit
samples keep their high byte) is checked on both backends (torchvision, Pillow), and odd files
are segmented through ``diga predict`` (the CLI) and the demo's request logic with a random-weight
checkpoint: the label maps must be identical."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli
from PIL import Image

from diga.data import decode
from diga.data.decode import ImageDecodeError, decode_image, decode_pil

try:
    from fixtures_data import write_png16
except ImportError:  # tests/ imported as a package
    from tests.fixtures_data import write_png16


def _bytes(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _hwc(data: bytes, **kw) -> np.ndarray:
    return decode_image(data, "test", **kw).hwc()


def _on_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """The docstring's formula, in floating point."""
    a = alpha.astype(np.float64)[..., None]
    return np.round((rgb.astype(np.float64) * a + 255.0 * (255.0 - a)) / 255.0).astype(np.uint8)


@pytest.fixture(params=["torchvision", "pillow"])
def png_backend(request, monkeypatch) -> str:
    monkeypatch.setattr(decode, "PNG_DECODER", request.param)
    return request.param


# --------------------------------------------------------------------------------------------
# The policy


def test_docstring_states_the_policy_checked_here():
    doc = " ".join(decode.__doc__.split())
    assert "composited on **white**" in doc
    assert "EXIF orientation is applied (``exif=True``, the default" in doc
    assert "16-bit samples keep their high byte" in doc


def test_alpha_is_composited_on_white(png_backend):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (4, 64, 3), dtype=np.uint8)
    alpha = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (4, 1))
    alpha[:, -1] = 255
    data = _bytes(Image.fromarray(np.dstack([rgb, alpha]), "RGBA"), "PNG")
    out = _hwc(data)
    assert np.array_equal(out, _on_white(rgb, alpha))
    assert (out[:, 0] == 255).all()  # alpha 0: white, whatever colour is stored under it
    assert np.array_equal(out[:, -1], rgb[:, -1])  # opaque: unchanged
    assert "transparency ignored (composited on white)" in decode_image(data).notes
    # gray + alpha, palette transparency and a GIF's transparent index follow the same rule
    la = _hwc(_bytes(Image.fromarray(np.dstack([rgb[..., 0], alpha]), "LA"), "PNG"))
    assert np.array_equal(la, _on_white(np.repeat(rgb[..., :1], 3, axis=2), alpha))
    idx = np.array([[0, 1], [1, 0]] * 8, np.uint8)
    p = Image.fromarray(idx, "P")
    p.putpalette([10, 20, 30, 40, 50, 60])
    for fmt in ("PNG", "GIF"):
        out = _hwc(_bytes(p, fmt, transparency=0))
        assert (out[idx == 0] == 255).all() and (out[idx == 1] == (40, 50, 60)).all(), fmt


def test_in_memory_rgba_follows_the_same_rule():
    from diga.export.images import as_rgb_array

    rgba = np.random.default_rng(1).integers(0, 256, (20, 30, 4), dtype=np.uint8)
    from_file = _hwc(_bytes(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert np.array_equal(decode_pil(Image.fromarray(rgba, "RGBA")).hwc(), from_file)
    assert np.array_equal(as_rgb_array(rgba), from_file)
    assert np.array_equal(as_rgb_array(Image.fromarray(rgba, "RGBA")), from_file)


def _exif_rotated(fmt: str) -> bytes:
    """Stored 24 x 40 (H x W), red in the top-left corner, EXIF orientation 6 (the viewer turns
    it 90 degrees clockwise: the red corner ends up top-right of a 40 x 24 picture)."""
    arr = np.zeros((24, 40, 3), np.uint8)
    arr[:8, :8] = (255, 0, 0)
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = 6
    return _bytes(im, fmt, exif=exif.tobytes(), **({"quality": 95} if fmt == "JPEG" else {}))


def test_dataset_image_size_is_the_size_it_returns(tmp_path):
    """The header-only size (used for the crop check and the training scale in checkpoints) follows
    the decoder's EXIF policy: an unlabelled folder applies EXIF, so a phone photo stored 24 x 40
    with orientation 6 is 40 x 24 -- as the decoded image."""
    from diga.data import build_dataset

    (tmp_path / "photo.jpg").write_bytes(_exif_rotated("JPEG"))
    ds = build_dataset(f"folder:{tmp_path}")
    assert ds.exif and ds.image_size(0) == tuple(ds[0][0].shape[-2:]) == (40, 24)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_exif_orientation_applied_by_default(fmt, png_backend):
    data = _exif_rotated(fmt)
    upright = _hwc(data)
    assert upright.shape == (40, 24, 3)
    assert upright[:8, -8:, 0].mean() > 200 and upright[:8, -8:, 1].mean() < 50  # red, top-right
    assert upright[-8:, :8].mean() < 30
    stored = _hwc(data, exif=False)
    assert stored.shape == (24, 40, 3) and stored[:8, :8, 0].mean() > 200


def test_16bit_keeps_the_high_byte_and_says_so(tmp_path, png_backend):
    deep = np.full((4, 5, 3), 0x12FF, np.uint16)  # high byte 0x12 = 18; rounding v / 257 gives 19
    write_png16(tmp_path / "rgb16.png", deep)
    got = decode.decode_image_file(tmp_path / "rgb16.png")
    assert (got.hwc() == 0x12).all()
    assert "16-bit samples, reduced to 8 bits" in got.notes
    gray = decode_image(_bytes(Image.fromarray(np.full((4, 5), 0x12FF, np.uint16)), "PNG"))
    assert (gray.hwc() == 0x12).all() and any("grayscale" in n for n in gray.notes)


def test_plain_rgb_has_no_notes_and_errors_have_kinds(tmp_path):
    rgb = np.random.default_rng(2).integers(0, 256, (6, 7, 3), dtype=np.uint8)
    out = decode_image(_bytes(Image.fromarray(rgb), "PNG"))
    assert out.notes == () and out.format == "PNG" and np.array_equal(out.hwc(), rgb)
    cases = {b"": "empty", b"plain text": "not_image", _bytes(Image.fromarray(rgb), "PNG")[:40]: "corrupt"}
    for data, kind in cases.items():
        with pytest.raises(ImageDecodeError) as e:
            decode_image(data, tmp_path / "x.png")
        assert e.value.kind == kind and str(tmp_path / "x.png") in str(e.value)
    with pytest.raises(ImageDecodeError) as e:
        decode_image(_bytes(Image.fromarray(rgb), "PNG"), "x.png", max_pixels=20)
    assert e.value.kind == "too_large"


def test_each_caller_keeps_its_error_class(tmp_path):
    from diga.data import DatasetError, read_image
    from diga.demo.inputs import DemoInputError
    from diga.demo.inputs import decode_image as demo_decode
    from diga.export import PredictorError
    from diga.export.images import read_rgb

    bad = tmp_path / "broken.png"
    bad.write_bytes(_bytes(Image.fromarray(np.zeros((20, 20, 3), np.uint8)), "PNG")[:50])
    for call, error in ((read_image, DatasetError), (read_rgb, PredictorError), (demo_decode, DemoInputError)):
        with pytest.raises(error, match="corrupt or truncated"):
            call(bad)
    with pytest.raises(DemoInputError, match=r"^broken.png: the image file is corrupt"):
        demo_decode(bad)


# --------------------------------------------------------------------------------------------
# diga predict and the demo: the same labels for the same odd files


def _odd_images(folder: Path) -> list[Path]:
    rng = np.random.default_rng(3)
    h, w = 48, 64
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    alpha = np.zeros((h, w), np.uint8)
    alpha[:, w // 3:] = 128
    alpha[:, 2 * w // 3:] = 255
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(folder / "rgba_partial.png")
    Image.fromarray(_on_white(rgb, alpha)).save(folder / "rgba_flattened.png")
    write_png16(folder / "rgb16.png", rgb.astype(np.uint16) * 256 + rng.integers(0, 256, (h, w, 3)))
    Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(folder / "gray16.png")
    Image.fromarray(rgb[..., 1], "L").save(folder / "gray.png")
    Image.fromarray(np.dstack([rgb[..., 2], alpha]), "LA").save(folder / "gray_alpha.png")
    exif = Image.new("RGB", (1, 1)).getexif()
    exif[0x0112] = 6
    Image.fromarray(rgb).save(folder / "rotated.jpg", exif=exif.tobytes(), quality=90)
    pal = Image.fromarray((rgb[..., 0] // 32).astype(np.uint8), "P")
    pal.putpalette(rng.integers(0, 256, 24).tolist())
    pal.save(folder / "palette.png")
    pal.save(folder / "palette_transparent.png", transparency=3)
    Image.fromarray(rgb).convert("CMYK").save(folder / "cmyk.jpg", quality=95)
    return sorted(folder.iterdir())


def _input_sensitive_checkpoint(path: Path, seed: int) -> Path:
    """A random-weight checkpoint whose batch-norm statistics are measured on random inputs.

    With the default statistics a random network predicts one class everywhere, whatever the
    image; measured ones make its labels depend on the pixels."""
    import torch

    from diga.checkpoint import model_metadata, save_weights
    from diga.models import create

    torch.manual_seed(seed)
    model = create("deeplabv2_light", 19)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # a plain average over the batches below
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(4, 3, 48, 64))
    return save_weights(path, model.state_dict(), model_metadata("deeplabv2_light", "cityscapes19",
                                                                 input_size=(64, 128)))


def _demo_logic_class():
    try:
        from diga.demo.logic import DemoLogic
    except ImportError:  # the request logic inside the app module
        from diga.demo.app import DemoLogic
    return DemoLogic


def test_predict_cli_and_demo_give_identical_labels(tmp_path):
    from diga.export import Predictor
    from diga.export.images import read_rgb

    ckpt = _input_sensitive_checkpoint(tmp_path / "m.safetensors", seed=0)
    (tmp_path / "in").mkdir()
    files = _odd_images(tmp_path / "in")
    out = tmp_path / "pred"
    res = run_cli("predict", *files, "--model", ckpt, "--out", out, "--backend", "torch", "--device", "cpu",
                  "--batch", "1")
    assert res.exit_code == 0, res.output
    cli_labels = {f.name: np.asarray(Image.open(out / f"{f.stem}_labels.png")) for f in files}

    predictor = Predictor.load(ckpt, backend="torch", device="cpu", batch_size=1)
    logic = _demo_logic_class()(predictor, output_dir=tmp_path / "demo", max_images=len(files))
    state, status, _ = logic.segment([str(f) for f in files])
    assert state is not None and len(state["items"]) == len(files), status
    for f, item in zip(files, state["items"]):
        assert item["name"] == f.name
        np.testing.assert_array_equal(item["image"], read_rgb(f), err_msg=f"decoded pixels of {f.name}")
        np.testing.assert_array_equal(item["labels"], cli_labels[f.name], err_msg=f"labels of {f.name}")
    assert cli_labels["rotated.jpg"].shape == (64, 48)  # EXIF applied by both
    # transparency means "white" end to end: the RGBA file segments like its flattened copy
    np.testing.assert_array_equal(cli_labels["rgba_partial.png"], cli_labels["rgba_flattened.png"])
    assert "rgba_partial.png: transparency ignored (composited on white)" in status
    # the model does look at the pixels, so the comparisons above can fail
    assert len(np.unique(cli_labels["gray.png"])) > 3
    assert not np.array_equal(cli_labels["gray.png"], cli_labels["rgba_partial.png"])
