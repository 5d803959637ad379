"""The parity check run after every export: exported model vs the PyTorch fp32 model."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from .errors import ExportError

# argmax agreement a check must reach. fp32 and int8 failures are fatal, fp16/bf16 ones warn.
# int8: the default INT8 graph of a trained deeplabv2_light agrees with fp32 on 99.65 % of the pixels
# of 100 target-val images and on >= 98.9 % of every single one; the worst variant measured (every
# layer quantised) fell to 96.3 % on one image. 97 % lets the first pass with a margin on the few
# check images and stops quantisations that change 3 % of the labels (docs/BENCHMARKS.md).
THRESHOLDS = {"fp32": 99.9, "fp16": 99.0, "bf16": 98.5, "int8": 97.0}


@dataclass
class ParityReport:
    backend: str
    precision: str
    images: int
    source: str
    sizes: list[list[int]]
    agreement: float  # % of pixels where argmax matches
    max_abs_logit: float | None  # None when the export outputs labels only
    mean_abs_logit: float | None
    threshold: float
    passed: bool
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        delta = "n/a (labels output)" if self.max_abs_logit is None else f"{self.max_abs_logit:.3g}"
        sizes = ", ".join(f"{h}x{w}" for h, w in self.sizes)
        return (f"parity {self.backend} vs PyTorch fp32 ({self.precision}) on {self.source} at {sizes}: "
                f"max |Δlogit| {delta}, argmax agreement {self.agreement:.3f}% "
                f"(threshold {self.threshold}%) -> {'ok' if self.passed else 'FAILED'}")


def compare(reference: Callable[[torch.Tensor], torch.Tensor],
            candidate: Callable[[torch.Tensor], torch.Tensor],
            batches: Sequence[torch.Tensor], *, backend: str, precision: str, source: str) -> ParityReport:
    """Run both on each (N, 3, H, W) batch; ``reference`` gives logits, ``candidate`` logits or labels."""
    agree = total = 0
    max_abs, sum_abs, n_abs = 0.0, 0.0, 0
    labels_only = False
    sizes: list[list[int]] = []
    for x in batches:
        ref = reference(x).float().cpu()
        out = candidate(x).cpu()
        size = [int(x.shape[-2]), int(x.shape[-1])]
        if size not in sizes:
            sizes.append(size)
        if out.dim() == 3:  # labels
            labels_only = True
            pred = out.long()
        else:
            if out.shape != ref.shape:
                raise ExportError(f"{backend} returned logits of shape {tuple(out.shape)}, PyTorch "
                                  f"{tuple(ref.shape)} for input {tuple(x.shape)}")
            out = out.float()
            diff = (out - ref).abs()
            max_abs = max(max_abs, float(diff.max()))
            sum_abs += float(diff.sum())
            n_abs += diff.numel()
            pred = out.argmax(1)
        if pred.shape != ref.shape[:1] + ref.shape[2:]:
            raise ExportError(f"{backend} returned labels of shape {tuple(pred.shape)} for input {tuple(x.shape)}")
        agree += int((pred == ref.argmax(1)).sum())
        total += pred.numel()
    agreement = 100.0 * agree / max(total, 1)
    threshold = THRESHOLDS.get(precision, THRESHOLDS["fp32"])
    return ParityReport(
        backend=backend, precision=precision, images=sum(int(b.shape[0]) for b in batches), source=source,
        sizes=sizes, agreement=round(agreement, 4),
        max_abs_logit=None if labels_only else float(max_abs),
        mean_abs_logit=None if labels_only else float(sum_abs / max(n_abs, 1)),
        threshold=threshold, passed=agreement >= threshold,
    )


def enforce(report: ParityReport, path, warn: Callable[[str], None]) -> None:
    """fp32 or int8 below the threshold is an error; fp16/bf16 below it is a warning."""
    if report.passed:
        return
    msg = (f"parity check failed for {path}: argmax agreement {report.agreement:.3f}% < "
           f"{report.threshold}% between PyTorch fp32 and {report.backend} ({report.precision}); "
           f"max |Δlogit| {report.max_abs_logit}")
    if report.precision == "fp32":
        raise ExportError(msg + ". The export does not reproduce the model; nothing was written. "
                                "Try another --opset, the other exporter, or report the model.")
    if report.precision == "int8":
        raise ExportError(msg + ". INT8 changes too many predictions; nothing was written. Calibrate on more "
                                "frames of the deployment camera (--calib, --calib-images), try --calib-method "
                                "percentile, or deploy fp32; --no-check keeps it unchecked.")
    warn(msg + f". Reduced precision ({report.precision}) changes predictions: validate mIoU on target "
               "data before deploying it.")


def check_batches(images: Sequence[np.ndarray], sizes: Sequence[Sequence[int]], batch: int,
                  mean, std, device="cpu") -> list[torch.Tensor]:
    """Prepared (normalised) batches of ``batch`` images, cycling through ``sizes``; a last,
    short batch is filled up by repeating images (fixed-batch exports need full batches)."""
    from .graph import prepare

    out = []
    images = list(images)
    for k, start in enumerate(range(0, len(images), batch)):
        chunk = images[start:start + batch]
        while len(chunk) < batch:
            chunk.append(chunk[len(chunk) % max(len(chunk), 1)])
        out.append(prepare(chunk, sizes[k % len(sizes)], mean, std, device))
    return out
