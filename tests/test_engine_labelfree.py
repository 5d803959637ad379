"""Label-free signals: hand-made models with known outputs, and the per-stage records."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from diga.engine.labelfree import (
    describe,
    fixed_indices,
    handed_on_signals,
    label_free_signals,
    read_stage_signals,
)


class Halves(nn.Module):
    """4x4 outputs for any input: class 0 on the left half, class 1 on the right (3 classes);
    features [1,0] on the left, [0,1] on the right. ``margin`` 0 gives uniform logits."""

    def __init__(self, margin: float = 50.0, left: int = 0, right: int = 1) -> None:
        super().__init__()
        self.margin, self.left, self.right = margin, left, right

    def forward(self, x):
        b = x.shape[0]
        logits = torch.zeros(b, 3, 4, 4)
        logits[:, self.left, :, :2] = self.margin
        logits[:, self.right, :, 2:] = self.margin
        feats = torch.zeros(b, 2, 4, 4)
        feats[:, 0, :, :2] = 1.0
        feats[:, 1, :, 2:] = 1.0
        return logits, feats


IMAGES = torch.zeros(3, 3, 8, 8, dtype=torch.uint8)  # 3 images, batches of 2 then 1


def test_confident_model_matching_its_centroids_and_teacher():
    centroids = torch.tensor([[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]])
    s = label_free_signals(Halves(), IMAGES, 3, source_distribution=torch.tensor([1.0, 0.0, 0.0]),
                           teacher=Halves(), centroids=centroids, batch_size=2)
    assert s["entropy"] == pytest.approx(0.0, abs=1e-4)
    assert s["teacher_agreement"] == 1.0
    assert s["prototype_agreement"] == 1.0
    assert s["class_drift"] == pytest.approx(1.0)  # shares (0.5, 0.5, 0) vs (1, 0, 0)


def test_uniform_model_disagreeing_teacher_and_swapped_centroids():
    swapped = torch.tensor([[0.0, 1.0], [1.0, 0.0], [5.0, 5.0]])
    s = label_free_signals(Halves(margin=0.0), IMAGES, 3, teacher=Halves(left=2, right=1), centroids=swapped)
    assert s["entropy"] == pytest.approx(1.0)
    # uniform logits: argmax is class 0 everywhere; the teacher says 2 on the left, 1 on the right
    assert s["teacher_agreement"] == 0.0
    # nearest centroids: 1 on the left, 0 on the right; the argmax 0 agrees on the right half only
    assert s["prototype_agreement"] == pytest.approx(0.5)
    assert "class_drift" not in s  # no source distribution given


def test_centroids_of_the_own_predictions_when_none_are_given():
    s = label_free_signals(Halves(), IMAGES, 3)
    assert s["prototype_agreement"] == 1.0
    assert "teacher_agreement" not in s


def test_modes_are_restored():
    model, teacher = Halves().train(), Halves().eval()
    label_free_signals(model, IMAGES, 3, teacher=teacher)
    assert model.training and not teacher.training


def test_fixed_subset_is_spread_and_stable():
    assert fixed_indices(5, 64) == [0, 1, 2, 3, 4]
    assert fixed_indices(400, 4) == [0, 100, 200, 300]
    assert fixed_indices(400) == fixed_indices(400)


def test_signals_of_the_handed_on_step(tmp_path):
    rows = [{"step": 2, "loss": 1.0}, {"step": 2, "val_miou": 5.0, "label_free_entropy": 0.7},
            {"step": 4, "val_miou": 3.0, "label_free_entropy": 0.4, "label_free_class_drift": 0.2}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert read_stage_signals(tmp_path, 4) == {"entropy": 0.4, "class_drift": 0.2}
    assert handed_on_signals(tmp_path, {"selected": "last", "steps": 4, "best": {"step": 2}}) == {
        "entropy": 0.4, "class_drift": 0.2}
    assert handed_on_signals(tmp_path, {"selected": "best", "steps": 4, "best": {"step": 2}}) == {"entropy": 0.7}
    assert describe({"class_drift": 0.2, "entropy": 0.4}) == "entropy 0.40 · drift 0.20"
    assert describe({}) == "—"


def test_warmup_logs_signals_next_to_miou(tiny_cfg, tmp_path):
    from diga.engine.warmup import WarmupTrainer

    WarmupTrainer(tiny_cfg.replace(steps=2, eval_every=1, vis_every=0), tmp_path / "w").run()
    evals = [json.loads(line) for line in (tmp_path / "w/metrics.jsonl").read_text().splitlines()]
    evals = [r for r in evals if "val_miou" in r]
    assert [r["step"] for r in evals] == [1, 2]
    for r in evals:
        assert 0.0 <= r["label_free_entropy"] <= 1.0
        assert 0.0 <= r["label_free_teacher_agreement"] <= 1.0  # the warm-up distils from a teacher
        assert 0.0 <= r["label_free_prototype_agreement"] <= 1.0
        assert 0.0 <= r["label_free_class_drift"] <= 2.0


def test_without_target_labels_the_signals_are_still_logged(tiny_cfg, tmp_path):
    """A user adapting to footage of their own has no --val: the signals are all they can see."""
    from diga.engine.metrics_log import read_metrics
    from diga.engine.warmup import WarmupTrainer

    result = WarmupTrainer(tiny_cfg.replace(steps=2, eval_every=1, vis_every=0, val=None), tmp_path / "w").run()
    points = [r for r in read_metrics(tmp_path / "w") if "label_free_entropy" in r]
    assert [r["step"] for r in points] == [1, 2]
    assert not any("val_miou" in r for r in points)
    assert result.metrics["final"] == {}


def test_the_stages_of_a_run_read_the_label_free_subset_once(tiny_cfg, monkeypatch):
    """Each stage used to decode its own 64 target images and source labels again."""
    from types import SimpleNamespace

    from diga.classes import get_label_space
    from diga.data.transforms import INPUT_NORMS
    from diga.engine import labelfree

    labelfree._stage_inputs.cache_clear()
    calls = []
    real = labelfree.load_subset
    monkeypatch.setattr(labelfree, "load_subset", lambda *a, **kw: calls.append(a) or real(*a, **kw))
    space = get_label_space(tiny_cfg.label_space)
    stages = [SimpleNamespace(cfg=tiny_cfg, space=space, model=Halves(), teacher=None, device=torch.device("cpu"),
                              amp=None, norm=INPUT_NORMS["imagenet"]) for _ in range(3)]
    signals = [labelfree.stage_signals(stage) for stage in stages]
    assert len(calls) == 1
    assert signals[0] == signals[2] and {"label_free_entropy", "label_free_class_drift"} <= set(signals[0])
