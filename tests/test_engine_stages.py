"""The training stages on a tiny synthetic benchmark: artefacts, resume, ablation switches."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from diga.checkpoint import load_model, read_metadata
from diga.engine.loaders import infinite_loader
from diga.engine.pipeline import adapt
from diga.engine.supervised import SupervisedTrainer
from diga.engine.trainer import RunExistsError
from diga.engine.warmup import WarmupTrainer


def _metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_supervised_training_writes_run_directory(tiny_cfg, tmp_path):
    result = SupervisedTrainer(tiny_cfg.replace(source=tiny_cfg.target), tmp_path / "oracle").run()
    run = tmp_path / "oracle"
    for name in ("config.yaml", "metrics.jsonl", "summary.json", "weights/last.safetensors",
                 "weights/last.json", "weights/best.safetensors"):
        assert (run / name).exists(), name
    rows = _metrics(run)
    assert [r["step"] for r in rows if "loss" in r] == [2, 4]
    assert all(r["loss"] > 0 for r in rows if "loss" in r)
    assert any("val_miou" in r for r in rows)
    meta = read_metadata(result.weights)
    assert meta["architecture"] == "deeplabv2_light" and meta["num_classes"] == 19
    assert meta["classes"][13] == "car" and meta["palette"][0] == [128, 64, 128]
    model, _ = load_model(result.weights)
    assert model(torch.zeros(1, 3, 64, 128))[0].shape[1] == 19


def test_warmup_produces_every_artefact(tiny_cfg, tmp_path):
    run = tmp_path / "warmup"
    WarmupTrainer(tiny_cfg, run).run()
    for tag in ("last", "best", "last_teacher", "best_teacher"):
        assert (run / "weights" / f"{tag}.safetensors").exists(), tag
    assert sorted(p.name for p in (run / "vis").glob("*.png")) == ["step_0000002.png", "step_0000004.png"]
    rows = [r for r in _metrics(run) if "loss" in r]
    assert {"seg", "distil", "loss", "lr", "images_per_s"} <= set(rows[0])
    evals = [r for r in _metrics(run) if "val_miou" in r]
    assert evals and "val_miou_teacher" in evals[0]


def test_existing_run_needs_resume(tiny_cfg, tmp_path):
    WarmupTrainer(tiny_cfg.replace(steps=2), tmp_path / "w").run()
    with pytest.raises(RunExistsError, match="--resume"):
        WarmupTrainer(tiny_cfg.replace(steps=2), tmp_path / "w")


class _Interrupted(Exception):
    pass


@pytest.mark.parametrize("switches", ["earlier", "authors"])
def test_interrupted_warmup_resumes_to_identical_weights(tiny_cfg, tmp_path, switches):
    """A run stopped after its step-2 checkpoint and resumed ends bit-identical to an unbroken run
    (with this package's earlier choices and with the authors' ones, as in the paper preset)."""
    from diga.engine.config import EARLIER_CHOICES, preset

    cfg = tiny_cfg.replace(eval_every=0, vis_every=0)
    if switches == "authors":
        cfg = cfg.replace(**{k: getattr(preset("paper"), k) for k in EARLIER_CHOICES})
    WarmupTrainer(cfg, tmp_path / "straight").run()

    class Crashing(WarmupTrainer):
        def train_step(self, step):
            if step == 3:
                raise _Interrupted
            return super().train_step(step)

    with pytest.raises(_Interrupted):
        Crashing(cfg, tmp_path / "broken").run()
    resumed = WarmupTrainer(cfg, tmp_path / "broken", resume=True)
    assert resumed.start_step == 2
    resumed.run()
    for name in ("last.safetensors", "last_teacher.safetensors"):
        a = load_file(tmp_path / "straight" / "weights" / name)
        b = load_file(tmp_path / "broken" / "weights" / name)
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), name


@pytest.mark.parametrize("distil,mix", [(False, False), (True, False), (False, True)])
def test_ablation_switches(tiny_cfg, tmp_path, distil, mix):
    trainer = WarmupTrainer(tiny_cfg.replace(distil=distil, mix=mix, steps=2, eval_every=0), tmp_path / "a")
    assert (trainer.teacher is not None) == distil
    trainer.run()
    keys = set(_metrics(tmp_path / "a")[0])
    assert ("distil" in keys) == distil
    assert ("seg_mix" in keys) == (mix and not distil)


def test_adapt_pipeline_artefacts_and_resume(tiny_cfg, tmp_path):
    run = tmp_path / "adapt"
    result = adapt(tiny_cfg, run)
    for name in ("warmup/summary.json", "round1/pseudo/manifest.json", "round1/centroids.safetensors",
                 "round1/selftrain/summary.json", "final.safetensors", "before.safetensors", "results.json",
                 "report.md", "figures/curves.png", "figures/iou.png", "figures/predictions.png"):
        assert (run / name).exists(), name
    manifest = json.loads((run / "round1/pseudo/manifest.json").read_text())
    assert manifest["count"] == 8 and len(list((run / "round1/pseudo/labels").glob("*.png"))) == 8
    rows = [json.loads(x) for x in (run / "round1/selftrain/metrics.jsonl").read_text().splitlines()]
    kept = [r for r in rows if "kept_fraction" in r]
    assert kept and 0.0 <= kept[0]["kept_fraction"] <= 1.0 and "kept_accuracy" in kept[0]
    assert [name for name, _ in result.rows] == ["warm-up", "self-training round 1 (dynamic)"]
    assert read_metadata(run / "final.safetensors")["before_adaptation"] == "before.safetensors"
    # Re-running the same command skips every finished stage.
    stamp = (run / "warmup/summary.json").stat().st_mtime_ns
    again = adapt(tiny_cfg, run)
    assert (run / "warmup/summary.json").stat().st_mtime_ns == stamp
    assert again.rows == result.rows


def test_adapt_resumes_inside_an_interrupted_stage(tiny_cfg, tmp_path, monkeypatch):
    from diga.engine import selftrain

    run = tmp_path / "adapt"
    original = selftrain.SelfTrainer.train_step

    def crash_at_step_2(self, step):
        if step == 2:
            raise _Interrupted
        return original(self, step)

    monkeypatch.setattr(selftrain.SelfTrainer, "train_step", crash_at_step_2)
    with pytest.raises(_Interrupted):
        adapt(tiny_cfg, run)
    assert (run / "warmup/summary.json").exists()
    assert not (run / "round1/selftrain/summary.json").exists()
    monkeypatch.setattr(selftrain.SelfTrainer, "train_step", original)
    trainer_steps = []
    real_init = selftrain.SelfTrainer.__init__

    def spy(self, *a, **kw):
        real_init(self, *a, **kw)
        trainer_steps.append(self.start_step)

    monkeypatch.setattr(selftrain.SelfTrainer, "__init__", spy)
    adapt(tiny_cfg, run)
    assert trainer_steps == [2]  # continued from the step-2 checkpoint, not from scratch
    assert (run / "final.safetensors").exists()


def test_gradient_accumulation_matches_the_full_batch_step(tiny_cfg, tmp_path):
    """accumulate=2 (two micro-batches of 1) gives the update of one batch of 2.

    BatchNorm and dropout are put in eval mode so that both runs compute the same function; the
    only remaining difference is the per-micro-batch mean over non-ignored pixels.
    """
    cfg = tiny_cfg.replace(source=tiny_cfg.target, eval_every=0, vis_every=0, ckpt_every=0)
    updates = {}
    for accumulate in (1, 2):
        trainer = SupervisedTrainer(cfg.replace(accumulate=accumulate), tmp_path / f"acc{accumulate}")
        for m in trainer.model.modules():
            if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.Dropout2d)):
                m.eval()
        before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
        trainer.batches = infinite_loader(trainer.train_set, trainer.cfg, 0)
        losses = trainer.optimization_step(0)
        assert torch.isfinite(losses["loss"])
        after = trainer.model.state_dict()
        updates[accumulate] = torch.cat([(after[k] - before[k]).flatten() for k in before
                                         if before[k].is_floating_point()])
    full, accumulated = updates[1], updates[2]
    assert full.norm() > 0
    assert (accumulated - full).norm() < 0.01 * full.norm()


def test_accumulate_must_divide_the_batch(tiny_cfg):
    with pytest.raises(ValueError, match="accumulate must divide batch_size"):
        tiny_cfg.replace(batch_size=3, accumulate=2).validate()


def test_teacher_runs_in_inference_mode_and_student_with_autograd(tiny_cfg, tmp_path):
    # no evaluation; without the target BatchNorm pass, whose student forward is gradient-free by design
    # (tests/test_engine_paper_switches.py)
    cfg = tiny_cfg.replace(steps=1, val=None, eval_every=0, vis_every=0, ckpt_every=0, warmup_target_bn=False)
    trainer = WarmupTrainer(cfg, tmp_path / "w")
    modes = {"teacher": [], "student": []}
    trainer.teacher.module.register_forward_hook(
        lambda *_: modes["teacher"].append(torch.is_inference_mode_enabled()))
    # The student's training forwards (the final label-free signals run it in eval mode, no grad).
    trainer.model.register_forward_hook(
        lambda m, *_: modes["student"].append(torch.is_grad_enabled()) if m.training else None)
    trainer.run()
    assert modes["teacher"] and all(modes["teacher"])
    assert modes["student"] and all(modes["student"])


def test_an_evaluation_pass_leaves_the_global_rng_alone(tiny_cfg):
    from diga.engine.loaders import eval_dataset, eval_loader

    before = torch.get_rng_state()
    for _ in eval_loader(eval_dataset(tiny_cfg.val, tiny_cfg), workers=0):
        pass
    assert torch.equal(before, torch.get_rng_state())


def test_evaluating_during_warmup_does_not_change_the_training(tiny_cfg, tmp_path):
    """Dropout draws from torch's global RNG: evaluating every step must not shift its stream."""
    quiet = tiny_cfg.replace(eval_every=0, vis_every=0)
    WarmupTrainer(quiet, tmp_path / "quiet").run()
    WarmupTrainer(quiet.replace(eval_every=1), tmp_path / "evaluating").run()
    a = load_file(tmp_path / "quiet" / "weights" / "last.safetensors")
    b = load_file(tmp_path / "evaluating" / "weights" / "last.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
