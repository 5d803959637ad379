"""Faults during training: non-finite losses, CUDA out of memory, a full disk."""

from __future__ import annotations

import errno

import pytest
import torch

from diga.checkpoint import load_weights, model_metadata, save_weights
from diga.engine.state import load_state
from diga.engine.supervised import SupervisedTrainer
from diga.engine.trainer import NonFiniteLossError
from diga.io import DiskFullError, atomic_write


def test_nonfinite_losses_are_skipped_then_stop_the_run(tiny_cfg, tmp_path):
    cfg = tiny_cfg.replace(source=tiny_cfg.source, steps=12, ckpt_every=2, log_every=2, eval_every=0,
                           max_nonfinite=4)

    class Diverging(SupervisedTrainer):
        def train_step(self, step):
            losses = super().train_step(step)
            if step == 2:  # one isolated bad batch: skipped, the run goes on
                losses["loss"] = losses["loss"] * float("nan")
            if step >= 5:  # then it diverges for good
                losses["loss"] = losses["loss"] * float("inf")
            return losses

    trainer = Diverging(cfg, tmp_path / "run")
    with pytest.raises(NonFiniteLossError, match="learning rate") as err:
        trainer.run()
    assert "--resume" in str(err.value)
    # Steps 5.. were non-finite: the step-6 checkpoint was not written over the good one.
    assert load_state(tmp_path / "run/weights/state.safetensors").step == 4
    state, _ = load_weights(tmp_path / "run/weights/last.safetensors")
    assert all(torch.isfinite(t).all() for t in state.values() if t.is_floating_point())
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters()), "skipped steps left weights finite"
    import json

    rows = [json.loads(x) for x in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    assert rows[1]["nonfinite_steps"] == 1  # the isolated NaN at step 2 was counted
    assert rows[-1]["stopped"] == "non-finite loss"


def test_cuda_out_of_memory_names_the_options_to_lower(cli, tiny_bench, monkeypatch):
    from diga.engine import supervised

    def oom(self):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(supervised.SupervisedTrainer, "run", oom)
    result = cli("train", "--data", tiny_bench["source"], "--preset", "cpu", "--crop", "48", "96",
                 "--name", "oom", "--project", "/tmp/diga-oom-test")
    assert result.exit_code == 1
    assert "--crop" in result.output and "--batch-size" in result.output and "--accumulate" in result.output
    assert "Traceback" not in result.output


def test_disk_full_keeps_the_previous_checkpoint(tmp_path):
    from diga.models import create

    model = create("deeplabv2_light", 19)
    path = tmp_path / "w.safetensors"
    save_weights(path, model.state_dict(), model_metadata("deeplabv2_light", "cityscapes19"))
    before = path.read_bytes()

    def full(tmp):
        tmp.write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(DiskFullError, match="disk full while writing .*w.safetensors.*intact"):
        atomic_write(path, full)
    assert path.read_bytes() == before
    assert not list(tmp_path.glob(".*.tmp"))
    load_weights(path)  # still a valid checkpoint


def test_atomic_writes_get_the_permissions_of_a_plain_write(tmp_path):
    """Checkpoints must be readable by the team (umask applies), and an overwrite keeps the mode."""
    import os
    import stat

    old = os.umask(0o022)
    try:
        fresh = atomic_write(tmp_path / "a.bin", lambda tmp: tmp.write_bytes(b"x"))
        plain = tmp_path / "b.bin"
        plain.write_bytes(b"x")
        assert stat.S_IMODE(fresh.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode) == 0o644
        os.chmod(fresh, 0o640)
        atomic_write(fresh, lambda tmp: tmp.write_bytes(b"y"))
        assert stat.S_IMODE(fresh.stat().st_mode) == 0o640 and fresh.read_bytes() == b"y"
    finally:
        os.umask(old)
    assert not list(tmp_path.glob(".*.tmp"))


def test_disk_full_is_reported_by_the_cli_without_traceback(cli, tiny_bench, monkeypatch):
    from diga.engine import supervised

    def full(self):
        raise DiskFullError(errno.ENOSPC, "disk full while writing runs/x/weights/state.safetensors; the previous version is intact")

    monkeypatch.setattr(supervised.SupervisedTrainer, "run", full)
    result = cli("train", "--data", tiny_bench["source"], "--preset", "cpu", "--crop", "48", "96",
                 "--name", "full", "--project", "/tmp/diga-full-test")
    assert result.exit_code == 1 and "disk full" in result.output and "Traceback" not in result.output
