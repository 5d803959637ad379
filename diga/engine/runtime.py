"""Device, precision, seeding and the (optionally distributed) process layout."""

from __future__ import annotations

import atexit
import os
import random
from contextlib import nullcontext

import numpy as np
import torch
import torch.distributed as dist

from ..errors import ConfigError


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank())
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name} asked for CUDA, but no CUDA GPU is available here")
    return device


def amp_dtype(device: torch.device, amp: str) -> torch.dtype | None:
    """bf16 where the GPU has bf16 units (compute capability 8.0+), fp16 (with a GradScaler) on
    older CUDA GPUs, none (fp32) on the CPU.

    ``torch.cuda.is_bf16_supported()`` also says yes on a V100/T4, where bf16 is only emulated
    (far slower than fp16): ask without emulation, for the training device itself.
    """
    if amp == "fp32" or (amp == "auto" and device.type != "cuda"):
        return None
    if amp == "bf16" or (amp == "auto" and _has_native_bf16(device)):
        return torch.bfloat16
    return torch.float16


def _has_native_bf16(device: torch.device) -> bool:
    if torch.version.hip:
        return True
    index = device.index if device.index is not None else torch.cuda.current_device()
    return torch.cuda.get_device_capability(index) >= (8, 0)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX), where oneDNN's bf16 convolutions
    are fast; elsewhere bf16 is emulated and slower than fp32. (torch.cpu's probes are private: a
    torch without them counts as no.)"""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# --- distributed --------------------------------------------------------------------------

def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0))


def is_main() -> bool:
    return rank() == 0


def init_distributed_from_env() -> bool:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1)."""
    if is_distributed() or int(os.environ.get("WORLD_SIZE", 1)) <= 1:
        return is_distributed()
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend)
    atexit.register(_leave_process_group)
    return True


def _leave_process_group() -> None:
    """Leave together and tear the group down before Python finalises the rest: a rank exiting
    while its peer still talks, or gloo threads outliving their objects, abort the process."""
    if is_distributed():
        try:
            dist.barrier()
        finally:
            dist.destroy_process_group()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if is_distributed():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def broadcast_module(module: torch.nn.Module) -> None:
    """Make every rank hold rank 0's parameters and buffers."""
    if is_distributed():
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src=0)


def broadcast_buffers(module: torch.nn.Module) -> None:
    """Rank 0's BatchNorm statistics on every rank, in one flattened collective.

    DDP averages gradients but each rank updates its running statistics from its own batch; the
    eval-mode EMA teacher averages those statistics, so they must agree for the teachers to stay identical
    (a train-mode teacher's own statistics are broadcast the same way).
    """
    if not is_distributed():
        return
    buffers = [b for b in module.buffers() if b.is_floating_point()]
    if buffers:
        flat = torch._utils._flatten_dense_tensors(buffers)
        dist.broadcast(flat, src=0)
        for b, synced in zip(buffers, torch._utils._unflatten_dense_tensors(flat, buffers)):
            b.copy_(synced)
