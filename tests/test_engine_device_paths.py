"""Device-dependent paths that a CPU-only run never takes, exercised without a GPU where possible.

What only a GPU can show (resume on CUDA, CUDA's sync-debug audits) is marked ``gpu`` and runs in
``benchmarks/gpu_run.sh``.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from diga.engine import runtime
from diga.engine.state import HOST_GROUPS, TrainState, load_state, save_state
from diga.engine.warmup import WarmupTrainer


def _state(tmp_path):
    gen = torch.Generator().manual_seed(3)
    state = TrainState(5, {"student": {"w": torch.randn(3, 3)},
                           "rng": {"cpu": torch.get_rng_state(), "gen": gen.get_state()}},
                       {"best": {"miou": 1.0, "step": 2}})
    save_state(tmp_path / "state.safetensors", state)
    return tmp_path / "state.safetensors"


def test_state_loader_keeps_rng_states_on_the_host_whatever_the_device(tmp_path):
    """``Generator.set_state`` / ``cuda.set_rng_state`` take CPU byte tensors, CUDA generators
    included: loading a state for a CUDA run must not move the RNG states to the GPU. ("meta"
    stands in for any non-CPU device on a machine without one.)"""
    assert "rng" in HOST_GROUPS
    state = load_state(_state(tmp_path), device="meta")
    assert state.tensors["student"]["w"].device.type == "meta"
    for name, t in state.tensors["rng"].items():
        assert t.device.type == "cpu" and t.dtype == torch.uint8, name
    torch.Generator().set_state(state.tensors["rng"]["gen"])  # accepted as it is
    assert state.step == 5 and state.info["best"]["step"] == 2


def test_restore_hands_the_generators_host_tensors(tiny_cfg, tmp_path, monkeypatch):
    """Every state given to a ``set_state``/``set_rng_state`` call on resume is a CPU tensor."""
    cfg = tiny_cfg.replace(steps=2, eval_every=0, vis_every=0, ckpt_every=2)
    WarmupTrainer(cfg, tmp_path / "run").run()

    seen: list[torch.device] = []
    set_rng_state = torch.set_rng_state
    monkeypatch.setattr(torch, "set_rng_state", lambda t: (seen.append(t.device), set_rng_state(t)))

    class RecordingGenerator:
        def __init__(self, gen):
            self.gen = gen

        def set_state(self, t):
            seen.append(t.device)
            self.gen.set_state(t)

    class Resumed(WarmupTrainer):
        def restore(self, state):
            self.gen = RecordingGenerator(self.gen)
            super().restore(state)
            self.gen = self.gen.gen

    resumed = Resumed(cfg.replace(steps=3), tmp_path / "run", resume=True)
    assert resumed.start_step == 2
    assert len(seen) == 2 and all(d.type == "cpu" for d in seen), seen


@pytest.mark.parametrize("capability,expected", [((7, 0), torch.float16), ((7, 5), torch.float16),
                                                 ((8, 0), torch.bfloat16), ((9, 0), torch.bfloat16)])
def test_auto_precision_uses_bf16_only_where_the_gpu_has_it(monkeypatch, capability, expected):
    """``torch.cuda.is_bf16_supported()`` says yes on a V100/T4 (emulated, slow): the auto choice
    goes by the device's compute capability instead, and fp16 brings a GradScaler."""
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=None: capability)
    assert runtime.amp_dtype(torch.device("cuda", 0), "auto") is expected
    assert runtime.amp_dtype(torch.device("cuda", 0), "fp32") is None
    assert runtime.amp_dtype(torch.device("cuda", 0), "bf16") is torch.bfloat16
    assert runtime.amp_dtype(torch.device("cuda", 0), "fp16") is torch.float16
    assert runtime.amp_dtype(torch.device("cpu"), "auto") is None


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="resuming on a CUDA device needs a CUDA GPU")
def test_interrupted_warmup_resumes_on_cuda(tiny_cfg, tmp_path):
    """Resume on the GPU: RNG states restored from the file, training continues to the end."""
    cfg = tiny_cfg.replace(device="cuda", amp="bf16", channels_last=True, eval_every=0, vis_every=0)

    class Interrupted(Exception):
        pass

    class Crashing(WarmupTrainer):
        def train_step(self, step):
            if step == 3:
                raise Interrupted
            return super().train_step(step)

    with pytest.raises(Interrupted):
        Crashing(cfg, tmp_path / "broken").run()
    resumed = WarmupTrainer(cfg, tmp_path / "broken", resume=True)
    assert resumed.start_step == 2 and resumed.gen.device.type == "cuda"
    resumed.run()
    weights = load_file(tmp_path / "broken" / "weights" / "last.safetensors")
    assert all(torch.isfinite(t).all() for t in weights.values() if t.is_floating_point())
