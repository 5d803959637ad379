"""The EMA teacher: ``T <- alpha*T + (1-alpha)*S`` with ``alpha = min(1 - 1/(step+1), max_alpha)``."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


def ema_alpha(step: int, max_alpha: float = 0.999) -> float:
    """The EMA decay at ``step``: a true running average at first, capped at ``max_alpha``."""
    return min(1.0 - 1.0 / (step + 1), max_alpha)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module under DistributedDataParallel / DataParallel / torch.compile wrappers."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):  # torch.compile's OptimizedModule
            model = model._orig_mod
        else:
            return model


TEACHER_MODES = ("train", "eval")


class EMATeacher:
    """An exponential-moving-average copy of a student network that never receives gradients.

    ``mode="eval"``: BatchNorm normalises with running statistics, which the update averages like the
    weights; no dropout. ``mode="train"`` (the authors' code): BatchNorm normalises with each batch's
    own statistics and dropout is active; the update averages parameters only, and the running
    statistics are the teacher's own, moved by its forwards (they matter only when the teacher is
    evaluated).
    """

    def __init__(self, student: nn.Module, mode: str = "eval") -> None:
        """Deep-copy the (unwrapped) student, freeze it and put it in ``mode``."""
        if mode not in TEACHER_MODES:
            raise ValueError(f"mode must be one of {', '.join(TEACHER_MODES)}, got {mode!r}")
        self.mode = mode
        self.module: nn.Module = copy.deepcopy(unwrap_model(student))
        self.module.requires_grad_(False)
        self.module.train(mode == "train")

    @torch.no_grad()
    def update(self, student: nn.Module, step: int, max_alpha: float = 0.999) -> float:
        """One EMA step towards ``student``; returns the alpha used."""
        alpha = ema_alpha(step, max_alpha)
        student = unwrap_model(student)
        # The lists are rebuilt each call (cheap) because ``.to()`` replaces buffer tensors.
        t_params, s_params = list(self.module.parameters()), list(student.parameters())
        t_bufs, s_bufs = list(self.module.buffers()), list(student.buffers())
        if len(s_params) != len(t_params) or len(s_bufs) != len(t_bufs):
            raise ValueError("student and teacher have different parameter/buffer lists")
        # lerp_(t, s, w) = t + w*(s - t) = alpha*t + (1-alpha)*s: one fused multi-tensor kernel.
        torch._foreach_lerp_(t_params, s_params, 1.0 - alpha)
        if self.mode == "train":
            return alpha  # batch statistics normalise: the buffers stay the teacher's own
        # In eval mode BatchNorm uses the running statistics: averaging them like the weights keeps
        # them consistent with the averaged weights (copying the student's would pair EMA weights
        # with statistics of a different network).
        t_float = [t for t in t_bufs if t.is_floating_point()]
        if t_float:
            s_float = [s for s, t in zip(s_bufs, t_bufs) if t.is_floating_point()]
            torch._foreach_lerp_(t_float, s_float, 1.0 - alpha)
        # Integer buffers (BN num_batches_tracked) are counters, not estimates: averaging them
        # makes no sense (and lerp rejects integers), so they are copied.
        t_int = [t for t in t_bufs if not t.is_floating_point()]
        if t_int:
            torch._foreach_copy_(t_int, [s for s, t in zip(s_bufs, t_bufs) if not t.is_floating_point()])
        return alpha

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Forward through the teacher network."""
        return self.module(*args, **kwargs)

    def to(self, *args: Any, **kwargs: Any) -> "EMATeacher":
        """Move the teacher (in place, like ``nn.Module.to``)."""
        self.module.to(*args, **kwargs)
        return self

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The teacher network's state dict."""
        return self.module.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict: dict[str, Any], strict: bool = True) -> Any:
        """Load weights into the teacher network."""
        return self.module.load_state_dict(state_dict, strict=strict)
