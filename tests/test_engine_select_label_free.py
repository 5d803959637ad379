"""`--select label-free`: a stage hands on its evaluation point with the lowest class drift on the
unlabelled target, with or without target labels, and keeps that choice across a resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from diga.checkpoint import read_metadata
from diga.engine import pipeline
from diga.engine import trainer as trainer_module
from diga.engine.benchmark import _reference_run
from diga.engine.labelfree import handed_on_signals
from diga.engine.pipeline import selected_miou
from diga.engine.warmup import WarmupTrainer


class _Interrupted(Exception):
    pass


def _drifts_by_step(monkeypatch, drifts: dict[int, float], selftrain: dict[int, float] | None = None) -> None:
    """stage_signals as if the student's class drift at evaluation point ``step`` were drifts[step]
    (``selftrain[step]`` in self-training rounds)."""
    evaluate = trainer_module.Trainer.evaluate_and_keep_best

    def tell_step(self, step):
        self.eval_step = step
        return evaluate(self, step)

    def signals(t):
        drift = (selftrain if t.stage == "selftrain" else drifts)[t.eval_step]
        return {"label_free_class_drift": drift, "label_free_entropy": 0.5}

    monkeypatch.setattr(trainer_module.Trainer, "evaluate_and_keep_best", tell_step)
    monkeypatch.setattr(trainer_module, "stage_signals", signals)


def _records(run):
    return {r["step"]: r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
            if "label_free_class_drift" in r}


@pytest.mark.parametrize("labelled_val", [True, False])
@pytest.mark.parametrize("drifts, chosen", [
    ({1: 0.9, 2: 0.2, 3: 0.5, 4: 0.7}, 2),   # a warm-up that peaks before its end
    ({1: 0.5, 2: 0.3, 3: 0.3, 4: 0.8}, 3),   # a tie goes to the later point
    ({1: 0.9, 2: 0.6, 3: 0.5, 4: 0.4}, 4),   # still improving: the last step, as --select last
])
def test_the_stage_hands_on_its_lowest_drift_point(tiny_cfg, tmp_path, monkeypatch, drifts, chosen, labelled_val):
    _drifts_by_step(monkeypatch, drifts)
    cfg = tiny_cfg.replace(select="label-free", eval_every=1, vis_every=0,
                           val=tiny_cfg.val if labelled_val else None)
    result = WarmupTrainer(cfg, tmp_path / "warmup").run()
    summary = result.metrics
    assert summary["selected"] == "label_free" and summary["label_free_best"]["step"] == chosen
    assert summary["label_free_best"]["class_drift"] == drifts[chosen]
    assert result.weights.name == "label_free.safetensors" and result.weights.exists()
    assert read_metadata(result.weights)["step"] == chosen
    assert (result.weights.parent / "label_free_teacher.safetensors").exists()
    assert handed_on_signals(tmp_path / "warmup", summary)["class_drift"] == drifts[chosen]
    records = _records(tmp_path / "warmup")
    assert sorted(records) == [1, 2, 3, 4]
    expected = records[chosen]["val_miou"] if labelled_val else None
    assert selected_miou(summary) == expected


def test_a_resumed_stage_keeps_the_point_it_chose_before_the_stop(tiny_cfg, tmp_path, monkeypatch):
    # Step 1 has the lowest drift; the checkpoint at step 2 must remember it, or the resumed run
    # would hand on step 4 (the lowest of the points it saw itself).
    _drifts_by_step(monkeypatch, {1: 0.4, 2: 0.6, 3: 0.5, 4: 0.45})
    cfg = tiny_cfg.replace(select="label-free", eval_every=1, ckpt_every=2, vis_every=0)

    class Crashing(WarmupTrainer):
        def train_step(self, step):
            if step == 2:  # 0-based: the third step, after the step-2 checkpoint
                raise _Interrupted
            return super().train_step(step)

    with pytest.raises(_Interrupted):
        Crashing(cfg, tmp_path / "warmup").run()
    result = WarmupTrainer(cfg, tmp_path / "warmup", resume=True).run()
    assert result.metrics["label_free_best"]["step"] == 1
    assert read_metadata(result.weights)["step"] == 1


def test_a_stage_without_target_images_refuses_label_free(cli, tiny_bench, tmp_path):
    r = cli("train", "--data", tiny_bench["source"], "--preset", "cpu", "--crop", "48", "96", "--steps", "1",
            "--workers", "0", "--select", "label-free", "--project", tmp_path)
    assert r.exit_code == 1
    assert "--select label-free" in r.text and "no --target" in r.text and "Traceback" not in r.output


def test_the_references_of_a_label_free_run_keep_their_last_step_and_their_cache(tiny_cfg):
    for kind in ("source_only", "oracle"):
        ref_cfg, path = _reference_run(kind, tiny_cfg.replace(select="label-free"), 10)
        assert ref_cfg.select == "last" and ref_cfg.target is None
        assert path == _reference_run(kind, tiny_cfg.replace(select="last"), 10)[1]


def test_adapt_chains_the_chosen_checkpoints_and_the_guard_reads_their_drift(tiny_cfg, tmp_path, monkeypatch):
    _drifts_by_step(monkeypatch, {1: 0.9, 2: 0.2, 3: 0.5, 4: 0.7}, selftrain={1: 0.35, 2: 0.5, 3: 0.45})
    run = tmp_path / "adapt"
    result = pipeline.adapt(tiny_cfg.replace(select="label-free", eval_every=1, vis_every=0, drift_guard=0.3), run)
    round1 = yaml.safe_load((run / "round1/selftrain/config.yaml").read_text())
    assert Path(round1["init"]).resolve() == (run / "warmup/weights/label_free.safetensors").resolve()
    assert read_metadata(run / "final.safetensors")["from"] == "round1/selftrain/weights/label_free.safetensors"
    assert result.final_stage == "self-training round 1 (dynamic)"  # +0.15 drift: within the guard
    results = json.loads((run / "results.json").read_text())
    assert [row["label_free"]["class_drift"] for row in results["rows"]] == [0.2, 0.35]
    assert results["protocol"].endswith("model handed on per stage: label-free")
    report = (run / "report.md").read_text()
    assert "| warm-up | 2 | yes |" in report and "| warm-up | 4 |  |" in report
    assert "| round 1 | 1 | yes |" in report
