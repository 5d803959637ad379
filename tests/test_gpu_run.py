"""The one-call GPU script (benchmarks/gpu_run.sh), rehearsed on the CPU so that a GPU call cannot
fail on a typo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU refusal; this machine has a GPU")
def test_gpu_run_without_a_gpu_says_so_and_fails(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks/gpu_run.py"), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    report = json.loads((tmp_path / "gpu_run.json").read_text())
    assert report["mode"] == "gpu" and report["steps"][0]["status"] == "failed"
    assert "--cpu-smoke" in report["steps"][0]["error"]


@pytest.mark.slow
def test_gpu_run_cpu_smoke_runs_every_step(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    proc = subprocess.run(["bash", str(ROOT / "benchmarks/gpu_run.sh"), str(out), "--cpu-smoke", "--budget", "1500"],
                          capture_output=True, text=True, timeout=1800, env=env)
    report = json.loads((out / "gpu_run.json").read_text())
    steps = {s["step"]: s for s in report["steps"]}
    assert proc.returncode == 0, (proc.stdout[-3000:], [s for s in report["steps"] if s["status"] != "ok"])
    assert list(steps) == ["pytest_gpu", "train_step", "train_step_accumulate3", "inference", "adapt_bf16",
                           "adapt_fp32", "warmup_kill_resume", "tensorrt_check"]
    assert all(s["status"] == "ok" for s in steps.values())
    assert [r["config"].split(" ")[0] for r in steps["train_step"]["result"]["rows"]] == ["fp32", "fast"]
    backends = [r["backend"] for r in steps["inference"]["result"]]
    assert "eager fp32 (TF32 convs)" in backends and "eager bf16 autocast" in backends
    assert isinstance(report["adapt_bf16_minus_fp32"], float)
    assert "resuming warmup from step" in (out / "gpu_run.log").read_text()
