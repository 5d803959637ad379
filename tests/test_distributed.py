"""DDP through the real launcher: 2 CPU processes, gloo backend, the whole pipeline, with resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch.distributed as dist

HELPER = Path(__file__).parent / "helpers" / "ddp_adapt.py"


@pytest.mark.slow
@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="torch.distributed with gloo is not available")
# train: each rank's teacher sees its own batches; separate: two student forwards before one backward
@pytest.mark.parametrize("teacher_mode,student_forward", [("eval", "joint"), ("train", "separate")])
def test_two_ranks_stay_identical_and_resume(tmp_path, teacher_mode, student_forward):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(HELPER), str(tmp_path / "bench"), str(tmp_path), teacher_mode, student_forward]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads((tmp_path / "ranks.json").read_text())
    assert result["world_size"] == 2
    assert result["resumed_from"] == [2]  # rank 0's step-2 checkpoint, on both ranks
    assert result["student_spread"] == 0.0
    assert result["teacher_spread"] == 0.0
    assert result["bn_buffer_spread"] == 0.0
    assert result["centroid_spread"] == 0.0
    assert result["pseudo_label_files"] == 8  # the two ranks together labelled every image
    assert (tmp_path / "run" / "final.safetensors").exists()
