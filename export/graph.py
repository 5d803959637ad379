"""What every deployed model computes, and the pre-processing every backend shares.

Design choice (recorded in the export metadata under ``export.input``/``export.preprocessing``):
the exported graphs take **normalised float32 NCHW** input named ``images``
(RGB / 255, then ``(x - mean) / std`` with the checkpoint's mean/std). Normalisation stays
outside the graph so that all backends share one pre-processing function (:func:`prepare`),
the INT8 calibration sees exactly the tensors inference sees, and the graph holds no
uint8->float casts. The graph output is either ``logits`` (float32, N x C x H x W, already at
the *input* resolution: upsampled in-graph with ``size=`` (never ``scale_factor``), bilinear,
``align_corners=False``) or ``labels`` (the in-graph argmax, N x H x W, uint8 -- int32 for
TensorRT -- so a client moves one byte per pixel instead of C floats).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from diga.data.transforms import normalize

OUTPUTS = ("logits", "labels")
MAX_BATCH = 4096  # a larger batch in an export or its metadata is a typo or damage
INPUT_NAME = "images"


class DeployModule(nn.Module):
    """``images`` (N, 3, H, W) normalised -> ``logits`` (N, C, H, W) or ``labels`` (N, H, W)."""

    def __init__(self, model: nn.Module, output: str = "logits", compute_dtype: torch.dtype | None = None,
                 label_dtype: torch.dtype = torch.uint8) -> None:
        super().__init__()
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {', '.join(OUTPUTS)}, got {output!r}")
        self.model = model
        self.output = output
        self.compute_dtype = compute_dtype
        self.label_dtype = label_dtype

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images if self.compute_dtype is None else images.to(self.compute_dtype)
        logits = self.model(x)[0].float()
        logits = F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)
        if self.output == "labels":
            return logits.argmax(1).to(self.label_dtype)
        return logits


def output_stride(model: nn.Module, default: int = 8) -> int:
    return int(getattr(model, "output_stride", default))


def round_to_stride(size: Sequence[int], stride: int) -> tuple[int, int]:
    """(H, W) rounded to the nearest multiple of ``stride`` (at least one stride)."""
    return tuple(max(stride, int(round(s / stride)) * stride) for s in size)  # type: ignore[return-value]


def fit_size(size: Sequence[int], stride: int, lo: Sequence[int] | None, hi: Sequence[int] | None) -> tuple[int, int]:
    """``size`` rounded to ``stride``, scaled (aspect kept) into [lo, hi] when the backend has limits
    (a TensorRT optimisation profile), then clamped per side."""
    h, w = (float(s) for s in size)
    if hi is not None and (h > hi[0] or w > hi[1]):
        f = min(hi[0] / h, hi[1] / w)
        h, w = h * f, w * f
    if lo is not None and (h < lo[0] or w < lo[1]):
        f = max(lo[0] / h, lo[1] / w)
        h, w = h * f, w * f
    out = list(round_to_stride((h, w), stride))
    for i in range(2):
        if hi is not None:
            out[i] = min(out[i], int(hi[i]) // stride * stride or int(hi[i]))
        if lo is not None:
            out[i] = max(out[i], int(lo[i]))
    return out[0], out[1]


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, h, w) float in [0, 1]."""
    x = x.permute(0, 3, 1, 2).float().div_(255.0)
    if tuple(x.shape[-2:]) != size:
        shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)
    return x


def prepare(images: Sequence[np.ndarray], size: Sequence[int], mean: Sequence[float], std: Sequence[float],
            device: torch.device | str = "cpu") -> torch.Tensor:
    """(H, W, 3) uint8 images -> (N, 3, h, w) float32, all resized to ``size`` and normalised.

    Resizing is bilinear, ``align_corners=False``, antialiased when shrinking -- the same in
    every backend, the parity check and the INT8 calibration.
    """
    size = (int(size[0]), int(size[1]))
    if len({np.asarray(im).shape for im in images}) == 1:
        x = _resize(torch.from_numpy(np.stack([np.asarray(im) for im in images])).to(device), size)
    else:  # images of different sizes that share a network size: resize one by one
        x = torch.cat([_resize(torch.from_numpy(np.stack([im])).to(device), size) for im in images])
    return normalize(x, mean, std).contiguous()
