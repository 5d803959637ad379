"""Class-mix masks (DACS-style) and the two DiGA mixtures, fully vectorised."""

from __future__ import annotations

from typing import Callable

import torch

from ._rng import rand

IGNORE_INDEX = 255


def class_presence(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B,H,W) trainIds -> (B,C) pixel counts per class (ignore and out-of-range ids excluded)."""
    b = labels.shape[0]
    lbl = labels.reshape(b, -1).long()
    # Route ignore (and any id >= C) to an extra bin that is dropped afterwards.
    lbl = torch.where((lbl >= 0) & (lbl < num_classes), lbl, num_classes)
    counts = torch.zeros(b, num_classes + 1, dtype=torch.int64, device=labels.device)
    counts.scatter_add_(1, lbl, torch.ones_like(lbl))
    return counts[:, :num_classes]


def choose_half(present: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B,C) bool presence -> (B,C) bool: a random ceil(n/2) of the present classes per row."""
    b, c = present.shape
    scores = rand((b, c), present, generator)
    # Absent classes get score 2 (> any draw) so they rank after every present class.
    scores = torch.where(present, scores, 2.0)
    rank = scores.argsort(dim=1).argsort(dim=1)  # rank of each class within its row
    n = present.sum(dim=1, keepdim=True)
    k = (n + 1) // 2  # ceil(n/2), as DACS
    return present & (rank < k)


def class_mix_mask(labels: torch.Tensor, num_classes: int, generator: torch.Generator | None = None,
                   include_ignore: bool = True) -> torch.Tensor:
    """(B,H,W) bool: pixels of a random half of each image's classes (+ ignore pixels if asked)."""
    b = labels.shape[0]
    chosen = choose_half(class_presence(labels, num_classes) > 0, generator)
    # Column C answers for ignore / out-of-range pixels.
    extra = torch.full((b, 1), include_ignore, dtype=torch.bool, device=labels.device)
    table = torch.cat((chosen, extra), dim=1)
    lbl = labels.reshape(b, -1).long()
    lbl = torch.where((lbl >= 0) & (lbl < num_classes), lbl, num_classes)
    return table.gather(1, lbl).view(labels.shape)


def mix(mask: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``where(mask, a, b)``; a (B,H,W) mask broadcasts over the channels of (B,C,H,W) images."""
    if a.dim() == mask.dim() + 1:
        mask = mask.unsqueeze(1)
    return torch.where(mask, a, b)


def cross_domain_mixture(x_aug: torch.Tensor, x_translated: torch.Tensor,
                         mask: torch.Tensor) -> torch.Tensor:
    """DiGA's ``x_mix = M * x_aug + (1 - M) * translate(x)``."""
    return mix(mask, x_aug, x_translated)


def make_cross_domain_mixture(x: torch.Tensor, labels: torch.Tensor, x_aug: torch.Tensor,
                              translate: Callable[..., torch.Tensor], tgt_pool: torch.Tensor,
                              num_classes: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Convenience: class-mix mask from ``labels`` then the cross-domain mixture of x_aug/translate(x)."""
    mask = class_mix_mask(labels, num_classes, generator, include_ignore=True)
    return cross_domain_mixture(x_aug, translate(x, tgt_pool, generator), mask)


def target_cross_mix(src_img: torch.Tensor, src_lbl: torch.Tensor, tgt_img: torch.Tensor,
                     tgt_lbl: torch.Tensor, num_classes: int,
                     generator: torch.Generator | None = None,
                     paste_ignore: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Paste a random half of each source image's classes onto its target image -> (t_mix, y_mix).

    ``paste_ignore``: the source's ignore pixels (and any id outside the classes) are pasted too, image
    and label, so the loss skips them (the authors' code); otherwise they keep the target image and its
    label. The random draw of the classes is the same either way."""
    if src_img.shape != tgt_img.shape or src_lbl.shape != tgt_lbl.shape:
        raise ValueError("target_cross_mix needs source and target batches of equal shape")
    mask = class_mix_mask(src_lbl, num_classes, generator, include_ignore=paste_ignore)
    return mix(mask, src_img, tgt_img), mix(mask, src_lbl.long(), tgt_lbl.long())
