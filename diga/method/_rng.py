"""Random draws that land on the data's device, from an optional ``torch.Generator``."""

from __future__ import annotations

import torch


def rand(shape: tuple[int, ...], like: torch.Tensor, generator: torch.Generator | None = None,
         dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Uniform [0, 1) numbers on ``like``'s device, drawn with ``generator`` when given."""
    if generator is None or generator.device == like.device:
        return torch.rand(shape, generator=generator, device=like.device, dtype=dtype)
    # A generator on another device (typically a CPU generator with CUDA data) draws there and
    # copies over: deterministic, but the copy is a host round trip, so pass a generator on the
    # data's device in the hot path.
    return torch.rand(shape, generator=generator, device=generator.device, dtype=dtype).to(like.device)


def randint(high: int, shape: tuple[int, ...], like: torch.Tensor,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """Integers in [0, high) (int64) on ``like``'s device, drawn with ``generator`` when given."""
    if generator is None or generator.device == like.device:
        return torch.randint(high, shape, generator=generator, device=like.device)
    return torch.randint(high, shape, generator=generator, device=generator.device).to(like.device)
