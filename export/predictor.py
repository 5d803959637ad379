"""One predictor for every deployment format.

Pre-processing (identical in every backend, see :func:`diga.export.graph.prepare`):

* RGB uint8 -> float / 255 -> ``(x - mean) / std`` with the model's metadata mean/std;
* resize policy: a **fixed-shape export** (static ONNX/engine/.pt2) gets every image resized to
  its input size (``export.imgsz``); a **dynamic export or a checkpoint** keeps each image's own
  size (the scale the model is evaluated at by ``diga evaluate``), rounded to the nearest
  multiple of the output stride so the feature grid aligns with the pixels (a resize of at most
  half a stride), and scaled into a TensorRT profile's min/max when there is one. Resizing is
  bilinear, antialiased when shrinking. Export with ``--dynamic`` to predict images of any size
  at their own scale; a fixed-shape export is faster but distorts other aspect ratios.

Inference mode (``mode=``, :mod:`diga.inference`, the one implementation shared with ``diga
evaluate``): ``whole`` runs the image at the size above; ``resize`` first rescales it (aspect kept)
to the training scale recorded in the metadata (``train_size``); ``slide`` runs overlapping
windows of the training crop (a fixed-shape export: windows of its input size) over the image at
its own size and averages their logits; ``auto`` (the default unless the export recorded another
in ``export.mode``) picks one from the image size vs the training scale. The windowing and
resizing happen here, around the backend call, so every backend runs every mode.

Post-processing: logits are resized (bilinear) back to the original image size before the
argmax; label-output graphs are resized with nearest neighbour (and vote one-hot in ``slide``).
Images of the same network size and mode are batched together (``batch_size``; slide: windows);
fixed-batch exports get full batches (padded).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from diga.classes import colorize
from diga.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from diga.inference import InferencePlan, TrainingScale, check_mode, infer_logits, plan_inference

from .backends import Backend, open_backend
from .errors import PredictorError
from .graph import fit_size, prepare
from .images import as_rgb_array
from .metadata import default_mode


@dataclass
class Prediction:
    """One image's result: ``labels`` (H, W) uint8 trainIds at the original image size."""

    labels: np.ndarray
    palette: np.ndarray  # (C, 3) uint8
    image: np.ndarray | None = None  # the (H, W, 3) uint8 input, for overlays
    probs: np.ndarray | None = None  # (C, H, W) float32 softmax, with return_probs=True
    source: str | None = None  # the path, when the input was a file
    net_size: tuple[int, int] | None = None  # (h, w) the network saw (slide: the window)
    mode: str | None = None  # how it was run, e.g. "resize (image 512x1024 vs training scale 128x256: ...)"

    @property
    def color(self) -> np.ndarray:
        """(H, W, 3) uint8 palette colours (labels outside the palette are black)."""
        return colorize(self.labels, self.palette)

    def overlay(self, alpha: float = 0.5) -> np.ndarray:
        """The colour mask blended over the input image (``alpha`` = mask weight)."""
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        if self.image is None:
            return self.color
        blend = (1.0 - alpha) * self.image.astype(np.float32) + alpha * self.color.astype(np.float32)
        return np.clip(blend + 0.5, 0, 255).astype(np.uint8)


@dataclass
class Timing:
    preprocess_ms: float = 0.0
    inference_ms: float = 0.0
    postprocess_ms: float = 0.0
    batches: int = 0
    images: int = 0
    sizes: list[tuple[int, int]] = field(default_factory=list)


def _check_batch(batch_size: int | None) -> int | None:
    """``batch_size`` unless it is not a positive integer (a negative one used to return no predictions)."""
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise PredictorError(f"batch_size must be a positive integer, got {batch_size!r}")
    return batch_size


class Predictor:
    """``Predictor.load(path)`` then ``predict(images)``; see the module docstring for the policy.

    Attributes: ``backend`` (name), ``device``, ``meta`` (classes, palette, export facts),
    ``last_latency_ms`` (wall time of the last :meth:`predict` call, all images) and
    ``last_timing`` (its pre-processing / inference / post-processing split).
    """

    def __init__(self, engine: Backend, batch_size: int | None = None, mode: str | None = None) -> None:
        self.engine = engine
        self.meta: dict[str, Any] = engine.meta
        self.backend: str = engine.name
        self.device: torch.device = engine.device
        self.classes: list[str] = list(self.meta["classes"])
        self.palette = np.asarray(self.meta.get("palette", []), dtype=np.uint8).reshape(-1, 3)
        # Exports made before checkpoints recorded their normalisation used ImageNet's.
        self.mean = list(self.meta.get("mean", IMAGENET_MEAN))
        self.std = list(self.meta.get("std", IMAGENET_STD))
        self.batch_size = engine.fixed_batch or _check_batch(batch_size) or 4
        self.training_scale = TrainingScale.from_meta(self.meta)
        self.mode = self._check_mode(mode or default_mode(self.meta))
        self.last_latency_ms: float | None = None
        self.last_timing: Timing | None = None

    @classmethod
    def load(cls, path: str | os.PathLike, backend: str = "auto", device: str | torch.device | None = None,
             batch_size: int | None = None, mode: str | None = None) -> Predictor:
        """Open a checkpoint (.safetensors), .onnx, TensorRT engine (.engine/.plan) or .pt2."""
        try:
            return cls(open_backend(Path(path), backend, device), batch_size, mode)
        except PredictorError:
            raise
        except ValueError as e:  # CheckpointError and other ValueErrors of the loaders
            raise PredictorError(str(e)) from None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def resize_policy(self) -> str:
        e = self.engine
        if e.fixed_size is not None:
            return f"fixed {e.fixed_size[0]}x{e.fixed_size[1]}"
        return f"own size rounded to a multiple of {e.stride}" + (
            f", within {e.size_range[0]}..{e.size_range[1]}" if e.size_range else "")

    def network_size(self, height: int, width: int) -> tuple[int, int]:
        """The size the backend takes for a wanted (height, width): see the module docstring."""
        e = self.engine
        if e.fixed_size is not None:
            return e.fixed_size
        lo, hi = e.size_range if e.size_range else (None, None)
        return fit_size((height, width), e.stride, lo, hi)

    @staticmethod
    def _check_mode(mode: str) -> str:
        try:
            return check_mode(mode)
        except ValueError as e:
            raise PredictorError(str(e)) from None

    def plan(self, height: int, width: int, mode: str | None = None) -> InferencePlan:
        """How an image of this size is run in ``mode`` (default: this predictor's ``mode``)."""
        mode = self._check_mode(mode or self.mode)
        return plan_inference(mode, (height, width), self.training_scale, lambda s: self.network_size(*s))

    def _run(self, x: torch.Tensor, batch_size: int, timing: Timing) -> torch.Tensor:
        """The backend on ``x`` in batches of ``batch_size`` (fixed-batch exports: padded)."""
        outs = []
        for start in range(0, x.shape[0], batch_size):
            part = x[start:start + batch_size]
            n = part.shape[0]
            if self.engine.fixed_batch and n < self.engine.fixed_batch:
                part = torch.cat([part, part[:1].expand(self.engine.fixed_batch - n, -1, -1, -1)], 0)
            outs.append(self.engine.run(part)[:n])
            timing.batches += 1
        return outs[0] if len(outs) == 1 else torch.cat(outs)

    def predict(self, images: Sequence | np.ndarray | str | os.PathLike, return_probs: bool = False,
                batch_size: int | None = None, mode: str | None = None) -> list[Prediction]:
        """Predict images: a list of (H, W, 3) uint8 arrays, PIL images or paths (or just one).

        ``mode``: whole, resize, slide or auto (default: this predictor's ``mode``)."""
        mode = self._check_mode(mode or self.mode)
        if isinstance(images, np.ndarray) and images.ndim == 4:  # an (N, H, W, 3) stack
            images = list(images)
        elif not isinstance(images, (list, tuple)):  # one path / PIL image / array
            images = [images]
        if return_probs and self.engine.output != "logits":
            raise PredictorError("return_probs needs a model that outputs logits; this export outputs labels "
                                 "(re-export with --output logits)")
        t0 = time.perf_counter()
        timing = Timing()
        arrays, sources = [], []
        for i, im in enumerate(images):
            arrays.append(as_rgb_array(im, name=f"image {i}"))
            sources.append(str(im) if isinstance(im, (str, os.PathLike)) else None)
        results: list[Prediction | None] = [None] * len(arrays)
        plans = [self.plan(*a.shape[:2], mode) for a in arrays]
        # whole/resize: images that share a network size run together (resized while preparing);
        # slide: images of the same size share the windows (prepared at their own size)
        groups: dict[tuple[str, tuple[int, int]], list[int]] = {}
        for i, p in enumerate(plans):
            groups.setdefault((p.mode, p.input_size), []).append(i)
        bs = self.engine.fixed_batch or _check_batch(batch_size) or self.batch_size
        for (_, size), idx in groups.items():
            timing.sizes.append(size)
            for start in range(0, len(idx), bs):
                chunk = idx[start:start + bs]
                plan = plans[chunk[0]]
                t = time.perf_counter()
                x = prepare([arrays[i] for i in chunk], size, self.mean, self.std, self.engine.device)
                self.engine.synchronize()
                t1 = time.perf_counter()
                out = infer_logits(lambda xs: self._run(xs, bs, timing), x, plan, batch=bs,
                                   num_classes=self.num_classes)
                self.engine.synchronize()
                t2 = time.perf_counter()
                for j, i in enumerate(chunk):
                    results[i] = self._postprocess(out[j], arrays[i], sources[i], plans[i], return_probs)
                t3 = time.perf_counter()
                timing.preprocess_ms += (t1 - t) * 1e3
                timing.inference_ms += (t2 - t1) * 1e3
                timing.postprocess_ms += (t3 - t2) * 1e3
        timing.images = len(arrays)
        self.last_timing = timing
        self.last_latency_ms = (time.perf_counter() - t0) * 1e3
        return results  # type: ignore[return-value]

    def _postprocess(self, out: torch.Tensor, image: np.ndarray, source: str | None, plan: InferencePlan,
                     return_probs: bool) -> Prediction:
        h, w = image.shape[:2]
        probs = None
        with torch.inference_mode():
            if out.dim() == 3:  # logits (C, h, w)
                logits = out[None].float()
                if tuple(logits.shape[-2:]) != (h, w):
                    logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
                labels = logits.argmax(1)[0]
                if return_probs:
                    probs = logits.softmax(1)[0].cpu().numpy()
            else:  # labels (h, w)
                labels = out
                if tuple(labels.shape) != (h, w):
                    labels = F.interpolate(labels[None, None].float(), size=(h, w), mode="nearest")[0, 0]
        return Prediction(labels=labels.to(torch.uint8).cpu().numpy(), palette=self.palette, image=image,
                          probs=probs, source=source, net_size=plan.window or plan.input_size,
                          mode=plan.describe())

    def __repr__(self) -> str:
        return (f"Predictor(backend={self.backend!r}, device={str(self.device)!r}, "
                f"model={self.meta.get('architecture')!r}, classes={self.num_classes}, "
                f"resize={self.resize_policy!r}, mode={self.mode!r})")
