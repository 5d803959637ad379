"""The procedural two-domain benchmark: determinism, label values, class coverage, the style
gap, the GTA5/Cityscapes file layouts and the cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diga.classes import CITYSCAPES_ID_TO_TRAINID, CITYSCAPES_PALETTE, IGNORE_INDEX
from diga.data.synth import (
    SOURCE_STYLE, TARGET_STYLE, StyleConfig, generate_benchmark, render_scene, target_style,
    trainid_to_labelid,
)

SMALL = (64, 128)
VALID = set(range(19)) | {IGNORE_INDEX}


def _render(seed, style, size=SMALL):
    return render_scene(np.random.default_rng(seed), size, style)


@pytest.mark.parametrize("style", [SOURCE_STYLE, TARGET_STYLE], ids=["source", "target"])
def test_render_shapes_and_determinism(style):
    img, lab = _render([7, 1], style)
    assert img.shape == (*SMALL, 3) and img.dtype == np.uint8
    assert lab.shape == SMALL and lab.dtype == np.uint8
    img2, lab2 = _render([7, 1], style)
    assert np.array_equal(img, img2) and np.array_equal(lab, lab2)
    img3, lab3 = _render([7, 2], style)
    assert not np.array_equal(img, img3)
    assert not np.array_equal(lab, lab3)


def test_label_values_valid():
    for k in range(6):
        _, src = _render([k], SOURCE_STYLE)
        _, tgt = _render([k], TARGET_STYLE)
        assert set(np.unique(src).tolist()) <= VALID
        assert set(np.unique(tgt).tolist()) <= VALID
        assert IGNORE_INDEX not in src  # no hood in the game style
        assert (tgt[-1] == IGNORE_INDEX).all()  # the ego-vehicle hood of the camera style


@pytest.mark.parametrize("style", [SOURCE_STYLE, TARGET_STYLE], ids=["source", "target"])
def test_class_coverage(style):
    n = 40
    present = np.zeros(19)
    for k in range(n):
        _, lab = _render([3, k], style, (128, 256))
        present += np.bincount(lab.ravel(), minlength=256)[:19] > 0
    regular = (present / n >= 0.2).sum()
    assert regular >= 12, present
    for c in (0, 1, 2, 5, 8, 10, 13):  # road, sidewalk, building, pole, vegetation, sky, car
        assert present[c] >= 0.8 * n, (c, present)


def _class_means(style, n=12, size=(96, 192)):
    sums = np.zeros((19, 3))
    counts = np.zeros(19)
    for k in range(n):
        img, lab = _render([5, k], style, size)
        flat = lab.ravel()
        keep = flat < 19
        np.add.at(sums, flat[keep], img.reshape(-1, 3)[keep].astype(np.float64))
        counts += np.bincount(flat[keep], minlength=19)
    return sums / np.maximum(counts, 1)[:, None], counts


def test_styles_shift_colours_but_keep_classes_apart():
    src, cs = _class_means(SOURCE_STYLE)
    tgt, ct = _class_means(TARGET_STYLE)
    stuff = [0, 1, 2, 8, 9, 10]  # road, sidewalk, building, vegetation, terrain, sky
    assert (cs[stuff] > 0).all() and (ct[stuff] > 0).all()
    # the same class looks different in the two styles
    for c in stuff:
        assert np.abs(src[c] - tgt[c]).max() > 12, (c, src[c], tgt[c])
    # inside each style the stuff classes keep distinct mean colours
    for means in (src, tgt):
        for i, a in enumerate(stuff):
            for b in stuff[i + 1:]:
                assert np.abs(means[a] - means[b]).max() > 8, (a, b, means[a], means[b])
    # the camera style is less saturated overall
    def saturation(style):
        img, _ = _render([9], style, (96, 192))
        f = img.astype(np.float64)
        return (f.max(-1) - f.min(-1)).mean()
    assert saturation(TARGET_STYLE) < saturation(SOURCE_STYLE)


def test_same_rng_same_layout_other_camera():
    # geometry differs between the styles (horizon, field of view): label maps differ too
    _, a = _render([11], SOURCE_STYLE)
    _, b = _render([11], TARGET_STYLE)
    assert not np.array_equal(a, b)


def test_target_style_gap():
    assert target_style(0.0) == SOURCE_STYLE
    assert target_style(1.0) == TARGET_STYLE
    half = target_style(0.5)
    assert isinstance(half, StyleConfig) and half.gap == 0.5
    assert min(SOURCE_STYLE.horizon, TARGET_STYLE.horizon) < half.horizon < max(
        SOURCE_STYLE.horizon, TARGET_STYLE.horizon)
    assert 0 < half.haze < TARGET_STYLE.haze
    strong = target_style(3.0)
    assert 0.0 <= strong.haze <= 1.0 and strong.saturation >= 0.0 and strong.palette_mix == 1.0
    _render([0], half)  # renders


def _listing(root: Path) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): p.stat().st_mtime_ns
            for p in root.rglob("*") if p.is_file()}


def _expected_files(n_train, n_val):
    names = {"benchmark.json"}
    for sub, n in (("source", n_train), ("source_val", n_val)):
        for k in range(n):
            names |= {f"{sub}/images/{k:05d}.png", f"{sub}/labels/{k:05d}.png"}
    for split, n in (("train", n_train), ("val", n_val)):
        for k in range(n):
            stem = f"synthcity_000000_{k:06d}"
            names |= {f"target/leftImg8bit/{split}/synthcity/{stem}_leftImg8bit.png",
                      f"target/gtFine/{split}/synthcity/{stem}_gtFine_labelIds.png"}
    return names


def test_generate_layout_and_encodings(tmp_path):
    out = generate_benchmark(tmp_path / "b", n_train=3, n_val=2, size=SMALL, seed=4,
                             progress=False)
    assert out == tmp_path / "b"
    assert set(_listing(out)) == _expected_files(3, 2)
    meta = json.loads((out / "benchmark.json").read_text())
    assert meta["complete"] is True and meta["seed"] == 4 and meta["size"] == list(SMALL)
    assert meta["n_train"] == 3 and meta["n_val"] == 2 and "format_version" in meta
    assert meta["source_style"]["name"] == "source" and meta["target_style"]["name"] == "target"

    to_train = np.full(256, IGNORE_INDEX, np.uint8)
    for lid, tid in CITYSCAPES_ID_TO_TRAINID.items():
        to_train[lid] = tid
    valid_ids = {0} | set(CITYSCAPES_ID_TO_TRAINID)

    # source: GTA5 layout, palette labels of labelIds
    for sub, split_i in (("source", 0), ("source_val", 1)):
        im = Image.open(out / sub / "images" / "00001.png")
        assert im.mode == "RGB" and im.size == (SMALL[1], SMALL[0])
        lbl = Image.open(out / sub / "labels" / "00001.png")
        assert lbl.mode == "P"
        ids = np.asarray(lbl)
        assert set(np.unique(ids).tolist()) <= valid_ids
        img, lab = render_scene(np.random.default_rng([4, 0, split_i, 1]), SMALL, SOURCE_STYLE)
        assert np.array_equal(np.asarray(im), img)
        assert np.array_equal(to_train[ids], lab)
        pal = lbl.getpalette()
        assert tuple(pal[3 * 7: 3 * 7 + 3]) == CITYSCAPES_PALETTE[0]  # road
        assert tuple(pal[3 * 26: 3 * 26 + 3]) == CITYSCAPES_PALETTE[13]  # car

    # target: Cityscapes layout, 8-bit grayscale labelIds, hood (ignore) -> 0
    for split, split_i in (("train", 0), ("val", 1)):
        stem = "synthcity_000000_000001"
        im = Image.open(out / "target" / "leftImg8bit" / split / "synthcity" / f"{stem}_leftImg8bit.png")
        lbl = Image.open(out / "target" / "gtFine" / split / "synthcity" / f"{stem}_gtFine_labelIds.png")
        assert im.mode == "RGB" and lbl.mode == "L"
        ids = np.asarray(lbl)
        img, lab = render_scene(np.random.default_rng([4, 1, split_i, 1]), SMALL, TARGET_STYLE)
        assert np.array_equal(np.asarray(im), img)
        assert np.array_equal(ids, trainid_to_labelid(lab))
        assert np.array_equal(to_train[ids], lab)
        assert (ids[-1] == 0).all()
        assert set(np.unique(ids).tolist()) <= valid_ids
        assert 7 in ids  # road is labelled with its labelId


def test_generate_is_byte_deterministic(tmp_path):
    a = generate_benchmark(tmp_path / "a", n_train=2, n_val=1, size=SMALL, seed=2, progress=False)
    b = generate_benchmark(tmp_path / "b", n_train=2, n_val=1, size=SMALL, seed=2, progress=False)
    c = generate_benchmark(tmp_path / "c", n_train=2, n_val=1, size=SMALL, seed=3, progress=False)
    files = sorted(_listing(a))
    assert files == sorted(_listing(b))
    for name in files:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / "source/images/00000.png").read_bytes() != (c / "source/images/00000.png").read_bytes()
    # source and target are independent draws, not one scene in two styles
    src = np.asarray(Image.open(a / "source/labels/00000.png"))
    tgt = np.asarray(Image.open(
        a / "target/gtFine/train/synthcity/synthcity_000000_000000_gtFine_labelIds.png"))
    assert not np.array_equal(src, tgt)


def test_cache_and_regeneration(tmp_path):
    root = tmp_path / "bench"
    kw = dict(n_train=3, n_val=1, size=SMALL, seed=0, progress=False)
    generate_benchmark(root, **kw)
    before = _listing(root)
    generate_benchmark(root, **kw)
    assert _listing(root) == before  # cached: nothing rewritten

    # an interrupted generation (complete flag missing) is regenerated
    meta_path = root / "benchmark.json"
    meta = json.loads(meta_path.read_text())
    meta.pop("complete")
    meta_path.write_text(json.dumps(meta))
    victim = root / "source" / "images" / "00002.png"
    victim.unlink()
    generate_benchmark(root, **kw)
    assert victim.is_file()
    assert json.loads(meta_path.read_text())["complete"] is True
    assert set(_listing(root)) == _expected_files(3, 1)

    # other parameters: regenerated, stale files of the bigger run removed
    generate_benchmark(root, **{**kw, "n_train": 2})
    assert set(_listing(root)) == _expected_files(2, 1)
    assert json.loads(meta_path.read_text())["n_train"] == 2


def test_generate_with_progress_bar(tmp_path):
    out = generate_benchmark(tmp_path / "p", n_train=1, n_val=1, size=(32, 64), seed=0,
                             progress=True)
    assert json.loads((out / "benchmark.json").read_text())["complete"] is True
