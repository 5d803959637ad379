"""The class centroids between the stages as the authors make them (docs/METHOD.md, section 7): the
pixels chosen by the model's own single-scale argmax (--centroid-labels argmax) rather than the stored
pseudo-labels, computed once from the warm-up model and kept for every self-training round
(--centroids-per-round keep); and fp32 in the paper presets, as the authors' scripts train."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from rich.console import Console
from safetensors import safe_open
from safetensors.torch import load_file

from diga.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from diga.engine import benchmark, pipeline, pseudolabels
from diga.engine.config import StageConfig, preset
from diga.engine.trainer import StageResult
from diga.errors import ConfigError
from tests.conftest import make_checkpoint, stage_configs

# --- which pixels a centroid averages ------------------------------------------------------------


class ColumnModel(torch.nn.Module):
    """At 1/8 of the input: a 1-d feature equal to the column index, and logits that predict class 0
    in the left half of the grid and class 1 in the right half."""

    feature_dim = 1

    def forward(self, x):
        b, _, h, w = x.shape
        h, w = h // 8, w // 8
        columns = torch.arange(w, dtype=torch.float32).expand(b, 1, h, w)
        logits = torch.zeros(b, 19, h, w)
        logits[:, 0, :, : w // 2] = 1.0
        logits[:, 1, :, w // 2:] = 1.0
        return logits, columns


def _centroids_of(tiny_cfg, tmp_path, monkeypatch, labels: str) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Centroids of ColumnModel over the tiny target images (64x128: an 8x16 feature grid) whose stored
    pseudo-labels say class 3 everywhere, with ``centroid_labels`` = ``labels``."""
    meta = {"label_space": "cityscapes19", "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
    monkeypatch.setattr(pseudolabels, "load_model", lambda weights, device: (ColumnModel(), meta))
    cfg = tiny_cfg.replace(centroid_labels=labels).validate()
    manifest = pseudolabels.generate_pseudo_labels("column-model", cfg.target, tmp_path / "pseudo", cfg)
    for png in (tmp_path / "pseudo" / "labels").glob("*.png"):  # labels other than the model's own argmax
        Image.fromarray(np.full((64, 128), 3, dtype=np.uint8), mode="L").save(png)
    out = pseudolabels.compute_centroids("column-model", manifest, tmp_path / f"{labels}.safetensors", cfg)
    saved = load_file(str(out))
    with safe_open(str(out), "pt") as f:
        recorded = f.metadata()["labels"]
    return saved["centroids"][:, 0], saved["valid"], recorded


def test_argmax_centroids_average_the_pixels_of_the_models_own_prediction(tiny_cfg, tmp_path, monkeypatch):
    centroids, valid, recorded = _centroids_of(tiny_cfg, tmp_path, monkeypatch, "argmax")
    assert valid.nonzero().flatten().tolist() == [0, 1]  # the stored class 3 plays no part
    assert centroids[0].item() == pytest.approx(3.5)  # mean of columns 0..7
    assert centroids[1].item() == pytest.approx(11.5)  # mean of columns 8..15
    assert recorded == "argmax"


def test_pseudo_centroids_average_the_pixels_of_the_stored_labels(tiny_cfg, tmp_path, monkeypatch):
    centroids, valid, recorded = _centroids_of(tiny_cfg, tmp_path, monkeypatch, "pseudo")
    assert valid.nonzero().flatten().tolist() == [3]
    assert centroids[3].item() == pytest.approx(7.5)  # mean of columns 0..15
    assert recorded == "pseudo"


def test_argmax_labels_skip_a_class_with_fewer_than_five_pixels_in_an_image():
    cfg = StageConfig(centroid_labels="argmax")
    logits = torch.zeros(1, 3, 2, 5)
    logits[0, 2, 0, :4] = 1.0  # class 2: 4 pixels; class 0 (ties resolve to it): the other 6
    labels = pseudolabels.centroid_pixel_labels(cfg, logits, torch.full((1, 2, 5), 255))
    from diga.method.prototypes import CentroidAccumulator

    acc = CentroidAccumulator(3, 1, min_pixels=5)
    acc.add(torch.arange(10.0).view(1, 1, 2, 5), labels)
    assert acc.valid.tolist() == [True, False, False]
    assert acc.centroids()[0, 0].item() == pytest.approx((4 + 5 + 6 + 7 + 8 + 9) / 6)


# --- the centroids of each self-training round -----------------------------------------------------


def _rounds(tiny_cfg, tmp_path, monkeypatch, per_round: str) -> tuple[list[StageConfig], Path, Path]:
    """Two self-training rounds from a random 'warm-up' checkpoint, each round's training replaced by
    handing on another random checkpoint: the configs the rounds were given, the run dir, round 1's model."""
    warm = make_checkpoint(tmp_path / "warm.safetensors", seed=0)
    trained = make_checkpoint(tmp_path / "trained.safetensors", seed=1)
    given: list[StageConfig] = []

    def fake_stage(trainer_cls, cfg, run_dir, console=None, wait=False):
        given.append(cfg)
        return StageResult(Path(run_dir), trained, None, {})

    monkeypatch.setattr(pipeline, "run_stage", fake_stage)
    cfg = tiny_cfg.replace(rounds=2, centroids_per_round=per_round).validate()
    run = tmp_path / "run"
    pipeline.self_training_rounds(cfg, warm, run, Console(quiet=True))
    return given, run, trained


def _fresh_centroids(weights: Path, cfg: StageConfig, out: Path) -> torch.Tensor:
    manifest = pseudolabels.generate_pseudo_labels(weights, cfg.target, out.parent / f"{out.stem}-pseudo", cfg)
    return load_file(str(pseudolabels.compute_centroids(weights, manifest, out, cfg)))["centroids"]


def test_keep_starts_every_round_from_the_warm_up_centroids(tiny_cfg, tmp_path, monkeypatch):
    given, run, trained = _rounds(tiny_cfg, tmp_path, monkeypatch, "keep")
    first = run / "round1" / "centroids.safetensors"
    assert [Path(cfg.centroids) for cfg in given] == [first, first]  # named in round 2's config too
    assert not (run / "round2" / "centroids.safetensors").exists()  # no copy
    assert Path(given[1].init) == trained  # round 2 still starts from round 1's model...
    warm_centroids = _fresh_centroids(tmp_path / "warm.safetensors", tiny_cfg, tmp_path / "again.safetensors")
    assert torch.equal(load_file(str(first))["centroids"], warm_centroids)  # ...with the warm-up centroids
    assert not torch.equal(warm_centroids, _fresh_centroids(trained, tiny_cfg, tmp_path / "trained-c.safetensors"))


def test_recompute_gives_each_round_the_centroids_of_its_starting_model(tiny_cfg, tmp_path, monkeypatch):
    given, run, trained = _rounds(tiny_cfg, tmp_path, monkeypatch, "recompute")
    second = run / "round2" / "centroids.safetensors"
    assert [Path(cfg.centroids) for cfg in given] == [run / "round1" / "centroids.safetensors", second]
    expected = _fresh_centroids(trained, tiny_cfg, tmp_path / "trained-c.safetensors")
    assert torch.equal(load_file(str(second))["centroids"], expected)
    assert not torch.equal(load_file(str(given[0].centroids))["centroids"], expected)


def test_a_killed_keep_run_continues_and_a_changed_value_is_refused(cli, tiny_bench, tmp_path):
    args = ["adapt", "--source", tiny_bench["source"], "--target", tiny_bench["target"], "--preset", "cpu",
            "--steps", "1", "--selftrain-steps", "1", "--rounds", "2", "--batch-size", "2", "--crop", "48", "96",
            "--workers", "0", "--eval-every", "0", "--no-references", "--centroid-labels", "argmax",
            "--project", tmp_path, "--name", "kept"]
    assert (r := cli(*args, "--centroids-per-round", "keep")).exit_code == 0, r.text
    run = tmp_path / "adapt" / "kept"
    first = run / "round1" / "centroids.safetensors"
    before = load_file(str(first))["centroids"]
    # as if killed while round 2 labelled its images: no manifest, no self-training yet
    (run / "round2" / "pseudo" / "manifest.json").unlink()
    for path in sorted((run / "round2" / "selftrain").rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    (run / "final.safetensors").unlink()
    assert (r := cli(*args, "--centroids-per-round", "keep")).exit_code == 0, r.text
    round2 = StageConfig.load(run / "round2" / "selftrain" / "config.yaml")
    assert Path(round2.centroids) == first and round2.centroids_per_round == "keep"
    assert not (run / "round2" / "centroids.safetensors").exists()
    assert torch.equal(load_file(str(first))["centroids"], before) and (run / "final.safetensors").exists()
    refused = cli(*args, "--centroids-per-round", "recompute")
    assert refused.exit_code != 0
    assert "centroids_per_round: saved 'keep', now 'recompute'" in refused.text


# --- presets, validation, older files ----------------------------------------------------------------


def test_the_paper_presets_make_centroids_and_train_as_the_authors_do():
    assert [(preset(p).centroid_labels, preset(p).centroids_per_round) for p in ("paper", "paper-semi")] == [
        ("argmax", "keep")] * 2
    for name in ("cpu", "gpu", "paper-dg"):  # paper-dg: no self-training, nothing to choose
        assert (preset(name).centroid_labels, preset(name).centroids_per_round) == ("pseudo", "recompute")
    assert [preset(p).amp for p in ("paper", "paper-dg", "paper-semi")] == ["fp32"] * 3
    assert preset("gpu").amp == "auto"  # bf16 on a recent GPU, as before


def test_the_centroid_settings_are_checked_and_older_config_files_keep_their_meaning():
    with pytest.raises(ConfigError, match="centroid_labels must be one of argmax, pseudo"):
        preset("cpu").replace(centroid_labels="fused").validate()
    with pytest.raises(ConfigError, match="centroids_per_round must be one of keep, recompute"):
        preset("cpu").replace(centroids_per_round="once").validate()
    old = "\n".join(line for line in preset("cpu").to_yaml().splitlines()
                    if not line.startswith(("centroid_labels:", "centroids_per_round:")))
    cfg = StageConfig.from_yaml(old)
    assert (cfg.centroid_labels, cfg.centroids_per_round) == ("pseudo", "recompute")
    assert {"centroid_labels", "centroids_per_round"} <= benchmark._BOOKKEEPING  # supervised runs never read them


def test_the_stage_commands_pass_both_settings_on(tiny_bench, tmp_path, monkeypatch):

    for command in ("selftrain", "adapt"):
        (cfg,) = stage_configs(command, tiny_bench, tmp_path / command, monkeypatch,
                               "--centroid-labels", "argmax", "--centroids-per-round", "keep")
        assert (cfg.centroid_labels, cfg.centroids_per_round) == ("argmax", "keep")


# --- how the image means make a centroid (--centroid-mean) ----------------------------------------


def _authors_replay(vectors: torch.Tensor, passes: int = 5, cap: int = 3000) -> torch.Tensor:
    """The authors' update, literally: m = (m * n + v) / (n + 1), n = min(n + 1, cap), pass after pass."""
    m, n = torch.zeros(vectors.shape[1], dtype=torch.float64), 0
    for _ in range(passes):
        for v in vectors.double():
            if v.sum().item() == 0:
                continue
            m = (m * n + v) / (n + 1)
            n = min(n + 1, cap)
    return m


def test_capped_running_mean_weights_reproduce_the_authors_update():
    from diga.method.prototypes import capped_running_mean_weights

    vectors = torch.randn(700, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    weights = capped_running_mean_weights(700)  # 3500 updates: past the cap of 3000
    assert torch.allclose(weights @ vectors, _authors_replay(vectors), atol=1e-12)
    assert weights[-1] > weights[0]  # later images weigh more past the cap
    cityscapes = capped_running_mean_weights(2975)
    assert 2.5 < (cityscapes[-1] / cityscapes[0]).item() < 2.8  # the figure docs/METHOD.md gives
    small = capped_running_mean_weights(100)  # 500 updates: the plain mean
    assert torch.allclose(small, torch.full((100,), 0.01, dtype=torch.float64))


def _image_batches(values: list[float], zero_at: int | None = None):
    """One 1-d feature map per image, constant at its value, every pixel labelled class 0."""
    for i, v in enumerate(values):
        feature = torch.full((1, 1, 2, 4), 0.0 if i == zero_at else v)
        yield i, feature, torch.zeros(1, 2, 4, dtype=torch.long)


def test_authors_centroids_follow_the_image_order_not_the_arrival_order():
    from diga.method.prototypes import CentroidAccumulator

    values = torch.linspace(0.0, 1.0, 800).tolist()
    in_order = CentroidAccumulator(2, 1, min_pixels=5, mean="authors")
    shuffled = CentroidAccumulator(2, 1, min_pixels=5, mean="authors")
    plain = CentroidAccumulator(2, 1, min_pixels=5)
    batches = list(_image_batches(values, zero_at=5))
    for i, feature, label in batches:
        in_order.add(feature, label, image_ids=[i])
        plain.add(feature, label)
    for i, feature, label in reversed(batches):  # e.g. ranks interleaving their images
        shuffled.add(feature, label, image_ids=[i])
    expected = _authors_replay(torch.tensor([[0.0 if i == 5 else v] for i, v in enumerate(values)]))
    assert in_order.centroids()[0, 0].item() == pytest.approx(expected.item(), abs=1e-6)
    assert shuffled.centroids()[0, 0].item() == pytest.approx(expected.item(), abs=1e-6)
    assert expected.item() > plain.centroids()[0, 0].item() + 0.005  # the later, larger values weigh more
    assert in_order.valid.tolist() == [True, False]


def test_authors_centroids_need_the_image_ids():
    from diga.method.prototypes import CentroidAccumulator

    acc = CentroidAccumulator(2, 1, mean="authors")
    with pytest.raises(ValueError, match="image id"):
        acc.add(torch.ones(1, 1, 2, 4), torch.zeros(1, 2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="mean must be one of once, authors"):
        CentroidAccumulator(2, 1, mean="median")


def test_compute_centroids_hands_each_image_its_position_and_records_the_statistic(
        tiny_cfg, tmp_path, monkeypatch):
    from diga.method import prototypes

    seen: list[int] = []
    add = prototypes.CentroidAccumulator.add

    def recording_add(self, features, labels, image_ids=None):
        seen.extend(image_ids)
        return add(self, features, labels, image_ids)

    monkeypatch.setattr(prototypes.CentroidAccumulator, "add", recording_add)
    meta = {"label_space": "cityscapes19", "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
    monkeypatch.setattr(pseudolabels, "load_model", lambda weights, device: (ColumnModel(), meta))
    cfg = tiny_cfg.replace(centroid_labels="argmax", centroid_mean="authors").validate()
    manifest = pseudolabels.generate_pseudo_labels("column-model", cfg.target, tmp_path / "pseudo", cfg)
    out = pseudolabels.compute_centroids("column-model", manifest, tmp_path / "c.safetensors", cfg)
    n_images = len(list((tmp_path / "pseudo" / "labels").glob("*.png")))
    assert seen == list(range(n_images))
    with safe_open(str(out), "pt") as f:
        assert f.metadata()["mean"] == "authors"
    # a few images: 5 passes stay under the count cap, so the statistic is the plain mean
    assert load_file(str(out))["centroids"][0, 0].item() == pytest.approx(3.5)


def _rank_adds_its_images(rank: int, init_file: str, values: list[float], out: str) -> None:
    """One of two gloo ranks: adds every other image (as compute_centroids shares them out),
    gathers, and saves the centroids."""
    import torch.distributed as dist

    from diga.method.prototypes import CentroidAccumulator

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        acc = CentroidAccumulator(2, 1, min_pixels=5, mean="authors")
        for i, feature, label in list(_image_batches(values))[rank::2]:
            acc.add(feature, label, image_ids=[i])
        acc.all_reduce()
        torch.save(acc.centroids(), f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def test_authors_centroids_gather_every_ranks_images_in_the_sets_order(tmp_path):
    import torch.distributed as dist
    import torch.multiprocessing as mp

    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("gloo backend not available")
    values = torch.linspace(0.0, 1.0, 700).tolist()
    mp.spawn(_rank_adds_its_images, args=(str(tmp_path / "pg"), values, str(tmp_path / "c")), nprocs=2)
    expected = _authors_replay(torch.tensor(values)[:, None])
    for rank in (0, 1):
        assert torch.load(tmp_path / f"c.{rank}")[0, 0].item() == pytest.approx(expected.item(), abs=1e-6)
