"""The authors' SYNTHIA -> Cityscapes recipe (docs/METHOD.md, the SYNTHIA rows): --preset paper-synthia,
OHEM cross-entropy in the engine, the warm-up's linear-ramp learning rate, per-stage photometric
probabilities and rescale range, and self-training's own batch size."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from conftest import make_checkpoint, stage_configs

from diga.engine.config import PRESETS, StageConfig, preset
from diga.errors import ConfigError

SYNTHIA = {
    "label_space": "synthia16", "loss": "ohem", "ohem_threshold": 0.7, "ohem_min_kept": 100_000,
    "distil_weight": 0.25, "selftrain_distil_weight": 0.25, "distil_reverse_weight": 0.25,
    "steps": 60_000, "selftrain_steps": 80_000, "warmup_lr_schedule": "ramp", "lr": 2.5e-4, "poly_power": 0.9,
    "scale": (1.0, 1.0), "selftrain_scale": (0.7, 1.0), "scale_mode": "axis",
    "jitter_p": 0.7, "grayscale_p": 0.1, "selftrain_jitter_p": 0.5, "selftrain_grayscale_p": 0.3,
    "blend_beta": 0.4, "selftrain_blend_beta": 0.3,
    "batch_size": 4, "selftrain_batch_size": 3, "crop": (512, 896), "crop_retry": 5,
    "source_base_sizes": ((760, 1280, 1), (1140, 1920, 3)), "target_base_sizes": ((512, 1024, 1), (1024, 2048, 3)),
    "selftrain_source_base_sizes": ((760, 1280, 1), (1140, 1920, 2)),
    "selftrain_target_base_sizes": ((512, 1024, 1), (1024, 2048, 2)),
}


def _paths():
    return Path("w.safetensors"), Path("m.json"), Path("c.safetensors")


# --- the preset --------------------------------------------------------------------------------------

def test_paper_synthia_has_every_synthia_value_and_otherwise_the_paper_presets():
    cfg = preset("paper-synthia").validate()
    assert {name: getattr(cfg, name) for name in SYNTHIA} == SYNTHIA
    paper = preset("paper")
    same = [f for f in PRESETS["paper"] if f not in PRESETS["paper-synthia"] or f == "translator"]
    assert same and all(getattr(cfg, f) == getattr(paper, f) for f in same)
    # the GTA5 preset keeps the GTA5 code's values
    assert (paper.loss, paper.warmup_lr_schedule, paper.distil_reverse_weight, paper.jitter_p) == ("ce", "poly", 0.5, 0.5)


def test_the_new_settings_keep_the_earlier_behaviour_everywhere_else():
    for name in ("paper", "paper-dg", "paper-semi", "gpu", "cpu"):
        cfg = preset(name)
        assert (cfg.loss, cfg.warmup_lr_schedule, cfg.selftrain_batch_size) == ("ce", "poly", None)
        # the semi-supervised scripts rescale their pseudo-labelled crops, as the SYNTHIA ones
        assert cfg.selftrain_scale == ((0.7, 1.0) if name == "paper-semi" else None)
        assert (cfg.jitter_p, cfg.grayscale_p, cfg.distil_reverse_weight) == (0.5, 0.3, 0.5)
    # a config file written before these settings existed reads back with them at those values
    old = StageConfig.from_yaml("batch_size: 3\nsteps: 100\n")
    assert (old.loss, old.warmup_lr_schedule, old.selftrain_batch_size, old.distil_reverse_weight) == ("ce", "poly", None, 0.5)


def test_supervised_references_key_on_the_loss_but_not_on_stage_only_settings():
    from diga.engine import benchmark

    assert {"loss", "ohem_threshold", "ohem_min_kept"}.isdisjoint(benchmark._BOOKKEEPING)
    assert {"selftrain_batch_size", "selftrain_scale", "jitter_p", "grayscale_p", "selftrain_jitter_p",
            "selftrain_grayscale_p", "distil_reverse_weight", "warmup_lr_schedule"} <= benchmark._BOOKKEEPING


@pytest.mark.parametrize("overrides,message", [
    ({"loss": "focal"}, "loss must be one of ce, ohem"),
    ({"warmup_lr_schedule": "cosine"}, "warmup_lr_schedule must be one of poly, ramp"),
    ({"ohem_threshold": 1.5}, r"ohem_threshold must be in \[0, 1\]"),
    ({"ohem_min_kept": 0}, "ohem_min_kept must be an integer >= 1"),
    ({"jitter_p": -0.1}, r"jitter_p must be in \[0, 1\]"),
    ({"selftrain_grayscale_p": 2.0}, r"selftrain_grayscale_p must be in \[0, 1\]"),
    ({"distil_reverse_weight": -1.0}, "distil_reverse_weight must be >= 0"),
    ({"selftrain_scale": (1.0, 0.5)}, "selftrain_scale must be 0 < min <= max"),
    ({"selftrain_batch_size": 0}, "selftrain_batch_size must be >= 1"),
])
def test_bad_values_name_the_setting(overrides, message):
    with pytest.raises(ConfigError, match=message):
        preset("cpu").replace(**overrides).validate()


# --- the warm-up's learning rate ---------------------------------------------------------------------

def test_ramp_rises_linearly_from_zero_without_decay_and_poly_is_unchanged():
    from diga.engine.trainer import poly_lr, scheduled_lr

    base, total = 2.5e-4, 60_000
    ramp = [scheduled_lr("ramp", base, step, total, 0.9) for step in (0, 1, 15_000, 30_000, 59_999, 60_000)]
    assert ramp == pytest.approx([0.0, base / total, base / 4, base / 2, base * 59_999 / total, base], rel=1e-12)
    assert scheduled_lr("poly", base, 30_000, total, 0.9) == poly_lr(base, 30_000, total, 0.9) == pytest.approx(
        base * 0.5 ** 0.9)
    with pytest.raises(ValueError, match="poly, ramp"):
        scheduled_lr("cosine", base, 0, total, 0.9)


def test_only_the_warmup_follows_warmup_lr_schedule(tiny_cfg, tmp_path):
    from diga.engine.metrics_log import read_metrics
    from diga.engine.selftrain import SelfTrainer
    from diga.engine.supervised import SupervisedTrainer
    from diga.engine.warmup import WarmupTrainer

    cfg = tiny_cfg.replace(warmup_lr_schedule="ramp", steps=4, log_every=1, eval_every=0, vis_every=0, ckpt_every=0,
                           lr=0.02, head_lr_mult=1.0)
    WarmupTrainer(cfg, tmp_path / "warm").run()
    logged = [r["lr"] for r in read_metrics(tmp_path / "warm") if "lr" in r]
    assert logged == pytest.approx([0.0, 0.005, 0.01, 0.015])
    assert SelfTrainer.lr_schedule == SupervisedTrainer.lr_schedule == "poly"


# --- per-stage values and self-training's batch --------------------------------------------------------

def test_selftrain_config_gives_selftraining_its_own_batch_scale_and_photometric_probabilities():
    from diga.engine.pipeline import selftrain_config, warmup_config

    cfg = preset("paper-synthia").validate()
    st = selftrain_config(cfg, *_paths()).validate()
    assert (st.batch_size, st.scale, st.jitter_p, st.grayscale_p, st.steps) == (3, (0.7, 1.0), 0.5, 0.3, 80_000)
    assert (st.source_base_sizes, st.target_base_sizes) == (SYNTHIA["selftrain_source_base_sizes"],
                                                            SYNTHIA["selftrain_target_base_sizes"])
    warm = warmup_config(cfg)
    assert (warm.batch_size, warm.scale, warm.jitter_p, warm.grayscale_p, warm.steps) == (4, (1.0, 1.0), 0.7, 0.1, 60_000)
    # unset: the warm-up's batch and range, as before these settings existed
    plain = selftrain_config(preset("paper"), *_paths())
    assert (plain.batch_size, plain.scale) == (3, (0.7, 1.0))


def test_stage_photometric_takes_the_stages_probabilities():
    from diga.engine.pipeline import selftrain_config
    from diga.engine.source_branch import stage_photometric

    cfg = preset("paper-synthia")
    warm, st = stage_photometric(cfg), stage_photometric(selftrain_config(cfg, *_paths()))
    assert (warm.jitter_p, warm.grayscale_p, warm.sharpness_p, warm.blur_p) == (0.7, 0.1, 0.3, 0.8)
    assert (st.jitter_p, st.grayscale_p, st.sharpness_p) == (0.5, 0.3, 0.3)
    assert stage_photometric(cfg.replace(generalize=True, target=None, mix=False)).sharpness_p == 0.0


def test_each_stages_base_size_counts_are_checked_against_that_stages_batch():
    cfg = preset("paper-synthia")
    # the warm-up's lists add up to batch_size 4, self-training's to selftrain_batch_size 3
    with pytest.raises(ConfigError, match=r"source_base_sizes \(--source-base-size\): .* batch_size 3"):
        cfg.replace(batch_size=3).validate()
    with pytest.raises(ConfigError, match=r"selftrain_source_base_sizes .* batch_size 4 .*1 \+ 2 = 3"):
        cfg.replace(selftrain_batch_size=4).validate()
    # without lists of its own, self-training would take the warm-up's counts (4) for its 3 crops
    with pytest.raises(ConfigError, match=r"selftrain_source_base_sizes \(--selftrain-source-base-size.*"
                                          r"needs base-size counts of its own"):
        cfg.replace(selftrain_source_base_sizes=None).validate()
    # the same lists with one batch size for both stages are fine again
    cfg.replace(selftrain_source_base_sizes=None, selftrain_target_base_sizes=None, selftrain_batch_size=4).validate()
    with pytest.raises(ConfigError, match="accumulate must divide selftrain_batch_size"):
        preset("cpu").replace(accumulate=2, selftrain_batch_size=3).validate()


# --- the engine ----------------------------------------------------------------------------------------

def test_the_warmup_step_uses_ohem_and_the_reverse_distillation_weight(tiny_cfg, tmp_path, monkeypatch):
    from diga.engine import warmup
    from diga.method import losses

    calls = {"ohem": [], "reverse": []}
    real_ohem, real_distil = losses.ohem_ce, warmup.distillation_from_logits
    monkeypatch.setattr(losses, "ohem_ce", lambda *a, **k: calls["ohem"].append(a[2:]) or real_ohem(*a, **k))
    monkeypatch.setattr(warmup, "distillation_from_logits",
                        lambda *a, **k: calls["reverse"].append(k["reverse_weight"]) or real_distil(*a, **k))
    cfg = tiny_cfg.replace(loss="ohem", ohem_threshold=0.6, ohem_min_kept=50, distil_reverse_weight=0.25, steps=1,
                           eval_every=0, vis_every=0, ckpt_every=0)
    trainer = warmup.WarmupTrainer(cfg, tmp_path / "warm")
    trainer.source, trainer.target = trainer.branch.loaders(0)
    losses_ = trainer.optimization_step(0)
    assert calls == {"ohem": [(0.6, 50)], "reverse": [0.25]}
    assert math.isfinite(losses_["loss"].item())


# --- the commands ----------------------------------------------------------------------------------------

def test_the_stage_commands_pass_the_new_options_on(tiny_bench, tmp_path, monkeypatch):
    ohem = ("--loss", "ohem", "--ohem-threshold", "0.6", "--ohem-min-kept", "50")
    (adapt,) = stage_configs("adapt", tiny_bench, tmp_path, monkeypatch, *ohem, "--warmup-lr-schedule", "ramp",
                             "--selftrain-batch-size", "2")
    assert (adapt.loss, adapt.ohem_threshold, adapt.ohem_min_kept) == ("ohem", 0.6, 50)
    assert (adapt.warmup_lr_schedule, adapt.batch_size, adapt.selftrain_batch_size) == ("ramp", 4, 2)
    (warm,) = stage_configs("warmup", tiny_bench, tmp_path, monkeypatch, *ohem, "--warmup-lr-schedule", "ramp")
    assert (warm.loss, warm.ohem_min_kept, warm.warmup_lr_schedule) == ("ohem", 50, "ramp")
    # diga selftrain runs self-training alone: its --batch-size is that stage's batch
    (st,) = stage_configs("selftrain", tiny_bench, tmp_path, monkeypatch, *ohem, "--batch-size", "2")
    assert (st.loss, st.batch_size, st.selftrain_batch_size) == ("ohem", 2, 2)


def test_diga_warmup_takes_the_synthia_preset_with_its_warmup_batch(tiny_bench, tmp_path, monkeypatch):
    (warm,) = stage_configs("warmup", tiny_bench, tmp_path, monkeypatch, "--preset", "paper-synthia",
                            "--translator", "fda", "--label-space", "cityscapes19")
    # self-training's lists and batch give way to the warm-up's: the preset's 1 + 2 of 3 do not block it
    assert (warm.batch_size, warm.selftrain_batch_size, warm.selftrain_source_base_sizes) == (4, 4, None)
    assert warm.source_base_sizes == SYNTHIA["source_base_sizes"] and warm.loss == "ohem"


# --- which batch a stage runs with, and the base-size lists it reads ------------------------------------

SYNTHIA_OPTIONS = ("--preset", "paper-synthia", "--translator", "fda", "--label-space", "cityscapes19")


def _selftrain(tiny_bench, tmp_path, monkeypatch, *options) -> StageConfig:
    (cfg,) = stage_configs("selftrain", tiny_bench, tmp_path, monkeypatch, *SYNTHIA_OPTIONS, *options)
    return cfg


def _lists(cfg: StageConfig) -> tuple:
    return (cfg.source_base_sizes, cfg.target_base_sizes, cfg.selftrain_source_base_sizes,
            cfg.selftrain_target_base_sizes)


def test_diga_selftrain_takes_the_synthia_preset_with_its_batch_of_3(tiny_bench, tmp_path, monkeypatch):
    own = (SYNTHIA["selftrain_source_base_sizes"], SYNTHIA["selftrain_target_base_sizes"])
    # the preset as it is: self-training's batch 3 and its own lists; the warm-up's (of 4) are not checked
    st = _selftrain(tiny_bench, tmp_path, monkeypatch)
    assert (st.batch_size, st.selftrain_batch_size, _lists(st)) == (3, 3, (None, None, *own))
    # --batch-size 3, the preset's own self-training batch, given explicitly
    st = _selftrain(tiny_bench, tmp_path, monkeypatch, "--batch-size", "3")
    assert (st.batch_size, st.selftrain_batch_size, _lists(st)) == (3, 3, (None, None, *own))


def test_diga_selftrain_base_sizes_are_self_trainings_lists(tiny_bench, tmp_path, monkeypatch):
    # the form the option's help shows: 1 + 2 crops of the batch of 3
    st = _selftrain(tiny_bench, tmp_path, monkeypatch,
                    "--source-base-size", "760x1280:1", "--source-base-size", "1140x1920:2")
    assert (st.batch_size, st.selftrain_batch_size) == (3, 3)
    assert _lists(st) == (None, None, ((760, 1280, 1), (1140, 1920, 2)), SYNTHIA["selftrain_target_base_sizes"])
    # one size without :N takes the whole batch this stage runs with: the preset's 3, or --batch-size
    st = _selftrain(tiny_bench, tmp_path, monkeypatch, "--source-base-size", "1140x1920")
    assert st.selftrain_source_base_sizes == ((1140, 1920, 3),)
    st = _selftrain(tiny_bench, tmp_path, monkeypatch, "--batch-size", "2", "--source-base-size", "1140x1920",
                    "--target-base-size", "1024x2048")
    assert (st.batch_size, _lists(st)) == (2, (None, None, ((1140, 1920, 2),), ((1024, 2048, 2),)))
    # 'none': the whole batch from base_size, not the warm-up's list in its place
    st = _selftrain(tiny_bench, tmp_path, monkeypatch, "--source-base-size", "none")
    assert _lists(st) == (None, None, None, SYNTHIA["selftrain_target_base_sizes"])


def test_diga_selftrain_reads_the_warmups_lists_when_it_has_none_of_its_own(cli, tiny_bench, tmp_path, monkeypatch):
    from diga.engine import pipeline

    # a warm-up's config.yaml keeps the warm-up's lists and batch only: self-training runs with those
    warm = preset("paper-synthia").replace(selftrain_source_base_sizes=(), selftrain_target_base_sizes=(),
                                           selftrain_batch_size=4, source=tiny_bench["source"],
                                           target=tiny_bench["target"], translator="fda", label_space="cityscapes19")
    (tmp_path / "warm.yaml").write_text(warm.validate().to_yaml())
    seen = []

    def stop(cfg, *args, **kwargs):  # the config the command hands on, before anything trains
        seen.append(cfg)
        raise SystemExit(0)

    monkeypatch.setattr(pipeline, "self_train", stop)
    r = cli("selftrain", "--config", tmp_path / "warm.yaml", "--init", make_checkpoint(tmp_path / "w.safetensors"),
            "--project", tmp_path)
    assert r.exit_code == 0, r.output
    (st,) = seen
    assert (st.batch_size, st.selftrain_batch_size) == (4, 4)
    assert _lists(st) == (None, None, SYNTHIA["source_base_sizes"], SYNTHIA["target_base_sizes"])


def test_a_selftrain_base_size_without_count_takes_the_selftrain_batch(tiny_bench, tmp_path, monkeypatch):
    (adapt,) = stage_configs("adapt", tiny_bench, tmp_path, monkeypatch, *SYNTHIA_OPTIONS,
                             "--selftrain-source-base-size", "1140x1920")
    assert (adapt.batch_size, adapt.selftrain_batch_size) == (4, 3)
    assert adapt.selftrain_source_base_sizes == ((1140, 1920, 3),)
    assert adapt.source_base_sizes == SYNTHIA["source_base_sizes"]  # the warm-up's still take its batch of 4
    (adapt,) = stage_configs("adapt", tiny_bench, tmp_path, monkeypatch, *SYNTHIA_OPTIONS,
                             "--selftrain-batch-size", "2", "--selftrain-source-base-size", "1140x1920",
                             "--selftrain-target-base-size", "1024x2048", "--source-base-size", "1140x1920")
    assert (adapt.selftrain_source_base_sizes, adapt.selftrain_target_base_sizes) == (((1140, 1920, 2),),
                                                                                      ((1024, 2048, 2),))
    assert adapt.source_base_sizes == ((1140, 1920, 4),)


def test_stage_batch_size_is_the_batch_each_stage_runs_with():
    from diga.cli.options import stage_batch_size

    assert [stage_batch_size(stage, "paper-synthia", None) for stage in ("warmup", "selftrain")] == [4, 3]
    assert stage_batch_size("warmup", "paper-synthia", None, batch_size=2, selftrain_batch_size=5) == 2
    assert stage_batch_size("selftrain", "paper-synthia", None, batch_size=2, selftrain_batch_size=5) == 5
    assert stage_batch_size("selftrain", "paper-synthia", None, batch_size=2) == 3  # the preset's own
    # a preset without a self-training batch: self-training takes the warm-up's
    assert stage_batch_size("selftrain", "cpu", None, batch_size=2) == 2
    assert stage_batch_size("selftrain", "cpu", None) == preset("cpu").batch_size
