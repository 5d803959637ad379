"""GTA5 / SYNTHIA / Cityscapes / folder datasets on tiny fixtures in the official layouts."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diga.classes import CITYSCAPES19, SYNTHIA13, SYNTHIA16
from diga.data import (
    DATASETS,
    CityscapesDataset,
    DatasetError,
    GTA5Dataset,
    ImageFolderDataset,
    SynthiaDataset,
    build_dataset,
    parse_spec,
)

try:
    from fixtures_data import make_cityscapes, make_gta5, make_synthia, rgb_for, write_palette_label
except ImportError:  # tests/ imported as a package
    from tests.fixtures_data import (
        make_cityscapes,
        make_gta5,
        make_synthia,
        rgb_for,
        write_palette_label,
    )

# Cityscapes labelIds: 7 road, 8 sidewalk, 9 parking (ignored), 24 person, 26 car, 33 bicycle,
# 0 unlabeled.
CS_IDS = np.array([[7, 8, 9, 24], [26, 33, 0, 26]], dtype=np.uint8)
CS_TRAIN = [[0, 1, 255, 11], [13, 18, 255, 13]]


def _check_image(image: torch.Tensor, ids: np.ndarray, seed: int = 0):
    assert image.dtype == torch.uint8 and image.shape == (3, *ids.shape)
    assert np.array_equal(image.permute(1, 2, 0).numpy(), rgb_for(ids, seed))


# --------------------------------------------------------------------------------------------
# GTA5


def test_gta5_loads_and_maps(tmp_path):
    root = make_gta5(tmp_path / "GTA5", {"00001.png": CS_IDS, "00002.png": CS_IDS[::-1]})
    ds = GTA5Dataset(root)
    assert ds.name == "gta5" and ds.has_labels and len(ds) == 2
    assert [p.name for p, _ in ds.samples] == ["00001.png", "00002.png"]
    assert ds.samples[0][1] == root / "labels" / "00001.png"
    image, label = ds[0]
    _check_image(image, CS_IDS)
    assert label.dtype == torch.int64 and label.tolist() == CS_TRAIN
    assert ds[1][1].tolist() == CS_TRAIN[::-1]
    assert ds.unknown_ids == {}


def test_gta5_unknown_ids_counted(tmp_path, caplog):
    ids = np.array([[26, 40], [250, 9]], np.uint8)
    ds = GTA5Dataset(make_gta5(tmp_path, {"00001.png": ids}))
    with caplog.at_level(logging.WARNING, logger="diga.data"):
        label = ds[0][1]
    assert label.tolist() == [[13, 255], [255, 255]]
    assert ds.unknown_ids == {40: 1, 250: 1}  # 9 (parking) is a valid, ignored id
    assert "[40, 250]" in caplog.text and "00001.png" in caplog.text
    assert "40: 1 px" in ds.report()


def test_gta5_to_synthia16_space(tmp_path):
    ids = np.array([[22, 27, 31, 26]], np.uint8)  # terrain, truck, train, car
    ds = GTA5Dataset(make_gta5(tmp_path, {"00001.png": ids}), label_space=SYNTHIA16)
    assert ds[0][1].tolist() == [[255, 255, 255, SYNTHIA16.classes.index("car")]]


def test_gta5_list_file(tmp_path):
    root = make_gta5(tmp_path / "GTA5", {f"{i:05d}.png": CS_IDS for i in (1, 2, 3)})
    lst = tmp_path / "train.txt"
    lst.write_text("# subset\n00003.png\n\nimages/00001.png\n")
    ds = GTA5Dataset(root, list_file=lst)
    assert [p.name for p, _ in ds.samples] == ["00003.png", "00001.png"]
    assert ds[0][1].tolist() == CS_TRAIN
    lst.write_text("00001.png\n00009.png\n00010.png\n")
    with pytest.raises(DatasetError, match=r"2 files: 00009.png, 00010.png not found"):
        GTA5Dataset(root, list_file=lst)
    lst.write_text("\n# nothing\n")
    with pytest.raises(DatasetError, match="lists no images"):
        GTA5Dataset(root, list_file=lst)
    with pytest.raises(DatasetError, match="list file .* does not exist"):
        GTA5Dataset(root, list_file=tmp_path / "nope.txt")


# --------------------------------------------------------------------------------------------
# SYNTHIA


SYN_IDS = np.array([[8, 3, 16, 18], [10, 21, 13, 0]], dtype=np.uint16)  # car road terrain truck
#                                                                        person wall parking void


def test_synthia_16bit_labels(tmp_path):
    root = make_synthia(tmp_path / "RAND_CITYSCAPES", {"0000000.png": SYN_IDS})
    ds = SynthiaDataset(root)
    assert ds.name == "synthia" and ds.samples[0][1] == root / "GT" / "LABELS" / "0000000.png"
    image, label = ds[0]
    _check_image(image, SYN_IDS)
    assert label.tolist() == [[13, 0, 9, 14], [11, 3, 255, 255]]
    assert ds.unknown_ids == {}  # the instance ids (>= 1000) in channel 1 are not looked at


def test_synthia_16_and_13_class_spaces(tmp_path):
    root = make_synthia(tmp_path, {"0000000.png": SYN_IDS})
    s16 = SynthiaDataset(root, label_space=SYNTHIA16)[0][1].tolist()
    c16 = SYNTHIA16.classes.index
    assert s16 == [[c16("car"), c16("road"), 255, 255], [c16("person"), c16("wall"), 255, 255]]
    s13 = SynthiaDataset(root, label_space=SYNTHIA13)[0][1].tolist()
    c13 = SYNTHIA13.classes.index
    assert s13 == [[c13("car"), c13("road"), 255, 255], [c13("person"), 255, 255, 255]]


def test_synthia_unknown_id_above_255(tmp_path):
    ids = SYN_IDS.copy()
    ids[0, 0] = 300
    ds = SynthiaDataset(make_synthia(tmp_path, {"0000000.png": ids}))
    assert ds[0][1][0, 0] == 255 and ds.unknown_ids == {300: 1}


# --------------------------------------------------------------------------------------------
# Cityscapes


def test_cityscapes_loads_and_maps(tmp_path):
    frames = {"aachen/aachen_000000_000019": CS_IDS,
              "aachen/aachen_000001_000019": CS_IDS[:, ::-1],
              "bochum/bochum_000000_000313": CS_IDS[::-1]}
    root = make_cityscapes(tmp_path / "cityscapes", frames)
    ds = CityscapesDataset(root, split="train")
    assert ds.name == "cityscapes" and len(ds) == 3 and ds.has_labels
    img, lab = ds.samples[0]
    assert img == root / "leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png"
    assert lab == root / "gtFine/train/aachen/aachen_000000_000019_gtFine_labelIds.png"
    assert [p.parent.name for p, _ in ds.samples] == ["aachen", "aachen", "bochum"]
    image, label = ds[0]
    _check_image(image, CS_IDS)
    assert label.tolist() == CS_TRAIN  # 26 -> car 13, 9 parking -> 255
    assert ds[2][1].tolist() == CS_TRAIN[::-1]


def test_cityscapes_splits_and_list_file(tmp_path):
    root = make_cityscapes(tmp_path, {"frankfurt/frankfurt_000000_000294": CS_IDS,
                                      "lindau/lindau_000000_000019": CS_IDS}, split="val")
    with pytest.raises(DatasetError, match=r"split 'train' not found.*available splits: val"):
        CityscapesDataset(root, split="train")
    lst = tmp_path / "val.txt"
    lst.write_text("lindau/lindau_000000_000019_leftImg8bit.png\n"
                   "leftImg8bit/val/frankfurt/frankfurt_000000_000294_leftImg8bit.png\n")
    ds = CityscapesDataset(root, split="val", list_file=lst)
    assert [p.parent.name for p, _ in ds.samples] == ["lindau", "frankfurt"]
    assert ds[0][1].tolist() == CS_TRAIN


def test_cityscapes_without_gtfine_is_unlabelled(tmp_path, caplog):
    root = make_cityscapes(tmp_path, {"aachen/aachen_000000_000019": CS_IDS}, labels=False)
    with caplog.at_level(logging.WARNING, logger="diga.data"):
        ds = CityscapesDataset(root)
    assert not ds.has_labels and ds.samples[0][1] is None
    assert "no gtFine/train/" in caplog.text
    image, label = ds[0]
    assert label.dtype == torch.int64 and label.shape == (2, 4) and (label == 255).all()


# --------------------------------------------------------------------------------------------
# Folder


def test_folder_recursive_extensions_sorted(tmp_path):
    root = tmp_path / "photos"
    (root / "b" / "deep").mkdir(parents=True)
    (root / ".hidden").mkdir()
    px = np.zeros((3, 4, 3), np.uint8)
    for rel in ("z.png", "a.JPG", "b/deep/c.Jpeg", "b/x.PNG", ".hidden/h.png", "._a.png"):
        Image.fromarray(px).save(root / rel, format="PNG" if "png" in rel.lower() else "JPEG")
    (root / "notes.txt").write_text("not an image")
    Image.fromarray(px).save(root / "pic.bmp")
    ds = ImageFolderDataset(root)
    rel = [p.relative_to(root).as_posix() for p, _ in ds.samples]
    assert rel == ["a.JPG", "b/deep/c.Jpeg", "b/x.PNG", "z.png"]
    assert not ds.has_labels and ds.name == "folder"
    image, label = ds[1]
    assert image.shape == (3, 3, 4) and label.shape == (3, 4) and (label == 255).all()


def test_folder_with_label_root(tmp_path):
    images, labels = tmp_path / "img", tmp_path / "lab"
    (images / "seq").mkdir(parents=True)
    (labels / "seq").mkdir(parents=True)
    ids = np.array([[0, 18, 19], [255, 7, 200]], np.uint8)  # trainIds; 19 and 200 are unknown
    Image.fromarray(rgb_for(ids)).save(images / "seq" / "f 1.jpg", quality=95)
    Image.fromarray(ids, "L").save(labels / "seq" / "f 1.png")
    ds = build_dataset(f"folder:{images}", label_root=labels)
    assert ds.has_labels and ds.samples[0][1] == labels / "seq" / "f 1.png"
    label = ds[0][1]
    assert label.tolist() == [[0, 18, 255], [255, 7, 255]]
    assert ds.unknown_ids == {19: 1, 200: 1}
    ds16 = ImageFolderDataset(images, label_root=labels, label_space=SYNTHIA16)
    assert ds16[0][1].tolist() == [[0, 255, 255], [255, 7, 255]]
    assert ds16.unknown_ids == {18: 1, 19: 1, 200: 1}


def test_folder_labels_given_in_the_spec(tmp_path):
    """`folder:DIR?labels=LABEL_DIR` is the CLI's way to a labelled folder (own annotated frames)."""
    images, labels = tmp_path / "my frames", tmp_path / "my gt"
    images.mkdir()
    labels.mkdir()
    ids = np.array([[0, 13], [2, 255]], np.uint8)
    Image.fromarray(rgb_for(ids)).save(images / "a.png")
    Image.fromarray(ids, "L").save(labels / "a.png")
    ds = build_dataset(f"folder:{images}?labels={labels}")
    assert ds.has_labels and ds.root == images and ds[0][1].tolist() == [[0, 13], [2, 255]]
    assert parse_spec(f"folder:{images}?labels={labels}") == ("folder", images)
    with pytest.raises(DatasetError, match=r"unknown or empty option 'label=x'.*\?labels=PATH"):
        build_dataset(f"folder:{images}?label=x")
    with pytest.raises(DatasetError, match="label folder .*does not exist"):
        build_dataset(f"folder:{images}?labels={tmp_path / 'missing'}")
    # Kinds without options keep a '?' as part of the path.
    assert parse_spec("gta5:/data/what?.d") == ("gta5", Path("/data/what?.d"))


def test_folder_labels_with_own_ids_and_a_label_map(tmp_path):
    """Own annotation ids -> classes through a JSON map given in the spec (`&map=FILE`)."""
    import json

    images, labels = tmp_path / "img", tmp_path / "gt"
    images.mkdir()
    labels.mkdir()
    own = np.array([[7, 26], [0, 99]], np.uint8)  # 7 road, 26 car, 0 ignore, 99 not in the map
    Image.fromarray(rgb_for(own)).save(images / "a.png")
    Image.fromarray(own, "L").save(labels / "a.png")
    good = tmp_path / "map.json"
    good.write_text(json.dumps({"7": "road", "26": 13, "0": 255}))
    ds = build_dataset(f"folder:{images}?labels={labels}&map={good}")
    assert ds[0][1].tolist() == [[0, 13], [255, 255]]
    assert ds.unknown_ids == {99: 1}  # listed ids (0 -> ignore) are not "unknown"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"7": "roadway", "x": 1, "3": 40}))
    with pytest.raises(DatasetError, match=r"bad.json: 7: 'roadway' is neither a class.*key 'x'.*3: 40"):
        build_dataset(f"folder:{images}?labels={labels}&map={bad}")[0]
    with pytest.raises(DatasetError, match="needs labels"):
        build_dataset(f"folder:{images}?map={good}")
    with pytest.raises(DatasetError, match="does not exist"):
        build_dataset(f"folder:{images}?labels={labels}&map={tmp_path / 'none.json'}")


def test_folder_single_file(tmp_path):
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(tmp_path / "one.png")
    ds = build_dataset(f"folder:{tmp_path / 'one.png'}")
    assert len(ds) == 1 and ds[0][0].shape == (3, 2, 2)


def test_names_with_spaces_and_non_ascii(tmp_path):
    root = make_gta5(tmp_path / "données GTA5", {"straße 01 é.png": CS_IDS, "日本 02.png": CS_IDS})
    ds = build_dataset(f"gta5:{root}")
    assert len(ds) == 2 and all(ds[i][1].tolist() == CS_TRAIN for i in range(2))
    lst = tmp_path / "liste ü.txt"
    lst.write_text("日本 02.png\n", encoding="utf-8")
    assert [p.name for p, _ in GTA5Dataset(root, list_file=lst).samples] == ["日本 02.png"]
    folder = ImageFolderDataset(root / "images")
    assert sorted(p.name for p, _ in folder.samples) == ["straße 01 é.png", "日本 02.png"]


# --------------------------------------------------------------------------------------------
# Bad inputs


@pytest.mark.parametrize("kind", ["gta5", "synthia", "cityscapes"])
def test_missing_and_empty_root(tmp_path, kind):
    with pytest.raises(DatasetError, match=f"{tmp_path / 'nope'} does not exist"):
        build_dataset(f"{kind}:{tmp_path / 'nope'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"is empty \(expected .* layout"):
        build_dataset(f"{kind}:{tmp_path / 'empty'}")
    (tmp_path / "file").write_text("x")
    with pytest.raises(DatasetError, match="is not a directory"):
        build_dataset(f"{kind}:{tmp_path / 'file'}")


def test_no_images_in_image_folder(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    with pytest.raises(DatasetError) as err:
        GTA5Dataset(tmp_path)
    assert str(err.value) == (f"no images found under {tmp_path / 'images'} (expected GTA5 "
                              "layout: images/*.png + labels/*.png)")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no images .* found under"):
        ImageFolderDataset(tmp_path / "empty")
    with pytest.raises(DatasetError, match="does not exist"):
        ImageFolderDataset(tmp_path / "nope")


def test_wrong_layout_recognised(tmp_path):
    cs = make_cityscapes(tmp_path / "cs", {"aachen/aachen_000000_000019": CS_IDS})
    syn = make_synthia(tmp_path / "syn", {"0000000.png": SYN_IDS})
    gta = make_gta5(tmp_path / "gta", {"00001.png": CS_IDS})
    cases = [
        ("gta5", cs, f"this looks like a Cityscapes root .*; use cityscapes:{cs}$"),
        ("synthia", cs, f"use cityscapes:{cs}$"),
        ("gta5", syn, f"this looks like a SYNTHIA root .*; use synthia:{syn}$"),
        ("cityscapes", syn, f"use synthia:{syn}$"),
        ("synthia", gta, f"this looks like a GTA5 root .*; use gta5:{gta}$"),
        ("cityscapes", gta, f"has no leftImg8bit/ folder .*; use gta5:{gta}$"),
        ("gta5", gta / "images", f"inside the GTA5 root {gta}; use gta5:{gta}$"),
        ("cityscapes", cs / "leftImg8bit",
         f"inside the Cityscapes root {cs}; use cityscapes:{cs}$"),
    ]
    for kind, root, pattern in cases:
        with pytest.raises(DatasetError, match=pattern):
            build_dataset(f"{kind}:{root}")


def test_images_without_labels_and_labels_without_images_listed(tmp_path):
    root = make_gta5(tmp_path, {f"{i:05d}.png": CS_IDS for i in range(1, 16)})
    for i in range(1, 13):
        (root / "labels" / f"{i:05d}.png").unlink()
    write_palette_label(root / "labels" / "99999.png", CS_IDS)
    with pytest.raises(DatasetError) as err:
        GTA5Dataset(root)
    msg = str(err.value)
    assert f"12 image(s) in {root / 'images'} have no label in {root / 'labels'}" in msg
    assert "12 files: 00001.png, 00002.png" in msg and "00010.png, ... (2 more)" in msg
    assert "00011.png" not in msg
    assert f"1 label(s) in {root / 'labels'} have no image" in msg and "1 file: 99999.png" in msg


def test_cityscapes_missing_label_listed(tmp_path):
    root = make_cityscapes(tmp_path, {"aachen/aachen_000000_000019": CS_IDS,
                                      "aachen/aachen_000001_000019": CS_IDS})
    (root / "gtFine/train/aachen/aachen_000001_000019_gtFine_labelIds.png").unlink()
    with pytest.raises(DatasetError, match="1 file: aachen/aachen_000001_000019_leftImg8bit.png"):
        CityscapesDataset(root)


def test_synthia_labels_without_images(tmp_path):
    root = make_synthia(tmp_path, {"0000000.png": SYN_IDS, "0000001.png": SYN_IDS})
    (root / "RGB" / "0000001.png").unlink()
    with pytest.raises(DatasetError, match=r"1 label\(s\) in .*GT/LABELS have no image"):
        SynthiaDataset(root)


def test_size_mismatch(tmp_path):
    root = make_gta5(tmp_path, {"00001.png": CS_IDS})
    write_palette_label(root / "labels" / "00001.png", np.full((3, 5), 26, np.uint8))
    ds = GTA5Dataset(root)
    with pytest.raises(DatasetError) as err:
        ds[0]
    msg = str(err.value)
    assert str(root / "images" / "00001.png") in msg and str(root / "labels" / "00001.png") in msg
    assert "is 4x2 (WxH)" in msg and "is 5x3" in msg
    resized = GTA5Dataset(root, on_size_mismatch="resize")
    image, label = resized[0]
    assert label.shape == image.shape[1:] and (label == 13).all() and resized.resized_labels == 1


def test_corrupt_image_and_label_in_dataset(tmp_path):
    root = make_gta5(tmp_path, {"00001.png": CS_IDS, "00002.png": CS_IDS})
    (root / "images" / "00001.png").write_bytes(b"")
    data = (root / "labels" / "00002.png").read_bytes()
    (root / "labels" / "00002.png").write_bytes(data[: len(data) - 20])
    ds = GTA5Dataset(root)
    with pytest.raises(DatasetError, match=r"00001.png is empty \(0 bytes\)"):
        ds[0]
    with pytest.raises(DatasetError, match=r"label file .*00002.png: corrupt or truncated PNG"):
        ds[1]


# --------------------------------------------------------------------------------------------
# Specs and registry


def test_parse_spec():
    assert parse_spec("gta5:/data/GTA5") == ("gta5", __import__("pathlib").Path("/data/GTA5"))
    assert parse_spec("CityScapes:/a:b")[0] == "cityscapes"
    assert str(parse_spec("cityscapes:/a:b")[1]) == "/a:b"
    with pytest.raises(DatasetError,
                       match="unknown dataset kind 'gta'.*gta5, synthia, cityscapes, folder"):
        parse_spec("gta:/x")
    with pytest.raises(DatasetError, match="must be KIND:PATH"):
        parse_spec("/data/GTA5")
    with pytest.raises(DatasetError, match="no path"):
        parse_spec("gta5:")
    assert set(DATASETS) == {"gta5", "synthia", "cityscapes", "folder", "video", "bdd100k", "mapillary"}


def test_missing_colon_suggests_kind(tmp_path):
    gta = make_gta5(tmp_path / "gta", {"00001.png": CS_IDS})
    with pytest.raises(DatasetError, match=f"try gta5:{gta}"):
        build_dataset(str(gta))


def test_build_dataset_passes_options(tmp_path):
    root = make_cityscapes(tmp_path, {"aachen/aachen_000000_000019": CS_IDS}, split="val")
    ds = build_dataset(f"cityscapes:{root}", split="val", label_space="synthia16")
    assert ds.label_space == SYNTHIA16 and ds.split == "val"
    gta = make_gta5(tmp_path / "g", {"00001.png": CS_IDS})
    assert build_dataset(f"gta5:{gta}", split="val").label_space == CITYSCAPES19  # split ignored
    with pytest.raises(TypeError, match="label_root"):
        build_dataset(f"gta5:{gta}", label_root=gta)


def test_dataset_pickles_for_workers_and_batches(tmp_path):
    from torch.utils.data import DataLoader

    from diga.data import TrainTransform

    root = make_gta5(tmp_path, {f"{i:05d}.png": np.tile(CS_IDS, (4, 4)) for i in range(1, 5)})
    ds = GTA5Dataset(root, transform=TrainTransform(crop=(4, 6), scale=(1.0, 1.0)))
    clone = pickle.loads(pickle.dumps(ds))
    assert len(clone) == 4 and clone[0][1].shape == (4, 6)
    images, labels = next(iter(DataLoader(ds, batch_size=4)))
    assert images.shape == (4, 3, 4, 6) and images.dtype == torch.uint8
    assert labels.shape == (4, 4, 6) and labels.dtype == torch.int64
