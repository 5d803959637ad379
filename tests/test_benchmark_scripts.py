"""The benchmark scripts still run (tiny CPU settings); their numbers live in docs/BENCHMARKS.md."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_train_step_benchmark_runs_on_cpu(tmp_path):
    out = tmp_path / "steps.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/train_step.py"), "--device", "cpu", "--model", "deeplabv2_light",
         "--crop", "48", "96", "--eval-size", "64", "128", "--batch", "2", "--warmup", "0", "--iters", "1",
         "--data", str(tmp_path / "data"), "--json", str(out)],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    import json

    rows = json.loads(out.read_text())["rows"]
    assert [r["config"].split(" ")[0] for r in rows] == ["fp32", "fast"]
    assert all(r["warmup_ms"] > 0 and r["selftrain_ms"] > 0 and r["eval_ms"] > 0 for r in rows)


def test_tensorrt_check_records_every_step(tmp_path):
    """Without TensorRT/GPU the check still finishes and says why nothing was built."""
    import json

    out = tmp_path / "trt.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks/tensorrt_check.py"), "--model", "deeplabv2_light",
                           "--imgsz", "64", "128", "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    facts = json.loads(out.read_text())
    builds = [s for s in facts["steps"] if s["step"].startswith("export ONNX")]
    assert [s["step"].rsplit("(", 1)[1] for s in builds] == ["fp32)", "fp16)"]
    for s in facts["steps"]:
        assert s["status"] in ("ok", "failed")
        if s["status"] == "failed":
            assert s["error"]
    if facts["tensorrt"] is None or facts["gpu"] is None:
        assert all(s["status"] == "failed" and "TensorRT" in s["error"] for s in builds)
