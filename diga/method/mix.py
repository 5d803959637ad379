"""Class-mix masks (DACS-style) and the two DiGA mixtures, fully vectorised."""

from __future__ import annotations

from typing import Callable

import torch

from ._rng import rand

IGNORE_INDEX = 255


def _routed_labels(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B,H,W) trainIds -> (B,H*W) long ids, ignore (and any id outside 0..C-1) routed to C."""
    lbl = labels.reshape(labels.shape[0], -1).long()
    return torch.where((lbl >= 0) & (lbl < num_classes), lbl, num_classes)


def _bin_counts(lbl: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Routed (B,N) ids -> (B,C+1) pixel counts, column C for ignore / out-of-range ids."""
    counts = torch.zeros(lbl.shape[0], num_classes + 1, dtype=torch.int64, device=lbl.device)
    return counts.scatter_add_(1, lbl, torch.ones_like(lbl))


def class_presence(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B,H,W) trainIds -> (B,C) pixel counts per class (ignore and out-of-range ids excluded)."""
    return _bin_counts(_routed_labels(labels, num_classes), num_classes)[:, :num_classes]


# How many classes a class-mix mask takes per image: ceil(n/2) of the n classes present (ceil, as
# DACS), or floor(m/2) drawn from the m distinct label values present, the ignore label counting as
# one of them when the image has ignore pixels (authors: their training scripts sample from
# ``unique(y)``, 255 included, so a drawn 255 takes the place of a class).
MIX_COUNTS = ("authors", "ceil")


def choose_half(present: torch.Tensor, generator: torch.Generator | None = None,
                count: str = "ceil", ignore_present: torch.Tensor | None = None) -> torch.Tensor:
    """(B,C) bool presence -> (B,C) bool: a random half of the present classes per row.

    ``count="ceil"``: ceil(n/2) of the n present classes. ``count="authors"``: floor(m/2) draws
    without replacement from the m candidates, the present classes plus, where ``ignore_present``
    (B,) is true, the ignore label; a drawn ignore label is not a class, so the row then keeps one
    class fewer. The ignore label's own membership of the mask is the caller's (``include_ignore``)."""
    if count not in MIX_COUNTS:
        raise ValueError(f"count must be one of {', '.join(MIX_COUNTS)}, got {count!r}")
    b, c = present.shape
    if count == "authors":
        if ignore_present is None:
            ignore_present = torch.zeros(b, dtype=torch.bool, device=present.device)
        candidates = torch.cat((present, ignore_present.view(b, 1).to(torch.bool)), dim=1)
        k = candidates.sum(dim=1, keepdim=True) // 2  # floor(m/2), ignore among the m
        return (candidates & (_rank(candidates, generator) < k))[:, :c]
    n = present.sum(dim=1, keepdim=True)
    k = (n + 1) // 2  # ceil(n/2), as DACS
    return present & (_rank(present, generator) < k)


def _rank(present: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Each column's rank in a random order of its row, present columns first."""
    scores = rand(tuple(present.shape), present, generator)
    # Absent classes get score 2 (> any draw) so they rank after every present class.
    scores = torch.where(present, scores, 2.0)
    return scores.argsort(dim=1).argsort(dim=1)


def class_mix_mask(labels: torch.Tensor, num_classes: int, generator: torch.Generator | None = None,
                   include_ignore: bool = True, count: str = "ceil") -> torch.Tensor:
    """(B,H,W) bool: pixels of a random half of each image's classes (+ ignore pixels if asked).

    ``count``: how many classes, see :func:`choose_half` (ignore and out-of-range ids are one
    candidate with ``"authors"``)."""
    b = labels.shape[0]
    lbl = _routed_labels(labels, num_classes)
    present = _bin_counts(lbl, num_classes) > 0  # one pass: the classes and (column C) the ignore label
    ignore_present = present[:, num_classes] if count == "authors" else None
    chosen = choose_half(present[:, :num_classes], generator, count, ignore_present)
    # Column C answers for ignore / out-of-range pixels.
    extra = torch.full((b, 1), include_ignore, dtype=torch.bool, device=labels.device)
    table = torch.cat((chosen, extra), dim=1)
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
                     paste_ignore: bool = False, count: str = "ceil") -> tuple[torch.Tensor, torch.Tensor]:
    """Paste a random half of each source image's classes onto its target image -> (t_mix, y_mix).

    ``paste_ignore``: the source's ignore pixels (and any id outside the classes) are pasted too, image
    and label, so the loss skips them (the authors' code); otherwise they keep the target image and its
    label. The random draw of the classes is the same either way. ``count``: how many classes, see
    :func:`choose_half`."""
    if src_img.shape != tgt_img.shape or src_lbl.shape != tgt_lbl.shape:
        raise ValueError("target_cross_mix needs source and target batches of equal shape")
    mask = class_mix_mask(src_lbl, num_classes, generator, include_ignore=paste_ignore, count=count)
    return mix(mask, src_img, tgt_img), mix(mask, src_lbl.long(), tgt_lbl.long())
