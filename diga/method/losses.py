"""DiGA's losses: supervised CE, soft (distillation) CE and the symmetric distillation."""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = 255


LOSS_NORMS = ("all", "valid")


def to_label_size(logits: torch.Tensor, labels: torch.Tensor, align_corners: bool = False) -> torch.Tensor:
    """``logits`` upsampled bilinearly to the size of ``labels`` (itself when already that size), with
    ``align_corners`` as given: True is the authors' ``upsample_src`` / ``upsample_tgt``."""
    if logits.shape[-2:] == labels.shape[-2:]:
        return logits
    return F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=align_corners)


def seg_ce(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_INDEX,
           norm: str = "valid", align_corners: bool = False) -> torch.Tensor:
    """Pixel CE summed over valid pixels and divided by the valid pixels (``norm="valid"``, 0 and not
    NaN if none) or by all pixels, ignored ones included (``norm="all"``, the authors' code: a loss
    on a label that is mostly ignored weighs less); logits upsampled to label size
    (:func:`to_label_size`)."""
    if norm not in LOSS_NORMS:
        raise ValueError(f"norm must be one of {', '.join(LOSS_NORMS)}, got {norm!r}")
    logits = to_label_size(logits, labels, align_corners)
    labels = labels.long()
    loss = F.cross_entropy(logits.float(), labels, ignore_index=ignore_index, reduction="sum")
    if norm == "all":
        return loss / labels.numel()
    # Divide by a device-side count clamped at 1: an all-ignore batch gives 0 without a host check.
    n_valid = (labels != ignore_index).sum().clamp(min=1)
    return loss / n_valid


SEG_LOSSES = ("ce", "ohem")


def ohem_ce(logits: torch.Tensor, labels: torch.Tensor, threshold: float = 0.7, min_kept: int = 100_000,
            ignore_index: int = IGNORE_INDEX, align_corners: bool = False) -> torch.Tensor:
    """Online hard-example mining CE (the authors' SYNTHIA ``OhemCrossEntropy``): the mean CE over the
    labelled pixels of the whole batch whose probability of their true class is below a cut-off.

    The cut-off is ``threshold``, raised to the probability of rank ``min(min_kept, n - 1)`` (from 0,
    in ascending order) among the n labelled pixels when fewer than that many lie below it, so about
    ``min_kept`` hard pixels are kept at least. The comparison is strict, as theirs: when n <= min_kept
    and the most confident pixel is at or above ``threshold``, it (and any pixel tied with it) is
    left out. Ignored pixels are never kept; no pixel kept gives 0, not NaN. Logits are upsampled to
    the label size as in :func:`seg_ce`."""
    logits = to_label_size(logits, labels, align_corners)
    labels = labels.long()
    pixel_ce = F.cross_entropy(logits.float(), labels, ignore_index=ignore_index, reduction="none").flatten()
    valid = labels.flatten() != ignore_index
    # The true class's probability is exp(-CE); ignored pixels sort last (2 > any probability).
    p_true = torch.where(valid, torch.exp(-pixel_ce.detach()), torch.full_like(pixel_ce, 2.0))
    # The cut-off's rank as a device tensor: no host sync on the count of labelled pixels.
    rank = torch.clamp(valid.sum() - 1, min=0, max=min_kept)
    cutoff = torch.clamp(p_true.sort().values.index_select(0, rank.view(1)), min=threshold)
    kept = valid & (p_true < cutoff)
    return (pixel_ce * kept).sum() / kept.sum().clamp(min=1)


def segmentation_loss(logits: torch.Tensor, labels: torch.Tensor, cfg) -> torch.Tensor:
    """The supervised segmentation loss a stage config asks for (``loss``): :func:`seg_ce` with
    ``loss_norm``, or :func:`ohem_ce` with ``ohem_threshold`` and ``ohem_min_kept`` (a mean over the
    kept pixels, as the authors' OHEM: ``loss_norm`` does not apply to it). Either upsamples the
    logits to the label size with ``align_corners=cfg.logits_align_corners``."""
    align = cfg.logits_align_corners
    if cfg.loss == "ohem":
        return ohem_ce(logits, labels, cfg.ohem_threshold, cfg.ohem_min_kept, align_corners=align)
    if cfg.loss != "ce":
        raise ValueError(f"loss must be one of {', '.join(SEG_LOSSES)}, got {cfg.loss!r}")
    return seg_ce(logits, labels, norm=cfg.loss_norm, align_corners=align)


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


DISTIL_RESOLUTIONS = ("crop", "output")


def distillation_size(resolution: str, crop: tuple[int, int] | torch.Size) -> tuple[int, int] | None:
    """The size :func:`distillation_from_logits` works at: the crop's (``"crop"``) or the logits' own (``None``)."""
    if resolution not in DISTIL_RESOLUTIONS:
        raise ValueError(f"distil_resolution must be one of {', '.join(DISTIL_RESOLUTIONS)}, got {resolution!r}")
    return (int(crop[0]), int(crop[1])) if resolution == "crop" else None


def distillation_from_logits(s_clean: torch.Tensor, s_mix: torch.Tensor, t_clean: torch.Tensor,
                             t_mix: torch.Tensor, size: tuple[int, int] | None = None,
                             reverse_weight: float = 0.5) -> torch.Tensor:
    """:func:`symmetric_distillation` from student and teacher logits. ``size``: all four are first
    upsampled bilinearly to it with ``align_corners=True`` and the teacher's softmax taken there (the
    authors' code, at crop resolution); ``None``: at the logits' own resolution (the output stride)."""
    logits = [s_clean, s_mix, t_clean, t_mix]
    if size is not None and tuple(s_clean.shape[-2:]) != tuple(size):
        logits = [F.interpolate(v.float(), size=tuple(size), mode="bilinear", align_corners=True) for v in logits]
    s_clean, s_mix, t_clean, t_mix = (v.float() for v in logits)
    return symmetric_distillation(s_clean, s_mix, t_clean.softmax(1), t_mix.softmax(1), reverse_weight)
