"""Confusion matrix and mIoU, accumulated on the device; model evaluation over a dataset."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .classes import IGNORE_INDEX


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

    def merge(self, other: "ConfusionMatrix") -> None:
        self.mat += other.mat.to(self.mat.device)

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


def fused_logits(model: torch.nn.Module, x: torch.Tensor, scales: Sequence[float] = (1.0,)) -> torch.Tensor:
    """Logits at the input size, max-fused over ``scales`` (the paper's full + half evaluation)."""
    size = x.shape[-2:]
    fused = None
    for s in scales:
        xs = x if s == 1.0 else F.interpolate(x, scale_factor=s, mode="bilinear", align_corners=False)
        logits = model(xs)[0]
        logits = F.interpolate(logits.float(), size=size, mode="bilinear", align_corners=False)
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
    progress=None,
) -> SegMetrics:
    """mIoU of ``model`` over ``loader`` (uint8 images, full-resolution labels)."""
    from .data.transforms import normalize

    was_training = model.training
    model.eval()
    cm = ConfusionMatrix(num_classes, device)
    device = torch.device(device)
    for images, labels in loader:
        x = normalize(images.to(device, non_blocking=True).float().div_(255))
        labels = labels.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            logits = fused_logits(model, x, scales)
        if logits.shape[-2:] != labels.shape[-2:]:
            logits = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
        cm.update(logits.argmax(1), labels)
        if progress is not None:
            progress()
    model.train(was_training)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(cm.mat)  # each rank saw a shard of the dataset
    return cm.compute(class_names, subset)
