"""Semi-supervised splits in the spec: ``?fraction=`` keeps a seeded, stable subset, ``&part=unlabelled``
the rest; the subset is written as a list file that ``?list=`` reads back."""

from __future__ import annotations

import os
import random
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from diga.data import DatasetError, build_dataset, parse_spec
from diga.data.splits import choose, parse_fraction
from tests.fixtures_data import make_gta5

NAMES = [f"{i:05d}.png" for i in range(20)]


def gta5(root: Path, names=NAMES) -> Path:
    return make_gta5(root, {name: np.full((4, 8), 7, np.uint8) for name in names})


def image_names(dataset) -> list[str]:
    return [image.name for image, _ in dataset.samples]


@pytest.mark.parametrize("text, value", [("1/16", Fraction(1, 16)), ("1/8", Fraction(1, 8)), ("1/2", Fraction(1, 2)),
                                         ("0.25", Fraction(1, 4)), (" 1/4 ", Fraction(1, 4)), ("1", Fraction(1))])
def test_fractions(text, value):
    assert parse_fraction(text) == value


@pytest.mark.parametrize("text", ["0", "2", "-1/4", "1/0", "abc", "", "nan", "3/2"])
def test_bad_fractions_are_refused(text):
    with pytest.raises(ValueError, match="expected a fraction"):
        parse_fraction(text)


def test_a_bad_fraction_in_a_spec_names_the_spec_and_the_option():
    with pytest.raises(DatasetError, match=r"dataset spec 'cityscapes:/data/cs\?fraction=1/0': option "
                                           r"fraction='1/0' is wrong: expected a fraction such as 1/16"):
        parse_spec("cityscapes:/data/cs?fraction=1/0")
    with pytest.raises(DatasetError, match=r"option part='some' is wrong: expected labelled or unlabelled"):
        parse_spec("gta5:/data/g?fraction=1/4&part=some")
    with pytest.raises(DatasetError, match=r"option seed='x' is wrong: expected an integer seed"):
        parse_spec("gta5:/data/g?fraction=1/4&seed=x")
    with pytest.raises(DatasetError, match=r"\?part= need \?fraction="):
        parse_spec("gta5:/data/g?part=unlabelled")
    with pytest.raises(DatasetError, match=r"unknown or empty option 'fractoin=1/4'; gta5 accepts \?fraction=FRACTION, "
                                           r"\?seed=INTEGER, \?part=labelled\|unlabelled, \?list=FILE"):
        parse_spec("gta5:/data/g?fractoin=1/4")
    with pytest.raises(DatasetError, match=r"video accepts \?fps=NUMBER$"):
        parse_spec("video:/clips/a.mp4?fraction=1/4")


def test_counts_round_up_as_the_usual_cityscapes_splits():
    names = [f"city/{i:04d}_leftImg8bit.png" for i in range(2975)]
    counts = {f: len(choose(names, parse_fraction(f))) for f in ("1/16", "1/8", "1/4", "1/2")}
    assert counts == {"1/16": 186, "1/8": 372, "1/4": 744, "1/2": 1488}


def test_choice_depends_on_names_seed_and_fraction_only():
    shuffled = NAMES[:]
    random.Random(3).shuffle(shuffled)
    chosen = choose(NAMES, Fraction(1, 4), seed=0)
    assert len(chosen) == 5 and choose(shuffled, Fraction(1, 4), seed=0) == chosen
    assert choose(NAMES, Fraction(1, 4), seed=1) != chosen
    assert chosen <= choose(NAMES, Fraction(1, 2), seed=0)  # a larger fraction keeps the smaller one's images


def test_same_subset_whatever_the_order_files_were_written_or_where_the_root_lives(tmp_path):
    one = build_dataset(f"gta5:{gta5(tmp_path / 'a')}?fraction=1/4", split="train")
    two = build_dataset(f"gta5:{gta5(tmp_path / 'elsewhere/b', list(reversed(NAMES)))}?fraction=1/4")
    assert len(one) == 5 and image_names(one) == image_names(two)
    assert image_names(one) == sorted(image_names(one))  # the dataset's own order is kept
    other_seed = build_dataset(f"gta5:{tmp_path / 'a'}?fraction=1/4&seed=7")
    assert len(other_seed) == 5 and image_names(other_seed) != image_names(one)


def test_unlabelled_part_is_the_rest(tmp_path):
    root = gta5(tmp_path / "g")
    labelled = build_dataset(f"gta5:{root}?fraction=1/4")
    rest = build_dataset(f"gta5:{root}?fraction=1/4&part=unlabelled")
    also_rest = build_dataset(f"gta5:{root}?part=unlabeled&fraction=0.25")
    assert len(rest) == 15 and image_names(rest) == image_names(also_rest)
    assert sorted(image_names(labelled) + image_names(rest)) == NAMES
    assert labelled.has_labels and rest.has_labels  # the rest keeps its files; training treats it as a target


def test_the_subset_is_written_as_a_reusable_list_file(tmp_path):
    root = gta5(tmp_path / "g")
    labelled = build_dataset(f"gta5:{root}?fraction=1/8&seed=2")
    written = labelled.subset_list
    assert written.is_relative_to(Path(os.environ["DIGA_CACHE"]) / "splits")
    assert written.name == "train-labelled-1-8-seed2.txt"
    assert written.read_text().splitlines() == [f"images/{name}" for name in image_names(labelled)]
    again = build_dataset(f"gta5:{root}?list={written}")
    assert again.samples == labelled.samples
    rest = build_dataset(f"gta5:{root}?fraction=1/8&seed=2&part=unlabelled")
    assert rest.subset_list.name == "train-unlabelled-1-8-seed2.txt" and rest.subset_list.parent == written.parent
    assert len(rest.subset_list.read_text().splitlines()) == 17


def test_own_list_file_in_the_spec_and_a_fraction_of_it(tmp_path):
    root = gta5(tmp_path / "g")
    own = tmp_path / "mine.txt"
    own.write_text("# my labelled images\n00003.png\nimages/00011.png\n00004.png\n00007.png\n")
    ds = build_dataset(f"gta5:{root}?list={own}")
    assert image_names(ds) == ["00003.png", "00011.png", "00004.png", "00007.png"]
    half = build_dataset(f"gta5:{root}?list={own}&fraction=1/2")
    assert len(half) == 2 and set(image_names(half)) <= set(image_names(ds))
    with pytest.raises(DatasetError, match="names a list file and list_file=.* is given too"):
        build_dataset(f"gta5:{root}?list={own}", list_file=own)
    with pytest.raises(DatasetError, match=r"list file .*missing.txt does not exist"):
        build_dataset(f"gta5:{root}?list={tmp_path / 'missing.txt'}")


def test_cityscapes_fraction_lists_paths_from_the_root(tmp_path, tiny_bench):
    spec = tiny_bench["target"] + "?fraction=1/4"
    ds = build_dataset(spec, split="train")
    assert len(ds) == 2
    lines = ds.subset_list.read_text().splitlines()
    assert all(line.startswith("leftImg8bit/train/") and line.endswith("_leftImg8bit.png") for line in lines)
    assert build_dataset(f"{tiny_bench['target']}?list={ds.subset_list}", split="train").samples == ds.samples


def test_a_part_without_images_is_refused(tmp_path):
    root = gta5(tmp_path / "g", NAMES[:3])
    with pytest.raises(DatasetError, match=r"gta5:.*the unlabelled part \(the rest\) of fraction 1, seed 0 has no "
                                           r"images \(3 in all, 3 chosen\); choose a smaller fraction"):
        build_dataset(f"gta5:{root}?fraction=1&part=unlabelled")
    assert len(build_dataset(f"gta5:{root}?fraction=1/16")) == 1  # at least one image


def test_a_question_mark_that_is_not_an_option_stays_in_the_path():
    assert parse_spec("gta5:/data/what?.d") == ("gta5", Path("/data/what?.d"))
    assert parse_spec("cityscapes:/data/cs?fraction=1/16") == ("cityscapes", Path("/data/cs"))
