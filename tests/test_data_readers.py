"""diga.data reading helpers: odd image formats, labels, bad files, id mapping, label maps."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from diga.classes import (
    CITYSCAPES19,
    CITYSCAPES_CLASSES,
    CITYSCAPES_ID_TO_TRAINID,
    CITYSCAPES_LABEL_COLORS,
    CITYSCAPES_PALETTE,
    SYNTHIA_ID_TO_TRAINID,
    colorize,
    label_png_palette,
)
from diga.data import DatasetError, IdMapper, decode_image_rgb, read_image, read_label

try:
    from fixtures_data import write_png16
except ImportError:  # tests/ imported as a package
    from tests.fixtures_data import write_png16

# --------------------------------------------------------------------------------------------
# The official tables, written out literally.

# cityscapesScripts/helpers/labels.py: (name, id, trainId, color)
CITYSCAPES_LABELS_TABLE = [
    ("unlabeled", 0, 255, (0, 0, 0)),
    ("ego vehicle", 1, 255, (0, 0, 0)),
    ("rectification border", 2, 255, (0, 0, 0)),
    ("out of roi", 3, 255, (0, 0, 0)),
    ("static", 4, 255, (0, 0, 0)),
    ("dynamic", 5, 255, (111, 74, 0)),
    ("ground", 6, 255, (81, 0, 81)),
    ("road", 7, 0, (128, 64, 128)),
    ("sidewalk", 8, 1, (244, 35, 232)),
    ("parking", 9, 255, (250, 170, 160)),
    ("rail track", 10, 255, (230, 150, 140)),
    ("building", 11, 2, (70, 70, 70)),
    ("wall", 12, 3, (102, 102, 156)),
    ("fence", 13, 4, (190, 153, 153)),
    ("guard rail", 14, 255, (180, 165, 180)),
    ("bridge", 15, 255, (150, 100, 100)),
    ("tunnel", 16, 255, (150, 120, 90)),
    ("pole", 17, 5, (153, 153, 153)),
    ("polegroup", 18, 255, (153, 153, 153)),
    ("traffic light", 19, 6, (250, 170, 30)),
    ("traffic sign", 20, 7, (220, 220, 0)),
    ("vegetation", 21, 8, (107, 142, 35)),
    ("terrain", 22, 9, (152, 251, 152)),
    ("sky", 23, 10, (70, 130, 180)),
    ("person", 24, 11, (220, 20, 60)),
    ("rider", 25, 12, (255, 0, 0)),
    ("car", 26, 13, (0, 0, 142)),
    ("truck", 27, 14, (0, 0, 70)),
    ("bus", 28, 15, (0, 60, 100)),
    ("caravan", 29, 255, (0, 0, 90)),
    ("trailer", 30, 255, (0, 0, 110)),
    ("train", 31, 16, (0, 80, 100)),
    ("motorcycle", 32, 17, (0, 0, 230)),
    ("bicycle", 33, 18, (119, 11, 32)),
    ("license plate", -1, -1, (0, 0, 142)),
]

# SYNTHIA-RAND-CITYSCAPES README: class id -> name, and the Cityscapes class it corresponds to.
SYNTHIA_CLASSES_TABLE = [
    (0, "void", None), (1, "sky", "sky"), (2, "building", "building"), (3, "road", "road"),
    (4, "sidewalk", "sidewalk"), (5, "fence", "fence"), (6, "vegetation", "vegetation"),
    (7, "pole", "pole"), (8, "car", "car"), (9, "traffic sign", "traffic sign"),
    (10, "pedestrian", "person"), (11, "bicycle", "bicycle"), (12, "motorcycle", "motorcycle"),
    (13, "parking-slot", None), (14, "road-work", None), (15, "traffic light", "traffic light"),
    (16, "terrain", "terrain"), (17, "rider", "rider"), (18, "truck", "truck"), (19, "bus", "bus"),
    (20, "train", "train"), (21, "wall", "wall"), (22, "lanemarking", None),
]


def test_cityscapes_map_matches_official_table():
    expected = {i: t for _, i, t, _ in CITYSCAPES_LABELS_TABLE if t not in (255, -1)}
    assert CITYSCAPES_ID_TO_TRAINID == expected
    train_rows = sorted((t, name, color) for name, _, t, color in CITYSCAPES_LABELS_TABLE
                        if t not in (255, -1))
    assert tuple(name for _, name, _ in train_rows) == CITYSCAPES_CLASSES
    assert tuple(color for _, _, color in train_rows) == CITYSCAPES_PALETTE
    # every ignored id really maps to 255 through the LUT the loaders use
    mapper = IdMapper.from_mapping(CITYSCAPES_ID_TO_TRAINID, range(34))
    raw = np.array([[i for _, i, _, _ in CITYSCAPES_LABELS_TABLE if i >= 0]], dtype=np.uint8)
    got = mapper(raw)[0].tolist()
    assert got == [t for _, i, t, _ in CITYSCAPES_LABELS_TABLE if i >= 0]
    assert mapper.unknown_pixels == {}


def test_one_colour_table_gives_palette_label_pngs_and_colorize():
    assert CITYSCAPES_LABEL_COLORS == {i: c for _, i, _, c in CITYSCAPES_LABELS_TABLE if i >= 0}
    pal = label_png_palette()
    assert len(pal) == 768 and pal[3 * 26: 3 * 27] == [0, 0, 142] and pal[3 * 200: 3 * 201] == [0, 0, 0]
    labels = np.array([[0, 13, 255], [18, 19, 2]], np.uint8)
    out = colorize(labels, CITYSCAPES_PALETTE)
    assert out.tolist() == [[[128, 64, 128], [0, 0, 142], [0, 0, 0]], [[119, 11, 32], [0, 0, 0], [70, 70, 70]]]
    assert np.array_equal(CITYSCAPES19.colorize(labels), out)


def test_synthia_map_matches_official_classes():
    expected = {i: CITYSCAPES_CLASSES.index(cs) for i, _, cs in SYNTHIA_CLASSES_TABLE if cs}
    assert SYNTHIA_ID_TO_TRAINID == expected


# --------------------------------------------------------------------------------------------
# Images


@pytest.fixture
def rgb():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)


def _save(im: Image.Image, path, **kw):
    im.save(path, **kw)
    return path


def _read_quietly(path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # conversions must be warning-free
        return read_image(path)


def _hwc(t: torch.Tensor) -> np.ndarray:
    assert t.dtype == torch.uint8 and t.dim() == 3 and t.shape[0] == 3
    return t.permute(1, 2, 0).numpy()


def test_rgb_png_and_jpeg(tmp_path, rgb):
    assert np.array_equal(_hwc(_read_quietly(_save(Image.fromarray(rgb), tmp_path / "a.png"))), rgb)
    flat = np.zeros((8, 8, 3), np.uint8) + np.array([200, 30, 60], np.uint8)
    out = _hwc(_read_quietly(_save(Image.fromarray(flat), tmp_path / "a.jpg", quality=100)))
    assert np.abs(out.astype(int) - flat).max() <= 2


def test_grayscale_png_and_jpeg(tmp_path, rgb):
    gray = rgb[..., 0]
    out = _hwc(_read_quietly(_save(Image.fromarray(gray, "L"), tmp_path / "g.png")))
    assert np.array_equal(out, np.stack([gray] * 3, axis=2))
    flat = Image.fromarray(np.full((8, 8), 77, np.uint8))
    out = _hwc(_read_quietly(_save(flat, tmp_path / "g.jpg")))
    assert out.shape == (8, 8, 3) and np.abs(out.astype(int) - 77).max() <= 1


def test_16bit_images_keep_high_byte(tmp_path, rgb):
    deep = rgb.astype(np.uint16) * 257 + 3  # 16-bit, high byte = rgb
    write_png16(tmp_path / "rgb16.png", deep)
    assert np.array_equal(_hwc(_read_quietly(tmp_path / "rgb16.png")), rgb)
    opaque = np.full(rgb.shape[:2] + (1,), 65535, np.uint16)
    write_png16(tmp_path / "rgba16.png", np.concatenate([deep, opaque], axis=2))
    assert np.array_equal(_hwc(_read_quietly(tmp_path / "rgba16.png")), rgb)
    write_png16(tmp_path / "clear16.png", np.concatenate([deep, opaque * 0 + 255], axis=2))
    assert (_hwc(_read_quietly(tmp_path / "clear16.png")) == 255).all()  # alpha 255/65535 ~ 0: white
    gray = rgb[..., 0].astype(np.uint16) * 256 + 255
    _save(Image.fromarray(gray), tmp_path / "gray16.png")  # Pillow writes "I;16"
    assert np.array_equal(_hwc(_read_quietly(tmp_path / "gray16.png")),
                          np.stack([rgb[..., 0]] * 3, axis=2))


def test_rgba_la_palette_and_bilevel(tmp_path, rgb):
    alpha = np.full(rgb.shape[:2], 10, np.uint8)
    rgba = Image.fromarray(np.concatenate([rgb, alpha[..., None]], axis=2), "RGBA")
    on_white = np.round((rgb.astype(float) * 10 + 255 * 245) / 255).astype(np.uint8)
    assert np.array_equal(_hwc(_read_quietly(_save(rgba, tmp_path / "rgba.png"))), on_white)
    la = Image.fromarray(rgb[..., 0], "L").convert("LA")
    assert np.array_equal(_hwc(_read_quietly(_save(la, tmp_path / "la.png")))[..., 1], rgb[..., 0])
    idx = (rgb[..., 0] % 4).astype(np.uint8)
    palette = [10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120]
    for name, kw in (("p8.png", {"bits": 8}), ("p2.png", {})):
        p = Image.fromarray(idx, "P")
        p.putpalette(palette)
        out = _hwc(_read_quietly(_save(p, tmp_path / name, **kw)))
        assert np.array_equal(out, np.asarray(palette, np.uint8).reshape(4, 3)[idx]), name
    p = Image.fromarray(idx, "P")
    p.putpalette(palette)
    _save(p, tmp_path / "ptrns.png", transparency=0)
    out = _hwc(_read_quietly(tmp_path / "ptrns.png"))
    assert (out[idx == 0] == 255).all()  # the transparent index is white
    assert np.array_equal(out[idx != 0], np.asarray(palette, np.uint8).reshape(4, 3)[idx[idx != 0]])
    bw = Image.fromarray(rgb[..., 0] > 127)
    out = _hwc(_read_quietly(_save(bw, tmp_path / "bw.png")))
    assert set(np.unique(out)) <= {0, 255}


def test_cmyk_jpeg(tmp_path):
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[:4], rgb[4:] = (200, 30, 60), (20, 180, 90)
    _save(Image.fromarray(rgb).convert("CMYK"), tmp_path / "cmyk.jpg", quality=100)
    with Image.open(tmp_path / "cmyk.jpg") as im:
        assert im.mode == "CMYK"
    assert np.abs(_hwc(_read_quietly(tmp_path / "cmyk.jpg")).astype(int) - rgb).max() <= 3


def test_other_formats_under_png_name_fall_back_to_pillow(tmp_path, rgb):
    _save(Image.fromarray(rgb), tmp_path / "bmp.png", format="BMP")
    assert np.array_equal(_hwc(_read_quietly(tmp_path / "bmp.png")), rgb)
    _save(Image.fromarray(rgb).convert("CMYK"), tmp_path / "cmyk.png", format="TIFF")
    assert _read_quietly(tmp_path / "cmyk.png").shape == (3, 5, 7)


def test_exif_orientation_only_on_request(tmp_path):
    img = Image.fromarray(np.zeros((4, 6, 3), np.uint8))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise
    img.save(tmp_path / "rot.jpg", exif=exif.tobytes())
    assert read_image(tmp_path / "rot.jpg").shape == (3, 4, 6)
    assert read_image(tmp_path / "rot.jpg", exif=True).shape == (3, 6, 4)


def _valid_png(tmp_path) -> bytes:
    rng = np.random.default_rng(1)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _valid_jpeg() -> bytes:
    rng = np.random.default_rng(1)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


@pytest.mark.parametrize("case", ["zero", "truncated_png", "truncated_jpeg", "garbage",
                                  "corrupt_png", "missing"])
def test_bad_image_files_raise_dataset_error(tmp_path, case):
    path = tmp_path / f"bad {case} é.png"
    png = _valid_png(tmp_path)
    if case == "zero":
        path.write_bytes(b"")
        expect = "empty (0 bytes)"
    elif case == "truncated_png":
        path.write_bytes(png[: len(png) // 2])
        expect = "corrupt or truncated PNG"
    elif case == "truncated_jpeg":
        path = path.with_suffix(".jpg")
        jpg = _valid_jpeg()
        path.write_bytes(jpg[: len(jpg) // 2])
        expect = "corrupt or truncated JPEG"
    elif case == "garbage":
        path.write_bytes(b"this is not an image at all")
        expect = "not an image"
    elif case == "corrupt_png":
        data = bytearray(png)
        data[60:80] = b"\x00" * 20  # inside IDAT: bad CRC / zlib stream
        path.write_bytes(bytes(data))
        expect = "corrupt or truncated PNG"
    else:
        expect = "does not exist"
    with pytest.raises(DatasetError) as err:
        read_image(path)
    assert str(path) in str(err.value) and expect in str(err.value)
    with pytest.raises(DatasetError) as err:  # labels go through the same checks
        read_label(path)
    assert str(path) in str(err.value)


def test_decode_bytes_directly(rgb):
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    assert np.array_equal(_hwc(decode_image_rgb(buf.getvalue())), rgb)


# --------------------------------------------------------------------------------------------
# Labels


def test_palette_label_gives_indices_not_colours(tmp_path):
    ids = np.array([[7, 26, 9], [33, 0, 255]], np.uint8)
    p = Image.fromarray(ids, "P")
    p.putpalette([(i * 37) % 256 for i in range(768)])
    p.save(tmp_path / "l.png")
    out = read_label(tmp_path / "l.png")
    assert out.dtype == np.uint8 and np.array_equal(out, ids)


def test_low_bit_depth_palette_label(tmp_path):
    # Pillow stores palettes of <= 16 colours with 4 bits per pixel; torchvision's decode_png
    # returns garbage for those in UNCHANGED mode, so the reader must not use it there.
    ids = np.array([[0, 1, 2, 3], [15, 7, 8, 9]], np.uint8)
    p = Image.fromarray(ids, "P")
    p.putpalette([v for i in range(16) for v in (i * 10, i * 5, i)])
    p.save(tmp_path / "l4.png")
    assert (tmp_path / "l4.png").read_bytes()[24] == 4  # really a 4-bit PNG
    assert np.array_equal(read_label(tmp_path / "l4.png"), ids)


def test_16bit_rgb_label_channel(tmp_path):
    gt = np.zeros((2, 3, 3), np.uint16)
    gt[..., 0] = [[8, 1, 3], [22, 300, 0]]
    gt[..., 1] = [[1000, 2000, 3], [4, 5, 6]]
    write_png16(tmp_path / "0000000.png", gt)
    out = read_label(tmp_path / "0000000.png", channel=0)
    assert out.dtype == np.uint16 and out.tolist() == [[8, 1, 3], [22, 300, 0]]
    # Pillow would read the high bytes only (all zeros here): the reason for torchvision
    with Image.open(tmp_path / "0000000.png") as im:
        assert np.asarray(im)[..., 0].max() <= 1


def test_colour_label_rejected_gray_alpha_accepted(tmp_path):
    Image.fromarray(np.array([[[1, 2, 3]]], np.uint8)).save(tmp_path / "c.png")
    with pytest.raises(DatasetError, match="colour image"):
        read_label(tmp_path / "c.png")
    Image.fromarray(np.array([[[4, 4, 4]]], np.uint8)).save(tmp_path / "same.png")
    assert read_label(tmp_path / "same.png").tolist() == [[4]]
    Image.fromarray(np.array([[5, 6]], np.uint8), "L").convert("LA").save(tmp_path / "la.png")
    assert read_label(tmp_path / "la.png").tolist() == [[5, 6]]


# --------------------------------------------------------------------------------------------
# Id mapping


def test_id_mapper_counts_unknown_ids_only():
    mapper = IdMapper.from_mapping(CITYSCAPES_ID_TO_TRAINID, range(34), source="Cityscapes")
    raw = np.array([[26, 9, 40], [40, 200, 7]], np.uint8)
    out = mapper(raw, "x.png")
    assert out.dtype == torch.uint8
    assert out.tolist() == [[13, 255, 255], [255, 255, 0]]
    assert dict(mapper.unknown_pixels) == {40: 2, 200: 1}  # 9 (parking) is known, ignored
    assert mapper.files_with_unknown == 1 and mapper.unknown_examples[40] == "x.png"
    mapper(np.array([[7, 8]], np.uint8))
    assert mapper.files_with_unknown == 1
    assert "40: 2 px" in mapper.summary()
    mapper.reset()
    assert mapper.unknown_pixels == {} and "no unknown" in mapper.summary()


def test_id_mapper_wide_dtypes():
    mapper = IdMapper.from_mapping(SYNTHIA_ID_TO_TRAINID, range(23))
    out = mapper(np.array([[8, 300, 22]], np.uint16))
    assert out.tolist() == [[13, 255, 255]] and dict(mapper.unknown_pixels) == {300: 1}
    out = mapper(np.array([[8, -1, 70000]], np.int32))
    assert out.tolist() == [[13, 255, 255]]
    assert dict(mapper.unknown_pixels) == {300: 1, -1: 1, 70000: 1}


def test_identity_mapper_with_non_contiguous_known_ids():
    mapper = IdMapper.identity(3)
    out = mapper(np.array([[0, 1, 2, 3, 255]], np.uint8))
    assert out.tolist() == [[0, 1, 2, 255, 255]]
    assert dict(mapper.unknown_pixels) == {3: 1}


def test_png_checked_before_torchvision(tmp_path):
    """torchvision 0.29 segfaults on libpng errors inside the pixel data, so CRC mismatches and
    truncation at a chunk boundary must be caught before it sees the file."""
    png = _valid_png(tmp_path)
    flipped = bytearray(png)
    flipped[50] ^= 0x40  # one bit in the IDAT payload
    (tmp_path / "flip.png").write_bytes(bytes(flipped))
    with pytest.raises(DatasetError, match="CRC mismatch in 'IDAT'"):
        read_image(tmp_path / "flip.png")
    with pytest.raises(DatasetError, match="CRC mismatch"):
        read_label(tmp_path / "flip.png")
    iend = png.rindex(b"IEND") - 4
    (tmp_path / "noend.png").write_bytes(png[:iend])  # whole chunks, but no IEND
    with pytest.raises(DatasetError, match="no IEND chunk"):
        read_image(tmp_path / "noend.png")


def test_pillow_png_decoder_gives_the_same(tmp_path, rgb, monkeypatch):
    from diga.data import decode

    files = {"rgb.png": Image.fromarray(rgb), "gray.png": Image.fromarray(rgb[..., 0], "L"),
             "rgba.png": Image.fromarray(np.dstack([rgb, rgb[..., :1]]), "RGBA"),
             "la.png": Image.fromarray(np.dstack([rgb[..., 1], rgb[..., 2]]), "LA")}
    for name, im in files.items():
        im.save(tmp_path / name)
    write_png16(tmp_path / "deep.png", rgb.astype(np.uint16) * 257)
    write_png16(tmp_path / "deep_rgba.png", np.dstack([rgb, rgb[..., :1]]).astype(np.uint16) * 257)
    names = [*files, "deep.png", "deep_rgba.png"]
    fast = [read_image(tmp_path / n) for n in names]
    labels = [read_label(tmp_path / "gray.png"), read_label(tmp_path / "deep.png", channel=0)]
    monkeypatch.setattr(decode, "PNG_DECODER", "pillow")
    for name, ref in zip(names, fast):
        assert torch.equal(read_image(tmp_path / name), ref), name
    assert np.array_equal(read_label(tmp_path / "gray.png"), labels[0])
    assert np.array_equal(read_label(tmp_path / "deep.png", channel=0), labels[1])
