"""Faults around a training run: two runs in one directory, Ctrl-C, runs that learn nothing, and
settings that would hang, crash late or hand on untrained weights."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from diga.engine.state import load_state
from diga.engine.supervised import SupervisedTrainer
from diga.engine.trainer import NonFiniteLossError

HELPER = Path(__file__).parent / "helpers" / "slow_stage.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}


def _config_file(tmp_path, cfg, **changes) -> Path:
    path = tmp_path / f"cfg-{len(list(tmp_path.glob('cfg-*')))}.yaml"
    path.write_text(cfg.replace(**changes).to_yaml())
    return path


def _slow(*args) -> subprocess.Popen:
    """`diga ARGS` with slow steps, in its own process group (as a terminal's Ctrl-C reaches it)."""
    return subprocess.Popen([sys.executable, str(HELPER), *map(str, args)], env=ENV, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for_steps(proc, metrics: Path, n: int = 1, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not (metrics.exists() and len(metrics.read_text().splitlines()) >= n):
        assert proc.poll() is None, f"run exited early: {proc.stdout.read()[-3000:]}"
        assert time.time() < deadline, "the run never logged a step"
        time.sleep(0.1)


def _flat(text: str) -> str:
    """Console output as one spaced line (rich wraps long messages)."""
    return " ".join(text.split())


def _steps(metrics: Path) -> list[int]:
    return [r["step"] for r in map(json.loads, metrics.read_text().splitlines()) if "loss" in r]


# --- one directory, one run ---------------------------------------------------------------------
def test_a_second_run_with_the_same_name_is_refused_then_a_killed_ones_lock_is_taken_over(cli, tiny_cfg, tmp_path):
    config = _config_file(tmp_path, tiny_cfg, source=tiny_cfg.source, steps=40, log_every=1, ckpt_every=0,
                          eval_every=0, vis_every=0, val=None)
    first = _slow("train", "--config", config, "--name", "same", "--project", tmp_path)
    try:
        _wait_for_steps(first, tmp_path / "train/same/metrics.jsonl")
        second = cli("train", "--config", config, "--steps", "2", "--name", "same", "--project", tmp_path)
        assert second.exit_code == 1, second.output
        assert f"pid {first.pid} on host {socket.gethostname()}" in second.text
        assert "another --name" in second.text and "Traceback" not in second.text
        assert first.poll() is None  # the first run goes on untouched
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
    # The killed run left its lock file: it is recognised as stale and taken over.
    assert (tmp_path / "train/same/.lock").exists()
    third = cli("train", "--config", config, "--steps", "2", "--name", "same", "--project", tmp_path)
    assert third.exit_code == 0, third.output
    assert f"pid {first.pid}" in third.text and "no longer running" in third.text
    assert not (tmp_path / "train/same/.lock").exists()  # released at the end


def test_adapt_with_the_name_of_a_running_adapt_is_refused_and_ctrl_c_says_how_to_continue(cli, tiny_cfg, tmp_path):
    config = _config_file(tmp_path, tiny_cfg, steps=40, log_every=1, ckpt_every=0, eval_every=0, vis_every=0)
    first = _slow("adapt", "--config", config, "--name", "same", "--project", tmp_path)
    try:
        _wait_for_steps(first, tmp_path / "adapt/same/warmup/metrics.jsonl")
        second = cli("adapt", "--config", config, "--name", "same", "--project", tmp_path)
        assert second.exit_code == 1, second.output
        assert f"pid {first.pid}" in second.text and "Traceback" not in second.text
        os.killpg(first.pid, signal.SIGINT)
        out, _ = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    assert first.returncode == 130, out[-3000:]
    assert "same --name" in _flat(out) and "Traceback" not in out
    assert load_state(tmp_path / "adapt/same/warmup/weights/state.safetensors").step >= 1


def test_a_stale_lock_with_a_dead_pid_is_taken_over(cli, tiny_cfg, tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run = tmp_path / "train/stale"
    run.mkdir(parents=True)
    (run / ".lock").write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname()}))
    r = cli("train", "--data", tiny_cfg.source, "--preset", "cpu", "--crop", "48", "96", "--steps", "1",
            "--workers", "0", "--name", "stale", "--project", tmp_path)
    assert r.exit_code == 0, r.output
    assert f"pid {dead.pid}" in r.text and "no longer running" in r.text


def test_a_run_lock_is_released_on_an_exception_and_nests_in_one_process(tmp_path):
    from diga.engine.rundir import RunLockedError, run_lock

    with pytest.raises(RuntimeError, match="boom"):
        with run_lock(tmp_path / "r"):
            with run_lock(tmp_path / "r"):  # adapt holds its run while a stage takes its own
                raise RuntimeError("boom")
    assert not (tmp_path / "r/.lock").exists()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from diga.engine.rundir import run_lock\n"
        f"with run_lock({str(tmp_path / 'r')!r}):\n    print('held', flush=True); time.sleep(60)")],
        env=ENV, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunLockedError, match=f"pid {holder.pid}"):
            with run_lock(tmp_path / "r"):
                pass
    finally:
        holder.kill()
        holder.wait()


# --- Ctrl-C -------------------------------------------------------------------------------------
def test_ctrl_c_saves_the_last_completed_step_and_resume_continues_from_it(cli, tiny_cfg, tmp_path):
    # One worker process: a terminal's Ctrl-C reaches it too and must not fail the last step.
    config = _config_file(tmp_path, tiny_cfg, source=tiny_cfg.source, steps=8, log_every=1, ckpt_every=0,
                          eval_every=0, vis_every=0, val=None, workers=1)
    metrics = tmp_path / "train/c/metrics.jsonl"
    proc = _slow("train", "--config", config, "--name", "c", "--project", tmp_path)
    try:
        _wait_for_steps(proc, metrics)
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, out[-3000:]
    saved = load_state(tmp_path / "train/c/weights/state.safetensors").step
    assert 1 <= saved < 8 and saved == _steps(metrics)[-1]  # the step that completed last
    assert f"step {saved} of 8 is saved" in _flat(out) and "--resume" in out
    assert "Traceback" not in out

    r = cli("train", "--config", config, "--name", "c", "--project", tmp_path, "--resume")
    assert r.exit_code == 0, r.output
    assert f"resuming train from step {saved}" in r.text
    assert _steps(metrics) == list(range(1, 9))  # no step lost, none repeated
    assert load_state(tmp_path / "train/c/weights/state.safetensors").step == 8


# --- runs that learn nothing ----------------------------------------------------------------------
def test_a_run_whose_every_step_is_non_finite_hands_on_no_weights(tiny_cfg, tmp_path):
    cfg = tiny_cfg.replace(steps=3, log_every=1, ckpt_every=0, eval_every=0, vis_every=0)

    class AllNaN(SupervisedTrainer):
        def train_step(self, step):
            losses = super().train_step(step)
            losses["loss"] = losses["loss"] * float("nan")
            return losses

    with pytest.raises(NonFiniteLossError, match="every step's loss was NaN/inf"):
        AllNaN(cfg, tmp_path / "nan").run()
    assert not (tmp_path / "nan/summary.json").exists()
    assert not (tmp_path / "nan/weights/last.safetensors").exists()


def test_a_run_ending_on_a_skipped_step_saves_the_weights_it_names(tiny_cfg, tmp_path):
    cfg = tiny_cfg.replace(steps=4, log_every=1, ckpt_every=2, eval_every=0, vis_every=0)

    class LastNaN(SupervisedTrainer):
        def train_step(self, step):
            losses = super().train_step(step)
            if step == 3:
                losses["loss"] = losses["loss"] * float("nan")
            return losses

    result = LastNaN(cfg, tmp_path / "last").run()
    assert result.weights.exists()
    assert load_state(tmp_path / "last/weights/state.safetensors").step == 4


def test_a_huge_learning_rate_fails_instead_of_printing_missing_weights(cli, tiny_cfg, tmp_path):
    r = cli("train", "--data", tiny_cfg.source, "--preset", "cpu", "--crop", "48", "96", "--steps", "3",
            "--workers", "0", "--lr", "1e30", "--name", "huge", "--project", tmp_path)
    assert r.exit_code == 1, r.output
    assert "no weights are handed on" in r.text and "--lr" in r.text and "weights:" not in r.text


# --- settings refused before any work ---------------------------------------------------------------
@pytest.mark.parametrize("args,expected", [
    (["--lr", "inf"], "lr must be a finite number (got inf)"),
    (["--lr", "0"], "lr must be > 0"),
    (["--steps", "0"], "steps must be >= 1 (got 0)"),
    (["--seed", str(2**70)], "seed must be in 0..4294967295"),
    (["--batch-size", "100000"], "--batch-size 100000 is larger than the 8 image(s) of gta5:"),
    (["--name", ".."], "is not a run name"),
    (["--name", "a/b"], "is not a run name"),
])
def test_settings_that_would_hang_or_mislead_are_refused(cli, tiny_bench, tmp_path, args, expected):
    t0 = time.time()
    r = cli("warmup", "--source", tiny_bench["source"], "--target", tiny_bench["target"], "--preset", "cpu",
            "--crop", "48", "96", "--steps", "2", "--workers", "0", "--project", tmp_path, *args)
    assert r.exit_code != 0, r.output
    assert expected in r.text and "Traceback" not in r.text
    assert not list(tmp_path.rglob("*.safetensors"))
    assert time.time() - t0 < 120


def test_zero_self_training_steps_are_refused(cli, tiny_bench, tmp_path):
    r = cli("adapt", "--source", tiny_bench["source"], "--target", tiny_bench["target"], "--preset", "cpu",
            "--selftrain-steps", "0", "--project", tmp_path)
    assert r.exit_code != 0 and "selftrain_steps must be >= 1" in r.text


def test_a_target_folder_smaller_than_a_batch_is_named(cli, tiny_bench, tmp_path):
    images = sorted(Path(tiny_bench["target"].split(":", 1)[1]).rglob("*_leftImg8bit.png"))
    one = tmp_path / "one"
    one.mkdir()
    (one / images[0].name).write_bytes(images[0].read_bytes())
    r = cli("adapt", "--source", tiny_bench["source"], "--target", f"folder:{one}", "--preset", "cpu",
            "--crop", "48", "96", "--steps", "2", "--selftrain-steps", "2", "--workers", "0", "--batch-size", "2",
            "--project", tmp_path)
    assert r.exit_code == 1, r.output
    assert "--batch-size 2" in r.text and f"1 image(s) of folder:{one}" in r.text


def test_select_best_without_labelled_val_data_is_refused(cli, tiny_bench, tmp_path):
    r = cli("train", "--data", tiny_bench["source"], "--preset", "cpu", "--crop", "48", "96", "--steps", "1",
            "--workers", "0", "--select", "best", "--project", tmp_path)
    assert r.exit_code == 1 and "--select best" in r.text and "no --val" in r.text


@pytest.mark.parametrize("line,expected", [
    ("log_every: 0", "log_every must be >= 1"),  # was a ZeroDivisionError at the first step
    ("ema_max: .nan", "ema_max must be a finite number (got nan)"),  # NaN passes every range check
    ("scale: [0.5, .inf]", "scale must be a finite number (got inf)"),
])
def test_config_file_values_that_would_crash_late_are_refused(cli, tiny_cfg, tmp_path, line, expected):
    config = _config_file(tmp_path, tiny_cfg, source=tiny_cfg.source)
    config.write_text(config.read_text() + line + "\n")
    r = cli("train", "--config", config, "--project", tmp_path)
    assert r.exit_code != 0 and expected in r.text and "Traceback" not in r.text


def test_pretrained_imagenet_for_a_model_without_it_is_a_clear_error(cli, tiny_bench, tmp_path):
    r = cli("train", "--data", tiny_bench["source"], "--preset", "cpu", "--crop", "48", "96", "--steps", "1",
            "--workers", "0", "--pretrained", "imagenet", "--project", tmp_path)
    assert r.exit_code == 1 and "--pretrained" in r.text and "Traceback" not in r.text


@pytest.mark.parametrize("in_the_way", ["file", "read-only"])
def test_a_project_folder_that_cannot_be_written_is_named_before_training(cli, tiny_bench, tmp_path, in_the_way):
    if in_the_way == "file":
        project = tmp_path / "a-file" / "runs"
        (tmp_path / "a-file").write_text("not a folder")
    else:
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only folders")
        project = tmp_path / "ro"
        project.mkdir(mode=0o555)
    r = cli("train", "--data", tiny_bench["source"], "--preset", "cpu", "--crop", "48", "96", "--steps", "1",
            "--workers", "0", "--name", "x", "--project", project)
    assert r.exit_code == 1, r.output
    assert f"cannot write the run directory {project / 'train/x'}" in r.text and "Traceback" not in r.text


def test_more_workers_than_cpus_start_one_per_cpu(monkeypatch):
    from diga.engine import loaders

    monkeypatch.setattr(loaders.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert loaders.loader_workers(100_000) == 2 and loaders.loader_workers(1) == 1


def test_the_lock_file_of_a_run_is_not_left_behind_after_an_error(cli, tiny_bench, tmp_path):
    r = cli("train", "--data", tiny_bench["source"], "--preset", "cpu", "--crop", "48", "96", "--steps", "1",
            "--batch-size", "100000", "--name", "x", "--project", tmp_path)
    assert r.exit_code == 1
    assert not (tmp_path / "train/x/.lock").exists()


def test_the_interrupt_handler_is_removed_after_a_run(tiny_cfg, tmp_path):
    before = signal.getsignal(signal.SIGINT)
    SupervisedTrainer(tiny_cfg.replace(steps=1, eval_every=0, vis_every=0, val=None), tmp_path / "h").run()
    assert signal.getsignal(signal.SIGINT) is before
