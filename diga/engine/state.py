"""Resumable training state in one safetensors file, written atomically.

Everything a resumed run needs (step, student, teacher, optimiser, centroids, RNG states) goes
into one file so that a kill between two writes can never pair weights of one step with an
optimiser of another.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, safe_open, save_file

from ..io import atomic_write


@dataclass
class TrainState:
    step: int
    tensors: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)  # group -> name -> tensor
    info: dict[str, Any] = field(default_factory=dict)  # JSON-able scalars


def optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict]]:
    sd = opt.state_dict()
    tensors = {f"{pid}.{k}": v for pid, st in sd["state"].items() for k, v in st.items()
               if isinstance(v, torch.Tensor)}
    return tensors, sd["param_groups"]


def load_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], groups: list[dict]) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, v in tensors.items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": groups})


def save_state(path: Path, state: TrainState) -> None:
    flat = {f"{group}/{name}": t.detach().to("cpu").contiguous().clone()
            for group, named in state.tensors.items() for name, t in named.items()}
    header = {"step": str(state.step), "info": json.dumps(state.info)}
    atomic_write(path, lambda tmp: save_file(flat, str(tmp), metadata=header))


# Groups that must stay on the host whatever the training device: a generator's state
# (``torch.Generator.set_state``, ``torch.cuda.set_rng_state``) is a CPU byte tensor, CUDA
# generators included.
HOST_GROUPS = frozenset({"rng"})


def load_state(path: Path, device: torch.device | str = "cpu") -> TrainState:
    """Read a state file: tensors on ``device``, except the groups in ``HOST_GROUPS`` (CPU)."""
    with safe_open(str(path), framework="pt") as f:
        header = f.metadata()
    flat = load_file(str(path), device="cpu")
    tensors: dict[str, dict[str, torch.Tensor]] = {}
    for key, t in flat.items():
        group, name = key.split("/", 1)
        tensors.setdefault(group, {})[name] = t if group in HOST_GROUPS else t.to(device)
    return TrainState(step=int(header["step"]), tensors=tensors, info=json.loads(header["info"]))
