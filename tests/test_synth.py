"""The procedural two-domain benchmark: determinism, label values, class coverage, the style
gap, the GTA5/Cityscapes file layouts and the cache."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diga.classes import CITYSCAPES_ID_TO_TRAINID, CITYSCAPES_PALETTE, IGNORE_INDEX
from diga.data.synth import (
    FORMAT_VERSION,
    SOURCE_STYLE,
    TARGET_STYLE,
    StyleConfig,
    generate_benchmark,
    render_scene,
    target_style,
    trainid_to_labelid,
)
from diga.data.synth.people import parked_bicycle, person, rider
from diga.data.synth.scene import Scene
from diga.data.synth.street_furniture import lamp, sign_post, traffic_light

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


CLASS_NAMES = ("road", "sidewalk", "building", "wall", "fence", "pole", "light", "sign",
               "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
               "motorcycle", "bicycle")
TRAIN = 16


@pytest.mark.parametrize("style", [SOURCE_STYLE, TARGET_STYLE], ids=["source", "target"])
def test_class_coverage(style):
    n = 40
    present = np.zeros(19)
    big = np.zeros(19)  # images where the class covers at least 2% of the pixels
    for k in range(n):
        _, lab = _render([3, k], style, (128, 256))
        share = np.bincount(lab.ravel(), minlength=256)[:19] / lab.size
        present += share > 0
        big += share >= 0.02
    table = dict(zip(CLASS_NAMES, present / n))
    # every class but the (rare) tram is in at least 30% of the images
    for c in range(19):
        if c != TRAIN:
            assert present[c] >= 0.3 * n, (CLASS_NAMES[c], table)
    for c in (0, 1, 2, 5, 8, 10, 11, 13):  # road .. building, pole, vegetation, sky, person, car
        assert present[c] >= 0.85 * n, (CLASS_NAMES[c], table)
    for c in (3, 4):  # walls and fences: near, long segments
        assert present[c] >= 0.8 * n and big[c] >= 0.5 * n, (CLASS_NAMES[c], present[c], big[c])
    for c in (14, 15):  # trucks and buses in most images
        assert present[c] >= 0.5 * n, (CLASS_NAMES[c], table)


# -- minimum on-screen sizes of the small classes ------------------------------------------------

def _draw_one(fn, size, style, seed, *args):
    """Labels of one object drawn alone (everything else: 255)."""
    sc = Scene(np.random.default_rng(seed), size, style)
    fn(sc, *args)
    inst = np.asarray(sc.im)
    return np.where(inst > 0, np.asarray(sc.cls, np.uint8)[inst], IGNORE_INDEX)


def _bbox(mask):
    ys, xs = np.nonzero(mask)
    assert len(ys), "nothing drawn"
    return ys.max() - ys.min() + 1, xs.max() - xs.min() + 1


def _pole_width(mask):
    """Median width of the lower half of a pole (above it: arms, signs and lights)."""
    w = mask.sum(1)
    w = w[w > 0]
    assert len(w), "no pole"
    return np.median(w[len(w) // 2:])


@pytest.mark.parametrize("size", [(128, 256), (256, 512)], ids=["128x256", "256x512"])
@pytest.mark.parametrize("style", [SOURCE_STYLE, TARGET_STYLE], ids=["source", "target"])
def test_small_objects_have_a_minimum_footprint(style, size):
    """Poles, lights, signs, pedestrians and two-wheelers never shrink below a learnable size
    (the minimum scales with the image: 3 px poles at 256 px width, 6 px at 512)."""
    k = size[1] / 256
    for z in (20.0, 35.0, 50.0):
        for seed in range(6):
            lab = _draw_one(lamp, size, style, seed, 4.0, z, 1)
            assert _pole_width(lab == 5) >= 3 * k, ("lamp pole", z, seed)
            lab = _draw_one(sign_post, size, style, seed, 4.0, z)
            assert _pole_width(lab == 5) >= 3 * k, ("sign pole", z, seed)
            h, w = _bbox(lab == 7)
            assert h >= 6 * k and w >= 6 * k, ("sign", z, seed, h, w)
            lab = _draw_one(traffic_light, size, style, seed, 4.0, z, 1)
            assert _pole_width(lab == 5) >= 3 * k, ("light pole", z, seed)
            h, w = _bbox(lab == 6)
            assert h >= 6 * k and w >= 6 * k, ("traffic light", z, seed, h, w)
            view = ("front", "back", "side")[seed % 3]
            h, w = _bbox(_draw_one(person, size, style, seed, 3.0, z, view) == 11)
            assert h >= 10 * k and w >= 4 * k, ("person", view, z, seed, h, w)
            view = ("side", "oblique", "back")[seed % 3]
            motor = seed % 2 == 0
            lab = _draw_one(rider, size, style, seed, 2.0, z, view, motor)
            h, w = _bbox(lab == 12)
            assert h >= 10 * k and w >= 4 * k, ("rider", view, z, seed, h, w)
            h, w = _bbox(lab == (17 if motor else 18))
            assert h >= 6 * k and w >= 6 * k, ("two-wheeler", view, z, seed, h, w)
        for seed in range(4):
            lab = _draw_one(parked_bicycle, size, style, seed, 4.0, z)
            h, w = _bbox(lab == 18)
            assert h >= 6 * k and w >= 6 * k, ("bicycle", z, seed, h, w)


def test_scene_poles_are_thick_and_lights_signs_are_blobs():
    """In whole scenes at 128x256: pole pixels lie in horizontal runs of >= 3 px, and traffic
    lights and signs form blobs of at least 6x6 px (occlusion aside)."""
    runs, blobs = [], {6: [], 7: []}
    for style in (SOURCE_STYLE, TARGET_STYLE):
        for k in range(12):
            _, lab = _render([4, k], style, (128, 256))
            d = np.diff(np.pad((lab == 5).astype(np.int8), ((0, 0), (1, 1))), axis=1)
            runs.append(np.nonzero(d == -1)[1] - np.nonzero(d == 1)[1])
            for c in blobs:
                blobs[c].extend(_components(lab == c))
    r = np.concatenate(runs)
    assert r[r >= 3].sum() >= 0.9 * r.sum()
    for c, comps in blobs.items():
        a = np.asarray(comps)
        assert len(a) >= 10, c
        big = a[(a[:, 1] >= 6) & (a[:, 2] >= 6), 0].sum()
        assert big >= 0.85 * a[:, 0].sum(), (c, a.tolist())


def _components(mask):
    """(area, height, width) of the 8-connected components of a boolean mask."""
    H, W = mask.shape
    lab = np.where(mask, np.arange(1, mask.size + 1).reshape(H, W), 0)
    while True:  # propagate the largest label through each component
        p = np.pad(lab, 1)
        nb = np.max([p[1 + dy:1 + dy + H, 1 + dx:1 + dx + W]
                     for dy in (-1, 0, 1) for dx in (-1, 0, 1)], axis=0)
        nb = np.where(mask, nb, 0)
        if np.array_equal(nb, lab):
            break
        lab = nb
    out = []
    for i in np.unique(lab[mask]):
        ys, xs = np.nonzero(lab == i)
        out.append((len(ys), ys.max() - ys.min() + 1, xs.max() - xs.min() + 1))
    return out


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

    # a benchmark written by another version of the generator is regenerated
    meta = json.loads(meta_path.read_text())
    assert meta["format_version"] == FORMAT_VERSION
    meta["format_version"] = FORMAT_VERSION - 1
    meta_path.write_text(json.dumps(meta))
    before = _listing(root)
    generate_benchmark(root, **kw)
    after = _listing(root)
    assert set(after) == set(before) and all(after[k] != before[k] for k in after)
    assert json.loads(meta_path.read_text())["format_version"] == FORMAT_VERSION

    # other parameters: regenerated, stale files of the bigger run removed
    generate_benchmark(root, **{**kw, "n_train": 2})
    assert set(_listing(root)) == _expected_files(2, 1)
    assert json.loads(meta_path.read_text())["n_train"] == 2


def _generate_after(ready, out, kw):
    ready.set()
    generate_benchmark(out, **kw)


def test_a_second_generation_waits_for_the_first_and_keeps_its_files(tmp_path):
    """Two runs started at once on a fresh cache each removed the other's files as they wrote theirs:
    one failed on its vanished temporary file, the other marked a benchmark with missing images
    complete. A generation now waits for the one writing, then finds its benchmark and rewrites nothing."""
    import multiprocessing
    import shutil
    import time

    from filelock import FileLock

    from diga.data.synth.writer import lock_path

    kw = dict(n_train=3, n_val=1, size=SMALL, seed=5, progress=False)
    written = generate_benchmark(tmp_path / "written", **kw)
    out = tmp_path / "bench"
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    with FileLock(lock_path(out)):  # this process is "the first run", writing out
        second = context.Process(target=_generate_after, args=(ready, out, kw))
        second.start()
        assert ready.wait(120)
        time.sleep(2)
        assert second.is_alive() and not _listing(out)  # waiting, nothing written
        shutil.copytree(written, out, dirs_exist_ok=True)
    second.join(120)
    assert second.exitcode == 0
    assert _listing(out) == {name: (out / name).stat().st_mtime_ns for name in _listing(written)}
    assert all((out / n).read_bytes() == (written / n).read_bytes() for n in _listing(written))


def test_generate_with_progress_bar(tmp_path):
    out = generate_benchmark(tmp_path / "p", n_train=1, n_val=1, size=(32, 64), seed=0,
                             progress=True)
    assert json.loads((out / "benchmark.json").read_text())["complete"] is True


def test_generate_with_gap_strength(tmp_path):
    out = generate_benchmark(tmp_path / "g", n_train=1, n_val=0, size=(32, 64), seed=1,
                             progress=False, gap=0.5)
    meta = json.loads((out / "benchmark.json").read_text())
    assert meta["target_style"]["gap"] == 0.5
    stem = "synthcity_000000_000000"
    im = Image.open(out / "target/leftImg8bit/train/synthcity" / f"{stem}_leftImg8bit.png")
    img, _ = render_scene(np.random.default_rng([1, 1, 0, 0]), (32, 64), target_style(0.5))
    assert np.array_equal(np.asarray(im), img)
    with pytest.raises(ValueError):
        generate_benchmark(tmp_path / "h", n_train=1, n_val=0, size=(32, 64), progress=False,
                           gap=0.5, target_style=TARGET_STYLE)


# The sha256 over the sorted relative paths and contents of the files written by
# ``generate_benchmark(out, n_train=6, n_val=3, size=(64, 128), seed=0)``: any change to a random
# draw, a drawing routine, the compositing or the PNG encoding shows up here. Only a deliberate
# change of the generated data (with a FORMAT_VERSION bump) may update it.
PINNED_SHA256 = "57d9f1056bfcdc8806d3f9438a3fd579f3393a19d0c7e871ba3ed1a30a9f47d2"


def _tree_sha256(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(p.relative_to(root).as_posix().encode() + b"\0")
        h.update(p.read_bytes())
    return h.hexdigest()


def test_generated_files_match_the_pinned_checksum(tmp_path):
    out = generate_benchmark(tmp_path / "pin", n_train=6, n_val=3, size=(64, 128), seed=0,
                             progress=False)
    assert not list(out.rglob(".*.tmp"))  # no temporary file left behind
    assert _tree_sha256(out) == PINNED_SHA256


def test_interrupted_generation_leaves_no_partial_file_and_is_redone(tmp_path, monkeypatch):
    """A write that dies half way (here: the fifth PNG) leaves neither a truncated file under its
    real name nor a temporary file; the next call regenerates the same bytes."""
    real_save = Image.Image.save
    saves = []

    def dying_save(self, fp, *args, **kwargs):
        saves.append(fp)
        if len(saves) == 5:
            Path(fp).write_bytes(b"\x89PNG truncated")
            raise KeyboardInterrupt
        return real_save(self, fp, *args, **kwargs)

    out = tmp_path / "pin"
    kw = dict(n_train=6, n_val=3, size=(64, 128), seed=0, progress=False)
    with monkeypatch.context() as m:
        m.setattr(Image.Image, "save", dying_save)
        with pytest.raises(KeyboardInterrupt):
            generate_benchmark(out, **kw)
    assert Path(saves[4]).parent == out / "source" / "images"  # the third pair's image
    assert not (out / "source" / "images" / "00002.png").exists()
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    assert len(list(out.rglob("*.png"))) == 4  # the two pairs before it, whole
    assert json.loads((out / "benchmark.json").read_text())["complete"] is False
    generate_benchmark(out, **kw)
    assert _tree_sha256(out) == PINNED_SHA256


@pytest.mark.parametrize("progress", [True, False])
def test_generate_uses_the_project_progress_bar(tmp_path, monkeypatch, progress):
    from diga.data.synth import writer
    from diga.progress import progress_bar

    seen = []

    def recording_bar(*args, **kwargs):
        seen.append(kwargs)
        return progress_bar(*args, **kwargs)

    monkeypatch.setattr(writer, "progress_bar", recording_bar)
    generate_benchmark(tmp_path / "p", n_train=1, n_val=1, size=(32, 64), progress=progress)
    assert seen == [{"enabled": progress, "transient": True}]


def test_package_keeps_its_public_names():
    import diga.data.synth as synth

    for name in synth.__all__:
        assert hasattr(synth, name), name
    assert synth.TRAINID_TO_LABELID[0] == 7 and synth.TRAINID_TO_LABELID[IGNORE_INDEX] == 0
