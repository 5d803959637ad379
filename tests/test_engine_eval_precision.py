"""Evaluation outside training runs in the configured precision: `diga generalize`, the before/after
scores of `diga adapt`'s report and `diga evaluate --amp` hand their ``amp`` to the autocast choice."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from conftest import make_checkpoint

from diga.engine import generalization, report, runtime
from diga.engine.evaluation import evaluate_checkpoint
from diga.errors import ConfigError


@pytest.fixture()
def precisions(monkeypatch) -> list[str]:
    """Every ``amp`` handed to runtime.amp_dtype; the model then runs in fp32 whatever was asked (on the
    CPU the precision cannot be told apart by device, only by what was asked for)."""
    asked: list[str] = []

    def spy(device: torch.device, amp: str) -> None:
        asked.append(amp)
        return None

    monkeypatch.setattr(runtime, "amp_dtype", spy)
    return asked


@pytest.fixture()
def ckpt(tmp_path):
    return make_checkpoint(tmp_path / "m.safetensors")


def test_generalize_scores_in_the_runs_precision(tiny_cfg, tiny_bench, ckpt, tmp_path, monkeypatch, precisions):
    stage = SimpleNamespace(weights=ckpt, metrics={"selected": "last"})  # what run_stage returns, in short
    monkeypatch.setattr(generalization, "run_stage", lambda *args, **kwargs: stage)
    cfg = tiny_cfg.replace(target=None, amp="bf16", eval_scales=(1.0,))
    result = generalization.generalize(cfg, tmp_path / "g", [tiny_bench["val"], tiny_bench["source_val"]])
    assert len(result.rows) == 2 and precisions == ["bf16", "bf16"]


def test_the_reports_before_and_after_scores_take_the_runs_precision(tiny_cfg, ckpt, precisions):
    cfg = tiny_cfg.replace(amp="fp16", eval_scales=(1.0,))
    metrics, _, _ = report._evaluate_pair(ckpt, ckpt, cfg.val, cfg)
    assert set(metrics) == {"before", "after"} and precisions == ["fp16", "fp16"]


def test_diga_evaluate_takes_amp(cli, tiny_bench, ckpt, precisions):
    args = ("evaluate", ckpt, "--data", tiny_bench["val"], "--scales", "1.0", "--mode", "whole", "--device", "cpu")
    r = cli(*args, "--amp", "fp32")
    assert r.exit_code == 0, r.output
    r = cli(*args)
    assert r.exit_code == 0, r.output
    assert precisions == ["fp32", "auto"]  # not given: auto, as before the option existed
    r = cli(*args, "--amp", "fp8")
    assert r.exit_code == 2 and "--amp" in r.output and "fp32" in r.output and precisions == ["fp32", "auto"]


def test_evaluate_checkpoint_refuses_an_unknown_precision(tiny_bench, ckpt, precisions):
    with pytest.raises(ConfigError, match="--amp must be one of auto, bf16, fp16, fp32"):
        evaluate_checkpoint(ckpt, tiny_bench["val"], amp="half", device="cpu")
    assert precisions == []
