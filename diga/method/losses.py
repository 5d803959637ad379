"""DiGA's losses: supervised CE, soft (distillation) CE and the symmetric distillation."""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = 255


LOSS_NORMS = ("all", "valid")


def seg_ce(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_INDEX,
           norm: str = "valid") -> torch.Tensor:
    """Pixel CE summed over valid pixels and divided by the valid pixels (``norm="valid"``, 0 and not
    NaN if none) or by all pixels, ignored ones included (``norm="all"``, the authors' code: a loss
    on a label that is mostly ignored weighs less); logits upsampled to label size."""
    if norm not in LOSS_NORMS:
        raise ValueError(f"norm must be one of {', '.join(LOSS_NORMS)}, got {norm!r}")
    if logits.shape[-2:] != labels.shape[-2:]:
        logits = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
    labels = labels.long()
    loss = F.cross_entropy(logits.float(), labels, ignore_index=ignore_index, reduction="sum")
    if norm == "all":
        return loss / labels.numel()
    # Divide by a device-side count clamped at 1: an all-ignore batch gives 0 without a host check.
    n_valid = (labels != ignore_index).sum().clamp(min=1)
    return loss / n_valid


def soft_cross_entropy(student_logits: torch.Tensor, teacher_probs: torch.Tensor) -> torch.Tensor:
    """Mean over pixels of ``-sum_c q_c log_softmax(s)_c``; the teacher side is detached."""
    q = teacher_probs.detach().float()
    if student_logits.shape != q.shape:
        raise ValueError(f"shape mismatch {tuple(student_logits.shape)} vs {tuple(q.shape)}")
    return -(q * F.log_softmax(student_logits.float(), dim=1)).sum(dim=1).mean()


def symmetric_distillation(s_clean: torch.Tensor, s_mix: torch.Tensor, t_prob_clean: torch.Tensor,
                           t_prob_mix: torch.Tensor, reverse_weight: float = 0.5) -> torch.Tensor:
    """``CE(p_T(x) -> S(x_mix)) + reverse_weight * CE(p_T(x_mix) -> S(x))``."""
    return soft_cross_entropy(s_mix, t_prob_clean) + reverse_weight * soft_cross_entropy(s_clean, t_prob_mix)
