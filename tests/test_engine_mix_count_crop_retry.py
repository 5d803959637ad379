"""Two smaller differences from the authors' code (docs/METHOD.md, summary table): how many classes
the class mixtures take (--mix-count authors|ceil) and the redrawn source crops (--crop-retry N)."""

from __future__ import annotations

import pytest
import torch

from diga.data.transforms import TrainTransform, crop_passes
from diga.engine.config import StageConfig, preset
from diga.errors import ConfigError
from diga.method.mix import choose_half, class_mix_mask, target_cross_mix

I = 255  # noqa: E741 - the ignore label


# --- how many classes a mixture takes -------------------------------------------------------------


def _chosen(labels: torch.Tensor, mask: torch.Tensor) -> list[set[int]]:
    """Per image, the label values whose pixels are all in the mask (checking that none is split)."""
    out = []
    for lbl, m in zip(labels, mask):
        chosen = set()
        for v in lbl.unique().tolist():
            inside = m[lbl == v]
            assert bool(inside.all()) or not bool(inside.any()), f"label {v} split by the mask"
            if bool(inside.all()):
                chosen.add(v)
        out.append(chosen)
    return out


def _batch(values: list[int], n: int = 200) -> torch.Tensor:
    """n copies of a 4x4 label holding ``values`` (each at least once)."""
    flat = torch.tensor([values[i % len(values)] for i in range(16)])
    return flat.view(1, 4, 4).repeat(n, 1, 1)


@pytest.mark.parametrize("values", [[0, 1, 2, I], [0, 1, 2, 3, 4], [3], [3, I], [0, 1, 2, 3, 4, 5, I]])
def test_the_number_of_classes_follows_each_formula(values):
    labels = _batch(values)
    classes = [v for v in values if v != I]
    n, m = len(classes), len(values)  # real classes; distinct values with the ignore label
    ceil = _chosen(labels, class_mix_mask(labels, 8, torch.Generator().manual_seed(0), include_ignore=False))
    assert all(len(c) == (n + 1) // 2 and c <= set(classes) for c in ceil)
    authors = _chosen(labels, class_mix_mask(labels, 8, torch.Generator().manual_seed(0), include_ignore=False,
                                             count="authors"))
    k = m // 2
    assert all(c <= set(classes) for c in authors)
    if I in values and k > 0:
        # floor(m/2) draws from the classes and the ignore label: one class fewer when the ignore is drawn,
        # which happens with probability k/m
        assert {len(c) for c in authors} == {k, k - 1}
        drawn_ignore = sum(len(c) == k - 1 for c in authors) / len(authors)
        assert abs(drawn_ignore - k / m) < 0.12
    else:
        assert {len(c) for c in authors} == {k}


def test_every_class_is_drawn_in_the_authors_count():
    labels = _batch([0, 1, 2, I], n=300)
    authors = _chosen(labels, class_mix_mask(labels, 4, torch.Generator().manual_seed(1), include_ignore=False,
                                             count="authors"))
    assert set().union(*authors) == {0, 1, 2}


def test_the_ignore_pixels_follow_include_ignore_in_both_counts():
    labels = _batch([0, 1, I], n=20)
    for count in ("authors", "ceil"):
        for include in (True, False):
            mask = class_mix_mask(labels, 3, torch.Generator().manual_seed(2), include_ignore=include, count=count)
            assert bool((mask[labels == I] == include).all()), (count, include)


def test_ceil_keeps_todays_draw():
    labels = torch.randint(0, 6, (8, 6, 6), generator=torch.Generator().manual_seed(5))
    labels[:, :2] = I
    present = torch.zeros(8, 6, dtype=torch.bool).scatter_(1, labels.view(8, -1).clamp(max=5), True)
    # today's rule, written out: scores for the present classes, the ceil(n/2) smallest taken
    scores = torch.rand((8, 6), generator=torch.Generator().manual_seed(9))
    expected = torch.zeros_like(present)
    for b in range(8):
        cls = present[b].nonzero().flatten()
        k = (len(cls) + 1) // 2
        expected[b, cls[scores[b, cls].argsort()[:k]]] = True
    assert torch.equal(choose_half(present, torch.Generator().manual_seed(9)), expected)
    assert torch.equal(choose_half(present, torch.Generator().manual_seed(9), count="ceil"), expected)


def test_a_bad_count_is_refused():
    with pytest.raises(ValueError, match="count must be one of authors, ceil"):
        choose_half(torch.ones(1, 3, dtype=torch.bool), count="floor")
    with pytest.raises(ConfigError, match="mix_count must be one of"):
        preset("cpu").replace(mix_count="floor").validate()


def test_target_cross_mix_takes_the_count():
    src = _batch([0, 1, 2, 3, 4], n=50)  # no ignore: 2 classes (authors) or 3 (ceil) pasted
    tgt = torch.full_like(src, 7)
    img = src.unsqueeze(1).float()
    for count, k in (("authors", 2), ("ceil", 3)):
        _, y_mix = target_cross_mix(img, src, img * 0, tgt, 5, torch.Generator().manual_seed(0), count=count)
        assert all(len(set(y.unique().tolist()) - {7}) == k for y in y_mix), count


def test_the_source_views_take_the_setting(monkeypatch):
    from diga.engine import source_branch
    from diga.engine.source_branch import SourceBranch
    from diga.method.translate import build_translator

    seen = []
    real = source_branch.class_mix_mask

    def spy(*args, **kwargs):
        seen.append(kwargs.get("count"))
        return real(*args, **kwargs)

    monkeypatch.setattr(source_branch, "class_mix_mask", spy)
    branch = SourceBranch.__new__(SourceBranch)
    branch.space = type("Space", (), {"num_classes": 3})()
    branch.translator = build_translator("none")
    x, y = torch.rand(2, 3, 8, 8), torch.randint(0, 3, (2, 8, 8))
    for count in ("authors", "ceil"):
        branch.cfg = preset("cpu").replace(mix_count=count)
        branch.views(x, y, None, torch.Generator().manual_seed(0))
    assert seen == ["authors", "ceil"]


# --- redrawn source crops ---------------------------------------------------------------------------


def test_the_rule_counts_classes_above_two_percent_and_not_the_ignore_label():
    def lbl(*parts):  # (value, pixels) of a 1000-pixel label
        return torch.cat([torch.full((n,), v) for v, n in parts]).view(10, 100)

    assert crop_passes(lbl((0, 970), (1, 30)))
    assert not crop_passes(lbl((0, 980), (1, 20)))  # exactly 2 %: not more
    assert not crop_passes(lbl((0, 500), (I, 500)))  # two labels, one of them the ignore label
    assert crop_passes(lbl((0, 400), (1, 100), (I, 500)))
    assert not crop_passes(lbl((0, 950), (1, 10), (2, 10), (3, 10), (4, 10), (5, 10)))


def _scene() -> tuple[torch.Tensor, torch.Tensor]:
    """A 40x40 image whose pixels tell where they came from, and a label with two classes in the top
    half (left 0, right 1) and ignore below: a 20x20 crop low or at a side fails the rule."""
    rows, cols = torch.meshgrid(torch.arange(40), torch.arange(40), indexing="ij")
    image = torch.stack([rows, cols, rows * 0]).to(torch.uint8)
    label = torch.full((40, 40), I, dtype=torch.int64)
    label[:20, :20], label[:20, 20:] = 0, 1
    return image, label


def _transform(retry: int) -> TrainTransform:
    return TrainTransform(crop=20, scale=(0.8, 1.2), crop_retry=retry)


def test_retries_keep_the_first_qualifying_draw():
    image, label = _scene()
    checked = 0
    for seed in range(40):
        torch.manual_seed(seed)
        first = _transform(0)(image, label)
        if crop_passes(first[1]):
            continue
        checked += 1
        # the plain draws that follow from the same seed, one by one
        torch.manual_seed(seed)
        plain = [_transform(0)(image, label) for _ in range(5)]
        passing = [i for i, (_, lbl) in enumerate(plain) if crop_passes(lbl)]
        assert passing, "no qualifying crop in five draws: choose another scene"
        torch.manual_seed(seed)
        img, lbl = _transform(5)(image, label)
        assert crop_passes(lbl)
        assert torch.equal(img, plain[passing[0]][0]) and torch.equal(lbl, plain[passing[0]][1])
    assert checked >= 3  # the scene makes first draws fail often enough to test the retries


def test_without_a_qualifying_crop_the_last_of_n_draws_is_kept():
    image, _ = _scene()
    label = torch.zeros(40, 40, dtype=torch.int64)  # one class: no crop passes
    torch.manual_seed(3)
    plain = [_transform(0)(image, label) for _ in range(5)]
    after_plain = torch.rand(())
    torch.manual_seed(3)
    img, lbl = _transform(5)(image, label)
    assert torch.equal(img, plain[-1][0]) and torch.equal(lbl, plain[-1][1])
    assert torch.equal(torch.rand(()), after_plain)  # five draws, no more


@pytest.mark.parametrize("retry", [0, 1])
def test_zero_keeps_todays_single_unchecked_draw(retry):
    image, label = _scene()
    for seed in range(10):
        torch.manual_seed(seed)
        expected = _transform(0)(image, label)
        after_one = torch.rand(())
        torch.manual_seed(seed)
        got = TrainTransform(crop=20, scale=(0.8, 1.2), crop_retry=retry)(image, label)
        assert all(torch.equal(a, b) for a, b in zip(got, expected))
        assert torch.equal(torch.rand(()), after_one)


def test_crop_retry_is_checked():
    with pytest.raises(ValueError, match="crop_retry"):
        TrainTransform(crop=20, crop_retry=-1)
    with pytest.raises(ConfigError, match="crop_retry must be an integer >= 0"):
        preset("cpu").replace(crop_retry=-2).validate()
    assert StageConfig().crop_retry == 0 and StageConfig().mix_count == "ceil"


def test_only_the_labelled_source_side_is_redrawn(tiny_cfg):
    from diga.engine.loaders import train_dataset, train_datasets, train_transform

    cfg = tiny_cfg.replace(crop_retry=5)
    assert train_transform(cfg).crop_retry == 5
    assert train_transform(cfg, "target").crop_retry == 0
    # supervised training (references included) reads the source side's dataset
    assert train_dataset(cfg.source, cfg).transform.crop_retry == 5
    assert [d.transform.crop_retry for _, d in train_datasets(cfg.target, cfg, "target")] == [0]
    assert [d.transform.crop_retry for _, d in train_datasets(cfg.source, cfg, "source")] == [5]


def test_crop_retry_changes_the_references_key_and_mix_count_does_not(tiny_cfg):
    from diga.engine.benchmark import _key

    assert _key(tiny_cfg.replace(crop_retry=5), "d") != _key(tiny_cfg, "d")
    assert _key(tiny_cfg.replace(mix_count="authors"), "d") == _key(tiny_cfg, "d")


@pytest.mark.parametrize("command", ["warmup", "selftrain", "adapt"])
def test_the_stage_commands_pass_both_settings_on(command, tiny_bench, tmp_path, monkeypatch):
    from conftest import stage_configs

    seen = stage_configs(command, tiny_bench, tmp_path, monkeypatch, "--mix-count", "authors", "--crop-retry", "5")
    assert seen and all(c.mix_count == "authors" and c.crop_retry == 5 for c in seen)
