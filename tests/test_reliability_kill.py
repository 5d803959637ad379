"""SIGKILL a real `adapt` process mid-step, mid-checkpoint-write and mid-pseudo-labelling; the
re-run must continue from the last complete checkpoint and end bit-identical to an unbroken run
(so step counter, optimiser state, EMA teacher, centroids and RNG were all restored)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from diga.engine.state import load_state

HELPER = Path(__file__).parent / "helpers" / "kill_target.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}


def _run(mode, bench, run, marker):
    return subprocess.Popen([sys.executable, str(HELPER), mode, str(bench), str(run), str(marker)],
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _finish(bench, run, tmp):
    proc = _run("plain", bench, run, tmp / "unused")
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]


def _kill_when(proc, condition, timeout=300):
    deadline = time.time() + timeout
    while not condition():
        assert proc.poll() is None, f"target exited early: {proc.stderr.read()[-3000:]}"
        assert time.time() < deadline, "kill point never reached"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("straight")
    bench = tmp / "bench"
    _finish(bench, tmp / "run", tmp)
    return bench, tmp / "run"


def _assert_same_outcome(a: Path, b: Path):
    for name in ("final.safetensors", "round1/selftrain/weights/last_teacher.safetensors",
                 "round1/selftrain/weights/last_centroids.safetensors"):
        x, y = load_file(a / name), load_file(b / name)
        assert x.keys() == y.keys()
        assert all(torch.equal(x[k], y[k]) for k in x), name
    sa, sb = load_state(a / "round1/selftrain/weights/state.safetensors"), load_state(b / "round1/selftrain/weights/state.safetensors")
    assert sa.step == sb.step == 6
    for group in ("optim", "rng", "centroids"):
        assert all(torch.equal(sa.tensors[group][k], sb.tensors[group][k]) for k in sa.tensors[group]), group


def test_kill_mid_step_resumes_from_last_checkpoint(straight, tmp_path):
    bench, reference = straight
    run, marker = tmp_path / "run", tmp_path / "marker"
    proc = _run("slow_steps", bench, run, marker)
    state = run / "round1/selftrain/weights/state.safetensors"
    _kill_when(proc, lambda: marker.exists() and marker.read_text() == "3")
    assert load_state(state).step == 2  # the last complete checkpoint; step 3 was in flight
    _finish(bench, run, tmp_path)
    _assert_same_outcome(reference, run)


def test_kill_mid_checkpoint_write_keeps_previous_checkpoint(straight, tmp_path):
    bench, reference = straight
    run, marker = tmp_path / "run", tmp_path / "marker"
    proc = _run("block_write", bench, run, marker)
    _kill_when(proc, marker.exists)
    weights = run / "round1/selftrain/weights"
    assert list(weights.glob(".state.safetensors.*.tmp")), "the interrupted write's temp file should be there"
    assert load_state(weights / "state.safetensors").step == 2  # intact previous checkpoint
    _finish(bench, run, tmp_path)
    assert not list(weights.glob(".*.tmp")), "stale temp files are cleaned up on resume"
    _assert_same_outcome(reference, run)


def test_kill_mid_pseudo_labelling_resumes_without_half_files(straight, tmp_path):
    bench, reference = straight
    run, marker = tmp_path / "run", tmp_path / "marker"
    proc = _run("block_pseudo", bench, run, marker)
    _kill_when(proc, marker.exists)
    labels = run / "round1/pseudo/labels"
    assert len(list(labels.glob("*.png"))) == 3 and not (run / "round1/pseudo/manifest.json").exists()
    _finish(bench, run, tmp_path)
    manifest = json.loads((run / "round1/pseudo/manifest.json").read_text())
    assert manifest["count"] == 8
    for item in manifest["items"]:
        assert (labels / item["label"]).read_bytes() == (reference / "round1/pseudo/labels" / item["label"]).read_bytes()
    _assert_same_outcome(reference, run)
