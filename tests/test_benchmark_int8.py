"""benchmarks/int8.py still runs (tiny CPU settings); its numbers live in docs/BENCHMARKS.md."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_checkpoint

pytest.importorskip("onnxruntime")

ROOT = Path(__file__).resolve().parents[1]


def test_int8_benchmark_runs_on_cpu(tiny_bench, tmp_path):
    ckpt = make_checkpoint(tmp_path / "m.safetensors", seed=4)
    frames = Path(tiny_bench["target"].split(":", 1)[1]) / "leftImg8bit" / "train"
    out = tmp_path / "int8.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/int8.py"), str(ckpt), "--data", tiny_bench["val"], "--calib",
         str(frames), "--calib-images", "4", "--max-images", "2", "--batches", "1", "--warmup", "0", "--iters", "2",
         "--sweep-iters", "2", "--only", "default", "per-tensor", "--json", str(out)],
        capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    facts = json.loads(out.read_text())
    variants = [r["variant"] for r in facts["sweep"]]
    assert variants[0] == "fp32 ONNX Runtime" and variants[1].startswith("default")
    assert "per-tensor weights" in variants and len(variants) == 4  # + the graph optimisation levels row
    assert [r["backend"] for r in facts["table"]] == ["PyTorch eager fp32", "ONNX Runtime fp32",
                                                      "ONNX Runtime INT8 (QDQ)"]
    assert all(r["images_per_s"] > 0 and 0 <= r["miou"] <= 100 for r in facts["table"])
    assert "| ONNX Runtime INT8 (QDQ) | 1 |" in proc.stdout
