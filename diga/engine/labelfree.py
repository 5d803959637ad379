"""Label-free signals: how a model behaves on unlabelled target images.

A user adapting to their own footage has no target labels, so mIoU cannot tell them whether a
stage helped. These four numbers need none; each is measured on the same fixed subset of target
training images at every evaluation point:

- ``entropy``: mean per-pixel entropy of the softmax, divided by log(C) (0 = certain, 1 = uniform);
- ``teacher_agreement``: fraction of pixels where student and EMA teacher argmax agree;
- ``prototype_agreement``: fraction of pixels where the argmax equals the nearest class centroid
  of the pixel's features (the stage's centroids, or centroids of the subset's own predictions);
- ``class_drift``: L1 distance between the predicted class shares and the source label shares
  (0 = same distribution, 2 = disjoint).

Whether they track mIoU is measured by ``benchmarks/label_free.py`` (docs/BENCHMARKS.md).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..classes import IGNORE_INDEX, LabelSpace, get_label_space
from ..data import build_dataset
from ..data.transforms import INPUT_NORMS, normalize
from ..method.prototypes import CentroidAccumulator, prototype_labels
from . import runtime
from .metrics_log import read_metrics
from .pseudolabels import resize_image

SUBSET_SIZE = 64
PREFIX = "label_free_"
# A stage run with --select label-free saves the models of its lowest-drift point as weights/TAG.safetensors
# and names TAG as the one it handed on (summary "selected").
LABEL_FREE_TAG = "label_free"
SIGNALS = ("entropy", "teacher_agreement", "prototype_agreement", "class_drift")


def fixed_indices(total: int, n: int = SUBSET_SIZE) -> list[int]:
    """``n`` indices spread evenly over ``range(total)``: the same images at every call."""
    if total <= n:
        return list(range(total))
    return [i * total // n for i in range(n)]


def load_subset(spec: str, space: LabelSpace, n: int = SUBSET_SIZE,
                size: tuple[int, int] | None = None) -> torch.Tensor:
    """A fixed subset of the training images of ``spec`` as one uint8 (N,3,H,W) batch.

    Images are resized (bilinear) to ``size``, or to the first image's size, so that they stack.
    """
    dataset = build_dataset(spec, split="train", label_space=space)
    images = [dataset[i][0] for i in fixed_indices(len(dataset), n)]
    if not images:
        raise ValueError(f"{spec} has no training images for the label-free signals")
    size = tuple(size or images[0].shape[-2:])
    resized = [im if tuple(im.shape[-2:]) == size else resize_image(im, size) for im in images]
    return torch.stack(resized)


def label_distribution(spec: str, space: LabelSpace, n: int = SUBSET_SIZE) -> torch.Tensor | None:
    """Class shares (C,) of the labels of a fixed subset of ``spec``'s training images (None: unlabelled)."""
    dataset = build_dataset(spec, split="train", label_space=space)
    if not getattr(dataset, "has_labels", True):
        return None
    counts = torch.zeros(space.num_classes)
    for i in fixed_indices(len(dataset), n):
        label = dataset[i][1].flatten()
        counts += torch.bincount(label[label != IGNORE_INDEX], minlength=space.num_classes)[:space.num_classes].float()
    return counts / counts.sum() if counts.sum() > 0 else None


def _forward(model: torch.nn.Module, x: torch.Tensor, amp_dtype: torch.dtype | None,
             norm: tuple[Sequence[float], Sequence[float]]) -> tuple[torch.Tensor, torch.Tensor]:
    with runtime.autocast(x.device, amp_dtype):
        logits, feats = model(normalize(x, *norm))
    return logits.float(), feats.float()


@torch.inference_mode()
def label_free_signals(model: torch.nn.Module, images: torch.Tensor, num_classes: int,
                       source_distribution: torch.Tensor | None = None, teacher: torch.nn.Module | None = None,
                       centroids: torch.Tensor | None = None, centroid_valid: torch.Tensor | None = None,
                       device: torch.device | str = "cpu", amp_dtype: torch.dtype | None = None,
                       batch_size: int = 8,
                       norm: tuple[Sequence[float], Sequence[float]] = INPUT_NORMS["imagenet"]) -> dict[str, float]:
    """The signals of ``model`` on uint8 ``images`` (N,3,H,W), in eval mode, at the model's output
    resolution, normalised by ``norm`` (the model's (mean, std)). Without a ``teacher`` (or a
    ``source_distribution``) that signal is left out; without ``centroids`` they are computed from the
    images' own predictions (as between the stages)."""
    device = torch.device(device)
    modes = [(m, m.training) for m in (model, teacher) if m is not None]
    for m, _ in modes:
        m.eval()
    entropy, agree, pixels = 0.0, 0.0, 0
    shares = torch.zeros(num_classes, device=device)
    kept: list[tuple[torch.Tensor, torch.Tensor]] = []  # (features, argmax at feature size)
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size].to(device).float().div_(255)
        logits, feats = _forward(model, x, amp_dtype, norm)
        log_p = logits.log_softmax(1)
        entropy += float(-(log_p.exp() * log_p).sum(1).sum()) / math.log(num_classes)
        pred = logits.argmax(1)
        pixels += pred.numel()
        shares += torch.bincount(pred.flatten(), minlength=num_classes)[:num_classes].float()
        if teacher is not None:
            agree += float((_forward(teacher, x, amp_dtype, norm)[0].argmax(1) == pred).sum())
        small = logits if logits.shape[-2:] == feats.shape[-2:] else F.interpolate(
            logits, size=feats.shape[-2:], mode="bilinear", align_corners=False)
        kept.append((feats, small.argmax(1)))
    for m, was_training in modes:
        m.train(was_training)
    if centroids is None:
        acc = CentroidAccumulator(num_classes, kept[0][0].shape[1], min_pixels=5, device=device)
        for feats, pred in kept:
            acc.add(feats, pred)
        centroids, centroid_valid = acc.centroids(), acc.valid
    proto_agree = sum(float((prototype_labels(f, centroids.to(device), None if centroid_valid is None
                                              else centroid_valid.to(device)) == p).sum()) for f, p in kept)
    signals = {"entropy": entropy / pixels,
               "prototype_agreement": proto_agree / sum(p.numel() for _, p in kept)}
    if teacher is not None:
        signals["teacher_agreement"] = agree / pixels
    if source_distribution is not None:
        signals["class_drift"] = float((shares / pixels - source_distribution.to(device)).abs().sum())
    return {k: round(v, 5) for k, v in signals.items()}


@functools.lru_cache(maxsize=1)  # the stages of one run share them (one set: 64 images at eval size)
def _stage_inputs(target: str, source: str | None, label_space: str,
                  size: tuple[int, int] | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    space = get_label_space(label_space)
    images = load_subset(target, space, size=size)
    return images, label_distribution(source, space) if source else None


def stage_signals(trainer: Any) -> dict[str, float]:
    """The signals of a training stage's current student, keyed ``label_free_*`` for metrics.jsonl.

    Empty without target images (supervised references) and on every rank but the main one. The
    subset and the source label shares are loaded once for all the stages of a run.
    """
    cfg = trainer.cfg
    if not cfg.target or not runtime.is_main():
        return {}
    size = cfg.eval_size or cfg.base_size
    inputs = _stage_inputs(cfg.target, cfg.source, cfg.label_space, None if size is None else tuple(size))
    teacher = trainer.teacher.module if trainer.teacher is not None else None
    signals = label_free_signals(trainer.model, inputs[0], trainer.space.num_classes, inputs[1], teacher,
                                 getattr(trainer, "centroids", None), getattr(trainer, "centroid_valid", None),
                                 trainer.device, trainer.amp, norm=trainer.norm)
    return {PREFIX + k: v for k, v in signals.items()}


def read_stage_signals(stage_dir: str | Path, step: int) -> dict[str, float]:
    """The signals logged at ``step`` in ``stage_dir/metrics.jsonl`` (unprefixed; {} if none)."""
    found: dict[str, float] = {}
    for record in read_metrics(stage_dir):
        if record.get("step") == step and any(k.startswith(PREFIX) for k in record):
            found = {k[len(PREFIX):]: v for k, v in record.items() if k.startswith(PREFIX)}
    return found


def handed_on_signals(stage_dir: str | Path, summary: dict) -> dict[str, float]:
    """The signals of the model a finished stage handed on (its best, label-free or last step)."""
    return read_stage_signals(stage_dir, handed_on_step(summary))


def handed_on_point(summary: dict) -> dict | None:
    """The evaluation point (``step``, ``miou``) a finished stage handed on when ``--select`` chose one
    (best, label-free), from its summary.json; None when it handed on its last step."""
    chosen = {"best": summary.get("best"), LABEL_FREE_TAG: summary.get("label_free_best")}.get(
        summary.get("selected")) or {}
    return chosen if chosen.get("step", -1) >= 0 else None


def handed_on_step(summary: dict) -> int | None:
    """The step whose model a finished stage handed on, from its summary.json."""
    chosen = handed_on_point(summary)
    return chosen["step"] if chosen else summary.get("steps")


def describe(signals: dict[str, float]) -> str:
    """One short cell: ``entropy 0.31 · teacher 0.92 · prototype 0.85 · drift 0.12``."""
    short = {"entropy": "entropy", "teacher_agreement": "teacher", "prototype_agreement": "prototype",
             "class_drift": "drift"}
    return " · ".join(f"{short[k]} {signals[k]:.2f}" for k in SIGNALS if k in signals) or "—"
