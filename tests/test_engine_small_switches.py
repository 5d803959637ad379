"""Two smaller differences from the authors' code (docs/METHOD.md, summary table): which checkpoint
a stage hands on (--select auto: the best target-val step when labelled --val data is given, as the
authors' scripts keep it, else the last) and whether self-training's target cross-mix pastes the
source's ignore pixels (--target-mix-ignore paste|keep)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from diga.engine.config import StageConfig, preset
from diga.errors import ConfigError
from diga.method import prototype_labels, prototype_labels_bilinear, select_dynamic, target_cross_mix

# --- which checkpoint a stage hands on ----------------------------------------------------------


def test_the_paper_presets_hand_on_the_best_step_when_they_can_and_the_others_the_last():
    # every script of the authors keeps its best Cityscapes-val step: adaptation, DG and semi-supervised
    assert [preset(p).select for p in ("paper", "paper-synthia", "paper-dg", "paper-semi")] == ["auto"] * 4
    assert [preset(p).select for p in ("cpu", "gpu")] == ["last"] * 2
    assert StageConfig().select == "last"
    preset("cpu").replace(select="auto").validate()
    with pytest.raises(ConfigError, match="select must be one of last, best, auto"):
        preset("cpu").replace(select="first").validate()


def _summary(project: Path) -> dict:
    (path,) = Path(project).rglob("summary.json")
    return json.loads(path.read_text())


def test_select_auto_without_val_data_hands_on_the_last_step_and_says_so(cli, tiny_bench, tmp_path):
    r = cli("train", "--data", tiny_bench["source"], "--preset", "cpu", "--crop", "48", "96", "--steps", "1",
            "--workers", "0", "--select", "auto", "--project", tmp_path)
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())  # the console may wrap the note
    assert "--select auto: no --val was given" in text and "hands on its last step" in text
    summary = _summary(tmp_path)
    assert summary["selected"] == "last" and summary["weights"].endswith("last.safetensors")
    assert not (Path(summary["weights"]).parent / "best.safetensors").exists()


def test_select_auto_with_labelled_val_data_hands_on_the_best_step(cli, tiny_bench, tmp_path):
    r = cli("train", "--data", tiny_bench["source"], "--val", tiny_bench["val"], "--preset", "cpu",
            "--crop", "48", "96", "--steps", "1", "--eval-every", "0", "--workers", "0", "--select", "auto",
            "--project", tmp_path)
    assert r.exit_code == 0, r.output
    assert "--select auto" not in r.output
    summary = _summary(tmp_path)
    assert summary["selected"] == "best" and summary["weights"].endswith("best.safetensors")
    assert Path(summary["weights"]).exists() and summary["best"]["step"] >= 0


def test_select_best_without_val_data_is_still_refused(cli, tiny_bench, tmp_path):
    r = cli("train", "--data", tiny_bench["source"], "--preset", "cpu", "--crop", "48", "96", "--steps", "1",
            "--workers", "0", "--select", "best", "--project", tmp_path)
    assert r.exit_code == 1 and "--select best" in r.text and "no --val" in r.text


def test_the_adapt_protocol_line_says_which_step_auto_hands_on():
    from diga.engine.pipeline import _protocol

    cfg = preset("cpu").replace(select="auto")
    assert _protocol(cfg.replace(val="cityscapes:/x")).endswith("best (auto, labelled --val data)")
    assert _protocol(cfg.replace(val=None)).endswith("last (auto, no --val)")
    assert _protocol(cfg.replace(select="last")).endswith("per stage: last")


# --- the target cross-mix on the source's ignore pixels -------------------------------------------

I = 255  # noqa: E741


def _images(labels: torch.Tensor, value: float) -> torch.Tensor:
    """(B,3,H,W) images whose every pixel tells where it came from: value + its flat index / 100."""
    b, h, w = labels.shape
    idx = torch.arange(b * h * w, dtype=torch.float32).view(b, 1, h, w) / 100
    return (value + idx).expand(b, 3, h, w).clone()


def test_one_class_and_ignore_pixels_give_the_hand_computed_labels_in_both_settings():
    # one real class (0) in the source: ceil(1/2) = 1, so class 0 is always the pasted half
    src_lbl = torch.tensor([[[0, 0, I, 2 + 5],
                             [I, 0, I, I]]])  # 7: an id outside the 3 classes counts as ignore
    tgt_lbl = torch.tensor([[[1, 2, 1, 2],
                             [2, I, 1, 1]]])
    src_img, tgt_img = _images(src_lbl, 10.0), _images(tgt_lbl, 20.0)
    keep_lbl = torch.tensor([[[0, 0, 1, 2],
                              [2, 0, 1, 1]]])
    paste_lbl = torch.tensor([[[0, 0, I, 7],
                               [I, 0, I, I]]])
    keep_from_src = torch.tensor([[[1, 1, 0, 0], [0, 1, 0, 0]]], dtype=torch.bool)
    paste_from_src = torch.ones_like(keep_from_src)  # every source pixel is class 0 or ignored
    for paste, lbl, from_src in ((False, keep_lbl, keep_from_src), (True, paste_lbl, paste_from_src)):
        t_mix, y_mix = target_cross_mix(src_img, src_lbl, tgt_img, tgt_lbl, 3, torch.Generator().manual_seed(0),
                                        paste_ignore=paste)
        assert torch.equal(y_mix, lbl), paste
        expected_img = torch.where(from_src.unsqueeze(1), src_img, tgt_img)
        assert torch.equal(t_mix, expected_img), paste


def test_pasting_the_ignore_pixels_changes_only_them_and_keeps_the_class_draw():
    g = torch.Generator().manual_seed(3)
    src_lbl = torch.randint(0, 4, (4, 6, 8), generator=g)
    src_lbl[:, :2, :3] = I
    tgt_lbl = torch.randint(0, 4, (4, 6, 8), generator=g)
    tgt_lbl[:, 4:, :] = I
    src_img, tgt_img = _images(src_lbl, 10.0), _images(tgt_lbl, 20.0)
    for seed in range(5):
        keep_img, keep = target_cross_mix(src_img, src_lbl, tgt_img, tgt_lbl, 4, torch.Generator().manual_seed(seed))
        paste_img, paste = target_cross_mix(src_img, src_lbl, tgt_img, tgt_lbl, 4,
                                            torch.Generator().manual_seed(seed), paste_ignore=True)
        ignored = src_lbl == I
        # on the source's ignore pixels: keep = the target's label and image, paste = 255 and the source
        assert torch.equal(keep[ignored], tgt_lbl[ignored]) and bool((paste[ignored] == I).all())
        assert torch.equal(keep_img.permute(0, 2, 3, 1)[ignored], tgt_img.permute(0, 2, 3, 1)[ignored])
        assert torch.equal(paste_img.permute(0, 2, 3, 1)[ignored], src_img.permute(0, 2, 3, 1)[ignored])
        # elsewhere the same classes were drawn, so the two mixtures agree
        assert torch.equal(keep[~ignored], paste[~ignored])
        assert torch.equal(keep_img.permute(0, 2, 3, 1)[~ignored], paste_img.permute(0, 2, 3, 1)[~ignored])
        # and it is a real mixture: some source class pasted, some target pixel kept
        assert bool(((keep == src_lbl) & ~ignored & (src_lbl != tgt_lbl)).any())
        assert bool(((keep == tgt_lbl) & ~ignored & (src_lbl != tgt_lbl)).any())


@pytest.mark.parametrize("setting,paste,upsample", [("keep", False, "nearest"), ("paste", True, "bilinear")])
def test_selftraining_passes_the_setting_to_the_mixture(tiny_cfg, tmp_path, monkeypatch, setting, paste, upsample):
    from conftest import make_checkpoint

    from diga.engine import selftrain
    from diga.engine.loaders import infinite_loader
    from diga.engine.pseudolabels import compute_centroids, generate_pseudo_labels

    seen = []
    real = selftrain.target_cross_mix

    def spy(*args, **kwargs):
        seen.append(kwargs.get("paste_ignore"))
        src_lbl = args[1].clone()
        src_lbl[:, :4, :4] = I  # the tiny benchmark's source labels have no ignore pixels of their own
        t_mix, y_mix = real(args[0], src_lbl, *args[2:], **kwargs)
        ignored = src_lbl == I
        expected = torch.full_like(y_mix[ignored], I) if paste else args[3].long()[ignored]
        assert torch.equal(y_mix[ignored], expected)
        return t_mix, y_mix

    monkeypatch.setattr(selftrain, "target_cross_mix", spy)
    bilinear_calls = []
    real_bilinear = selftrain.prototype_labels_bilinear

    def spy_bilinear(*args, **kwargs):
        bilinear_calls.append(tuple(args[2]))
        return real_bilinear(*args, **kwargs)

    monkeypatch.setattr(selftrain, "prototype_labels_bilinear", spy_bilinear)
    init = make_checkpoint(tmp_path / "warm.safetensors")
    manifest = generate_pseudo_labels(init, tiny_cfg.target, tmp_path / "pseudo", tiny_cfg)
    centroids = compute_centroids(init, manifest, tmp_path / "centroids.safetensors", tiny_cfg)
    cfg = tiny_cfg.replace(init=str(init), pseudo_labels=str(manifest), centroids=str(centroids), steps=1,
                           target_mix_ignore=setting, select_upsample=upsample, eval_every=0, vis_every=0, ckpt_every=0)
    trainer = selftrain.SelfTrainer(cfg, tmp_path / "selftrain")
    trainer.pseudo_batches = infinite_loader(trainer.pseudo_set, cfg, 0, salt=2)
    trainer.source, trainer.target = trainer.branch.loaders(0)
    losses = trainer.optimization_step(0)
    assert all(torch.isfinite(v) for v in losses.values())
    assert seen == [paste]
    # the bilinear prototype labels are made at the pseudo-labelled crop's size
    assert bilinear_calls == ([tuple(cfg.crop)] if upsample == "bilinear" else [])


def test_the_setting_is_a_documented_choice_that_older_config_files_do_without():
    from diga.engine import benchmark

    assert preset("paper").target_mix_ignore == "paste"
    assert [preset(p).target_mix_ignore for p in ("cpu", "gpu", "paper-dg", "paper-semi")] == ["keep"] * 4
    with pytest.raises(ConfigError, match="target_mix_ignore must be one of paste, keep"):
        preset("cpu").replace(target_mix_ignore="drop").validate()
    old = "\n".join(line for line in preset("cpu").to_yaml().splitlines()
                    if not line.startswith("target_mix_ignore:"))
    assert StageConfig.from_yaml(old).target_mix_ignore == "keep"
    assert "target_mix_ignore" in benchmark._BOOKKEEPING  # supervised references never read it


# --- dynamic selection's prototype labels -------------------------------------------------------

# One feature channel; class 2 has never been seen (its stored centroid 7 is not used).
CENTROIDS = torch.tensor([[10.0], [4.0], [7.0]])
VALID = torch.tensor([True, True, False])
FEATS = torch.tensor([1.0, 9.0]).view(1, 1, 1, 2)  # two feature pixels


def _softmax(xs):
    es = [math.exp(x - max(xs)) for x in xs]
    return [e / sum(es) for e in es]


def test_bilinear_prototype_labels_match_a_hand_computation():
    # distances to the centroids 10, 4 and 0 (the unseen class counts as a zero vector)
    w_a, w_b = _softmax([-9.0, -3.0, -1.0]), _softmax([-1.0, -5.0, -9.0])
    expected = []
    for x in range(4):  # 4 output pixels from 2, corners aligned: source position x / 3
        t = x / 3
        w = [(1 - t) * a + t * b for a, b in zip(w_a, w_b)]
        expected.append(max(range(3), key=w.__getitem__))
    assert expected == [2, 2, 0, 0]  # the unseen class wins near the first pixel
    got = prototype_labels_bilinear(FEATS, CENTROIDS, (1, 4), VALID)
    assert got.tolist() == [[expected]]
    # the nearest valid centroid, nearest-upsampled: class 1 there, never the unseen class
    assert prototype_labels(FEATS, CENTROIDS, VALID).tolist() == [[[1, 0]]]


def test_bilinear_prototype_labels_move_the_boundary_towards_the_less_confident_pixel():
    cents, valid = torch.tensor([[1.0], [9.0]]), torch.tensor([True, True])
    feats = torch.tensor([0.0, 5.5]).view(1, 1, 1, 2)  # class 0 by far; class 1, but barely
    w_a, w_b = _softmax([-1.0, -9.0]), _softmax([-4.5, -3.5])
    expected = []
    for x in range(6):
        t = x / 5
        expected.append(0 if (1 - t) * w_a[0] + t * w_b[0] >= (1 - t) * w_a[1] + t * w_b[1] else 1)
    assert expected == [0, 0, 0, 0, 1, 1]
    assert prototype_labels_bilinear(feats, cents, (1, 6), valid).tolist() == [[expected]]
    # the nearest centroid at the feature resolution, nearest-upsampled, splits in the middle
    proto = prototype_labels(feats, cents, valid)
    assert select_dynamic(torch.ones(1, 1, 6, dtype=torch.long), proto).tolist() == [[[I, I, I, 1, 1, 1]]]


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_dynamic_selection_keeps_the_pseudo_labels_the_chosen_prototype_labels_agree_with(mode):
    from types import SimpleNamespace

    from diga.engine.selftrain import SelfTrainer

    fake = SimpleNamespace(cfg=SimpleNamespace(selection="dynamic", select_upsample=mode),
                           centroids=CENTROIDS, centroid_valid=VALID)
    pseudo = torch.tensor([[[2, 1, 0, 0]]])
    kept = SelfTrainer.select(fake, pseudo, torch.zeros(1, 3, 1, 2), FEATS)
    expected = [[[2, I, 0, 0]]] if mode == "bilinear" else [[[I, 1, 0, 0]]]
    assert kept.tolist() == expected


def test_select_upsample_is_a_documented_choice_that_older_config_files_do_without():
    from diga.engine import benchmark

    assert preset("paper").select_upsample == "bilinear"
    assert [preset(p).select_upsample for p in ("cpu", "gpu", "paper-dg", "paper-semi")] == ["nearest"] * 4
    with pytest.raises(ConfigError, match="select_upsample must be one of bilinear, nearest"):
        preset("cpu").replace(select_upsample="bicubic").validate()
    old = "\n".join(line for line in preset("cpu").to_yaml().splitlines()
                    if not line.startswith("select_upsample:"))
    assert StageConfig.from_yaml(old).select_upsample == "nearest"
    assert "select_upsample" in benchmark._BOOKKEEPING
