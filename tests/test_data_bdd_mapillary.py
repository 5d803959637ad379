"""BDD100K and Mapillary Vistas in their official layouts: labels mapped to the Cityscapes trainIds
(ignore included), splits, versions, and wrong layouts refused with the path and the layout expected."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diga.data import DatasetError, build_dataset, parse_spec, parse_spec_options
from diga.data.mapillary import MAPILLARY_V12, MAPILLARY_V20, NUM_IDS, mapillary_to_train_ids
from tests.fixtures_data import rgb_for

H, W = 8, 16


def ids_image(values: list[int]) -> np.ndarray:
    """An 8x16 id map holding ``values`` in equal vertical bands (left to right)."""
    band = W // len(values)
    out = np.zeros((H, W), dtype=np.uint8)
    for i, value in enumerate(values):
        out[:, i * band:(i + 1) * band] = value
    return out


def write_jpg(path: Path, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb_for(np.zeros((H, W), np.uint8), seed)).save(path, quality=95)


def write_ids(path: Path, ids: np.ndarray, palette: bool = False) -> None:
    """A label PNG of ids: grayscale (BDD100K masks) or palette (Mapillary Vistas)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(ids, "P" if palette else "L")
    if palette:
        im.putpalette([(i * 37) % 256 for i in range(768)])
    im.save(path)


def expected(train_ids: list[int]) -> list[list[int]]:
    return ids_image(train_ids).astype(np.int64).tolist()


# --- BDD100K ---------------------------------------------------------------------------------

BDD_RAW = [0, 10, 18, 255]  # road, sky, bicycle, ignore


def make_bdd(root: Path, names=("a1-00000000", "b2-00000001"), splits=("train", "val")) -> Path:
    """The current release: images/10k/SPLIT/*.jpg + labels/sem_seg/masks/SPLIT/*.png."""
    for split in splits:
        for i, name in enumerate(names):
            write_jpg(root / "images/10k" / split / f"{name}.jpg", i)
            write_ids(root / "labels/sem_seg/masks" / split / f"{name}.png", ids_image(BDD_RAW))
    write_jpg(root / "images/10k/test/c3-00000002.jpg")
    return root


def test_bdd100k_masks_are_cityscapes_train_ids(tmp_path):
    root = make_bdd(tmp_path / "bdd100k")
    ds = build_dataset(f"bdd100k:{root}", split="val")
    assert len(ds) == 2 and ds.has_labels
    image, label = ds[0]
    assert image.shape == (3, H, W) and label.tolist() == expected(BDD_RAW)
    assert ds.samples[0][1] == root / "labels/sem_seg/masks/val/a1-00000000.png"
    assert ds.unknown_ids == {}


def test_bdd100k_ids_beyond_the_19_classes_are_ignored_and_counted(tmp_path):
    root = make_bdd(tmp_path / "bdd100k", names=("a",), splits=("val",))
    write_ids(root / "labels/sem_seg/masks/val/a.png", ids_image([19, 1, 200, 13]))
    ds = build_dataset(f"bdd100k:{root}", split="val")
    assert ds[0][1].tolist() == expected([255, 1, 255, 13])
    assert set(ds.unknown_ids) == {19, 200}


def test_bdd100k_in_a_smaller_label_space(tmp_path):
    root = make_bdd(tmp_path / "bdd100k", names=("a",), splits=("val",))
    write_ids(root / "labels/sem_seg/masks/val/a.png", ids_image([9, 10, 14, 18]))  # terrain, sky, truck, bicycle
    ds = build_dataset(f"bdd100k:{root}", split="val", label_space="synthia16")
    assert ds[0][1].tolist() == expected([255, 9, 255, 15])


def test_bdd100k_test_split_is_unlabelled(tmp_path):
    root = make_bdd(tmp_path / "bdd100k")
    ds = build_dataset(f"bdd100k:{root}", split="test")
    assert len(ds) == 1 and not ds.has_labels and (ds[0][1] == 255).all()


@pytest.mark.parametrize("given", ["parent", "seg"])
def test_bdd100k_earlier_seg_release(tmp_path, given):
    """bdd100k_seg.zip: seg/images/SPLIT/NAME.jpg + seg/labels/SPLIT/NAME_train_id.png, given as the
    folder holding seg/ or as seg/ itself."""
    root = tmp_path / "bdd100k"
    for name in ("a91b7555-00000240", "7d06fefd-f7be05a6"):
        write_jpg(root / "seg/images/train" / f"{name}.jpg")
        write_ids(root / "seg/labels/train" / f"{name}_train_id.png", ids_image(BDD_RAW))
    ds = build_dataset(f"bdd100k:{root if given == 'parent' else root / 'seg'}", split="train")
    assert len(ds) == 2 and ds.samples[0][1].name == "7d06fefd-f7be05a6_train_id.png"
    assert ds[1][1].tolist() == expected(BDD_RAW)


def test_bdd100k_wrong_layouts_name_the_path_and_the_layout(tmp_path):
    root = make_bdd(tmp_path / "bdd100k", splits=("train",))
    with pytest.raises(DatasetError, match=r"BDD100K split 'val' not found: no folder .*images/10k/val "
                                           r"\(available splits: test, train\)"):
        build_dataset(f"bdd100k:{root}", split="val")
    flat = tmp_path / "flat"
    write_jpg(flat / "pictures" / "a.jpg")
    with pytest.raises(DatasetError, match=rf"BDD100K root {flat} has neither images/10k/ nor seg/images/ "
                                           r"\(expected BDD100K layout: images/10k/SPLIT/\*\.jpg \+ labels/sem_seg"):
        build_dataset(f"bdd100k:{flat}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="BDD100K root .*empty is empty"):
        build_dataset(f"bdd100k:{tmp_path / 'empty'}")
    (root / "labels/sem_seg/masks/train/b2-00000001.png").unlink()
    with pytest.raises(DatasetError, match=r"1 image\(s\) in .*images/10k/train have no label in .*masks/train "
                                           r"\(1 file: b2-00000001.jpg\)"):
        build_dataset(f"bdd100k:{root}")


def test_bdd100k_root_is_recognised_without_its_kind(tmp_path):
    root = make_bdd(tmp_path / "bdd100k")
    with pytest.raises(DatasetError, match=rf"looks like a bdd100k root, so try bdd100k:{root}"):
        parse_spec(str(root))
    assert parse_spec(f"bdd100k:{root}") == ("bdd100k", root)


# --- Mapillary Vistas ------------------------------------------------------------------------

# The authors' table (semi-supervised_segmentation/util/loader/MapillaryLoader.py), written out.
AUTHORS_V12 = {13: 0, 24: 0, 41: 0, 2: 1, 15: 1, 17: 2, 6: 3, 3: 4, 45: 5, 47: 5, 48: 6, 50: 7, 30: 8,
               29: 9, 27: 10, 19: 11, 20: 12, 21: 12, 22: 12, 55: 13, 61: 14, 54: 15, 58: 16, 57: 17, 52: 18}

# road, lane marking (general), zebra crossing (ignored, as the authors do), car
V12_RAW, V12_TRAIN = [13, 24, 23, 55], [0, 0, 255, 13]
# road, solid line, zebra crossing (ignored), garage (building), front sign, car, pole group (ignored), unlabeled
V20_RAW, V20_TRAIN = [21, 36, 45, 28, 100, 108, 86, 123], [0, 0, 255, 2, 7, 13, 255, 255]


def make_mapillary(root: Path, labels: dict[str, list[int]], names=("k1", "k2"),
                   splits=("training", "validation")) -> Path:
    """``labels``: label folder inside each split folder (``labels``, ``v1.2/labels``,
    ``v2.0/labels``) -> the ids its PNGs hold."""
    for split in splits:
        for i, name in enumerate(names):
            write_jpg(root / split / "images" / f"{name}.jpg", i)
            for folder, raw in (labels.items() if split != "testing" else ()):  # testing ships no labels
                write_ids(root / split / folder / f"{name}.png", ids_image(raw), palette=True)
    return root


def test_mapillary_v12_follows_the_authors_table(tmp_path):
    assert mapillary_to_train_ids("1.2") == AUTHORS_V12
    root = make_mapillary(tmp_path / "vistas", {"labels": V12_RAW})
    ds = build_dataset(f"mapillary:{root}", split="train")
    assert len(ds) == 2 and ds.version == "1.2" and "version='1.2'" in repr(ds)
    assert ds[0][1].tolist() == expected(V12_TRAIN)
    assert ds.samples[0] == (root / "training/images/k1.jpg", root / "training/labels/k1.png")
    assert ds.unknown_ids == {}  # 23 (zebra) and 65 (unlabeled) are valid ids, ignored by design


def test_mapillary_v12_ids_beyond_66_are_ignored_and_counted(tmp_path):
    root = make_mapillary(tmp_path / "vistas", {"labels": [65, 66, 108, 27]}, splits=("validation",))
    ds = build_dataset(f"mapillary:{root}", split="val")
    assert ds[0][1].tolist() == expected([255, 255, 255, 10])
    assert set(ds.unknown_ids) == {66, 108}


def test_mapillary_v20_labels(tmp_path):
    root = make_mapillary(tmp_path / "vistas", {"v2.0/labels": V20_RAW})
    ds = build_dataset(f"mapillary:{root}", split="val")  # detected: the only labels there
    assert ds.version == "2.0" and ds.samples[1][1] == root / "validation/v2.0/labels/k2.png"
    assert ds[1][1].tolist() == expected(V20_TRAIN)
    assert build_dataset(f"mapillary:{root}?version=2.0", split="val")[0][1].tolist() == expected(V20_TRAIN)


def test_mapillary_v20_release_reads_v12_unless_asked(tmp_path):
    """The v2.0 download carries both label sets: v1.2 (the authors' protocol) unless ?version=2.0."""
    root = make_mapillary(tmp_path / "vistas", {"v1.2/labels": V12_RAW, "v2.0/labels": V20_RAW})
    v12 = build_dataset(f"mapillary:{root}", split="val")
    v20 = build_dataset(f"mapillary:{root}?version=v2.0", split="val")
    assert (v12.version, v20.version) == ("1.2", "2.0")
    assert v12[0][1].tolist() == expected(V12_TRAIN) and v20[0][1].tolist() == expected(V20_TRAIN)
    assert parse_spec_options(f"mapillary:{root}?version=2&fraction=1/2")[2]["version"] == "2.0"


def test_mapillary_tables_cover_the_19_classes_once_per_id():
    for version, table in (("1.2", MAPILLARY_V12), ("2.0", MAPILLARY_V20)):
        ids = [i for i, _, _ in table]
        assert len(ids) == len(set(ids)) and all(0 <= i < NUM_IDS[version] for i in ids)
        assert sorted(set(mapillary_to_train_ids(version).values())) == list(range(19))


def test_mapillary_test_split_is_unlabelled(tmp_path):
    root = make_mapillary(tmp_path / "vistas", {"labels": V12_RAW}, splits=("training", "testing"))
    ds = build_dataset(f"mapillary:{root}", split="test")
    assert len(ds) == 2 and not ds.has_labels


def test_mapillary_wrong_layouts_name_the_path_and_the_layout(tmp_path):
    v12 = make_mapillary(tmp_path / "vistas", {"labels": V12_RAW}, splits=("training",))
    with pytest.raises(DatasetError, match=r"has no v2.0 label folder for training/: looked for "
                                           r"training/v2.0/labels/ \(expected Mapillary Vistas layout: "
                                           r"training/images/\*\.jpg \+ training/labels/\*\.png \(v1\.2\)"):
        build_dataset(f"mapillary:{v12}?version=2.0")
    with pytest.raises(DatasetError, match=rf"Mapillary Vistas root {v12} has no validation/images/ folder"):
        build_dataset(f"mapillary:{v12}", split="val")
    with pytest.raises(DatasetError, match=r"split 'trainval': expected train, val or test"):
        build_dataset(f"mapillary:{v12}", split="trainval")
    with pytest.raises(DatasetError, match=r"option version='3.0' is wrong: .*expected 1.2 or 2.0"):
        parse_spec(f"mapillary:{v12}?version=3.0")

    no_labels = tmp_path / "images_only"
    write_jpg(no_labels / "training/images/k1.jpg")
    with pytest.raises(DatasetError, match=r"has no label folder for training/: looked for training/labels/, "
                                           r"training/v1.2/labels/, training/v2.0/labels/"):
        build_dataset(f"mapillary:{no_labels}")

    renamed = tmp_path / "renamed"
    write_jpg(renamed / "train/images/k1.jpg")  # "train/", not the official "training/"
    with pytest.raises(DatasetError, match=rf"root {renamed} has no training/images/ folder \(expected "
                                           r"Mapillary Vistas layout: training/images/"):
        build_dataset(f"mapillary:{renamed}")


def test_mapillary_root_is_recognised_without_its_kind(tmp_path):
    root = make_mapillary(tmp_path / "vistas", {"labels": V12_RAW}, splits=("training",))
    with pytest.raises(DatasetError, match=rf"looks like a mapillary root, so try mapillary:{root}"):
        parse_spec(str(root))
