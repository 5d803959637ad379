"""Confusion matrix and mIoU, accumulated on the device; model evaluation over a dataset."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .classes import IGNORE_INDEX
from .errors import ConfigError
from .inference import TrainingScale, check_mode, infer_logits, plan_inference, scaled_size


class ConfusionMatrix:
    """A (C, C) matrix, rows = ground truth, columns = prediction; ignore pixels are skipped."""

    def __init__(self, num_classes: int, device: torch.device | str = "cpu") -> None:
        self.num_classes = num_classes
        self.mat = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        if pred.shape != target.shape:
            raise ValueError(f"prediction {tuple(pred.shape)} and label {tuple(target.shape)} differ in shape")
        n = self.num_classes
        pred, target = pred.reshape(-1).long(), target.reshape(-1).long()
        valid = (target != IGNORE_INDEX) & (target >= 0) & (target < n)
        # Ignored pixels go to an extra bin that is dropped. A fixed-size scatter instead of boolean
        # indexing + bincount: both of those read device values on the host (a GPU stall per image).
        # Predictions outside the label space cannot happen with argmax, but clamp defensively.
        idx = torch.where(valid, target * n + pred.clamp(0, n - 1), n * n)
        counts = torch.zeros(n * n + 1, dtype=torch.int64, device=idx.device)
        counts.scatter_add_(0, idx, torch.ones_like(idx))
        self.mat += counts[:-1].reshape(n, n).to(self.mat.device)

    def compute(self, class_names: Sequence[str] | None = None, subset: Sequence[int] | None = None) -> "SegMetrics":
        return metrics_from_confusion(self.mat, class_names, subset)


@dataclass
class SegMetrics:
    miou: float
    pixel_accuracy: float
    iou: dict[str, float | None] = field(default_factory=dict)
    confusion: torch.Tensor | None = field(default=None, repr=False)  # (C, C), rows = ground truth

    def subset_miou(self, classes: Sequence[int]) -> float:
        """mIoU over some classes only (e.g. SYNTHIA's 13 inside its 16), same protocol."""
        return metrics_from_confusion(self.confusion, subset=classes).miou

    def as_dict(self) -> dict:
        return {"miou": self.miou, "pixel_accuracy": self.pixel_accuracy, "iou": self.iou}


def metrics_from_confusion(
    mat: torch.Tensor, class_names: Sequence[str] | None = None, subset: Sequence[int] | None = None
) -> SegMetrics:
    """IoU per class = TP / (TP + FP + FN); mIoU over classes present in GT or prediction.

    A class that neither occurs in the ground truth nor is predicted has an undefined IoU and is
    left out of the mean (reported as None), as the Cityscapes evaluation does. ``subset``
    restricts the mean to some classes (e.g. SYNTHIA's 13 inside its 16).
    """
    mat = mat.double().cpu()
    n = mat.shape[0]
    names = list(class_names) if class_names is not None else [str(i) for i in range(n)]
    tp = mat.diag()
    union = mat.sum(0) + mat.sum(1) - tp
    iou = torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))
    keep = list(range(n)) if subset is None else list(subset)
    vals = iou[keep]
    vals = vals[~torch.isnan(vals)]
    miou = float(vals.mean()) * 100 if len(vals) else float("nan")
    total = mat.sum()
    acc = float(tp.sum() / total) * 100 if total > 0 else float("nan")
    per_class = {
        names[i]: (None if torch.isnan(iou[i]) else round(float(iou[i]) * 100, 2)) for i in keep
    }
    return SegMetrics(miou=round(miou, 2), pixel_accuracy=round(acc, 2), iou=per_class, confusion=mat)


MIN_SCALED_SIDE = 4  # pixels a scale may shrink an image side to


def resized(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """``x`` (B,C,H,W) resized bilinearly (align_corners=False) to ``size``; itself when already that size:
    the one resize of multi-scale inference, for its inputs and its logits."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def fused_logits(model: torch.nn.Module, x: torch.Tensor, scales: Sequence[float],
                 amp_dtype: torch.dtype | None = None) -> torch.Tensor:
    """Float32 logits at the input size, max-fused over ``scales`` (the paper's full + half inference).

    The one multi-scale rule of evaluation, pseudo-labels and the report. ``x`` is a normalised
    (B,3,H,W) batch. For each scale the input is resized bilinearly (align_corners=False) to
    :func:`scaled_size`, the model runs under autocast to ``amp_dtype`` (None: float32), its logits
    are cast to float32 and resized bilinearly back to (H, W), and the scales are fused by an
    element-wise max. Wrap in ``torch.inference_mode()`` yourself.
    """
    if not scales or any(not math.isfinite(s) or s <= 0 for s in scales):
        raise ConfigError(f"scales must be positive finite numbers, got {list(scales)}")
    size = tuple(x.shape[-2:])
    fused = None
    for s in scales:
        scaled = scaled_size(size, s)
        if min(scaled) < min(MIN_SCALED_SIDE, *size):  # a 1x1 input gives a number, not a segmentation
            raise ConfigError(f"scale {s:g} shrinks the {size[0]}x{size[1]} input to {scaled[0]}x{scaled[1]} pixels; "
                              f"each scale (--scales) must keep at least {MIN_SCALED_SIDE} pixels per side")
        with torch.autocast(x.device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            logits = model(resized(x, scaled))[0]
        logits = resized(logits.float(), size)
        fused = logits if fused is None else torch.maximum(fused, logits)
    return fused


@torch.inference_mode()
def evaluate_model(
    model: torch.nn.Module,
    loader,
    num_classes: int,
    device: torch.device | str,
    scales: Sequence[float] = (1.0,),
    class_names: Sequence[str] | None = None,
    subset: Sequence[int] | None = None,
    amp_dtype: torch.dtype | None = None,
    on_prediction: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], None] | None = None,
    sharded: bool | None = None,
    mode: str = "whole",
    training_scale: TrainingScale | None = None,
    norm: tuple[Sequence[float], Sequence[float]] | None = None,
) -> SegMetrics:
    """mIoU of ``model`` over ``loader`` (uint8 images, full-resolution labels).

    ``mode``: whole, resize, slide or auto (:mod:`diga.inference`, decided per batch from its image
    size vs ``training_scale``, which resize/slide/auto need); the scales are fused inside each.
    ``on_prediction(images, prediction, labels)`` sees every batch as scored (e.g. to show a few).
    ``sharded``: the loader holds this rank's shard of the dataset, so the confusion matrices
    are summed over the ranks (default: whenever torch.distributed is initialised).
    ``norm``: the (mean, std) the model was trained with (a checkpoint's ``mean`` and ``std``;
    default ImageNet's).
    """
    from .data.transforms import INPUT_NORMS, normalize

    mean, std = norm or INPUT_NORMS["imagenet"]

    if sharded is None:
        sharded = torch.distributed.is_available() and torch.distributed.is_initialized()
    check_mode(mode)
    if training_scale is None and mode != "whole":
        raise ValueError(f"mode {mode!r} needs the training_scale (TrainingScale.from_meta of the checkpoint)")
    scale = training_scale or TrainingScale((1, 1), (1, 1))  # unused by whole
    was_training = model.training
    model.eval()
    cm = ConfusionMatrix(num_classes, device)
    device = torch.device(device)
    for images, labels in loader:
        x = normalize(images.to(device, non_blocking=True).float().div_(255), mean, std)
        labels = labels.to(device, non_blocking=True)
        plan = plan_inference(mode, x.shape[-2:], scale)
        logits = infer_logits(lambda xs: fused_logits(model, xs, scales, amp_dtype), x, plan,
                              out_size=labels.shape[-2:])
        pred = logits.argmax(1)
        cm.update(pred, labels)
        if on_prediction is not None:
            on_prediction(images, pred, labels)
    model.train(was_training)
    if sharded:
        torch.distributed.all_reduce(cm.mat)  # each rank saw a shard of the dataset
    return cm.compute(class_names, subset)
