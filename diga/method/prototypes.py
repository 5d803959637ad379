"""Class centroids of head features, prototype labels and pseudo-label selection."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

IGNORE_INDEX = 255


def _to_size(labels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B,H,W) integer labels resized with nearest neighbour to ``size`` (no-op if equal)."""
    if tuple(labels.shape[-2:]) == tuple(size):
        return labels.long()
    return F.interpolate(labels[:, None].float(), size=size, mode="nearest")[:, 0].long()


def class_feature_sums(features: torch.Tensor, labels: torch.Tensor,
                       num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image per-class feature sums (B,C,D) and pixel counts (B,C); ignore/255 excluded."""
    b, d = features.shape[:2]
    labels = _to_size(labels, features.shape[-2:])
    lbl = labels.reshape(b, -1)
    lbl = torch.where((lbl >= 0) & (lbl < num_classes), lbl, num_classes)  # extra bin, dropped
    f = features.detach().float().reshape(b, d, -1).transpose(1, 2)  # (B, hw, D)
    sums = torch.zeros(b, num_classes + 1, d, device=features.device, dtype=torch.float32)
    sums.scatter_add_(1, lbl[:, :, None].expand(-1, -1, d), f)
    counts = torch.zeros(b, num_classes + 1, device=features.device, dtype=torch.float32)
    counts.scatter_add_(1, lbl, torch.ones_like(lbl, dtype=torch.float32))
    return sums[:, :num_classes], counts[:, :num_classes]


def class_feature_means(features: torch.Tensor, labels: torch.Tensor, num_classes: int,
                        min_pixels: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image per-class mean features (B,C,D) (zero where count < min_pixels) and counts (B,C)."""
    sums, counts = class_feature_sums(features, labels, num_classes)
    keep = counts >= max(min_pixels, 1)
    means = torch.where(keep[..., None], sums / counts.clamp(min=1.0)[..., None], 0.0)
    return means, counts


# The authors' centroid statistic (calc_centroids.py): 5 passes over the target set, each image's class
# mean folded into a running mean whose count stops at 3000.
AUTHORS_CENTROID_PASSES = 5
AUTHORS_CENTROID_COUNT_CAP = 3000
CENTROID_MEANS = ("once", "authors")


def capped_running_mean_weights(n: int, passes: int = AUTHORS_CENTROID_PASSES,
                                cap: int = AUTHORS_CENTROID_COUNT_CAP) -> torch.Tensor:
    """(n,) float64 weights w such that ``w @ vectors`` is the running mean ``m <- (m c + v) / (c + 1)``,
    ``c <- min(c + 1, cap)``, over ``passes`` replays of the same n vectors in order.

    While ``passes * n <= cap`` every weight is 1/n (the plain mean). Beyond the cap the update turns
    into an exponential average with weight 1/(cap + 1), so the later images of the order weigh more:
    over 5 passes of Cityscapes' 2975 train images, the last ones about 2.6x the first ones. The
    recursion is linear in the vectors, so its weights are computed once and applied in one product
    instead of replaying 256-d updates."""
    if n == 0:
        return torch.zeros(0, dtype=torch.float64)
    count = torch.arange(passes * n, dtype=torch.float64).clamp(max=cap)  # the count before each update
    gain, keep = 1.0 / (count + 1), count / (count + 1)  # the new vector's and the running mean's shares
    # the weight of update k in the result: its gain times every later update's keep
    later = torch.cat([torch.flip(torch.cumprod(torch.flip(keep[1:], [0]), 0), [0]), torch.ones(1, dtype=torch.float64)])
    return (gain * later).view(passes, n).sum(0)


class CentroidAccumulator:
    """Centroids from per-image class means (DiGA's between-stages step).

    ``mean="once"``: the mean over images of the per-image class means. ``mean="authors"``: the
    authors' statistic (:func:`capped_running_mean_weights`, images in the order of their ids); it
    keeps every image's class means until :meth:`centroids` (19 x 256 floats an image: 58 MB for
    Cityscapes' train set). Their 5 passes see the same images through the same eval-mode model, so
    one pass gives every vector they fold in."""

    def __init__(self, num_classes: int, dim: int, min_pixels: int = 5,
                 device: torch.device | str | None = None, mean: str = "once") -> None:
        """Empty sums (C,D) and image counts (C,) on ``device`` (float32)."""
        if mean not in CENTROID_MEANS:
            raise ValueError(f"mean must be one of {', '.join(CENTROID_MEANS)} (got {mean!r})")
        self.num_classes = num_classes
        self.dim = dim
        self.min_pixels = min_pixels
        self.mean = mean
        self.sums = torch.zeros(num_classes, dim, device=device)
        self.counts = torch.zeros(num_classes, device=device)
        self.image_means: list[tuple[int, torch.Tensor, torch.Tensor]] = []  # (id, (C,D), kept (C,)) on the CPU

    @torch.no_grad()
    def add(self, features: torch.Tensor, labels: torch.Tensor, image_ids: list[int] | None = None) -> None:
        """Add a batch: features (B,D,h,w), predicted labels (B,h,w) (resized nearest if not); with
        ``mean="authors"`` also each image's position in the set (``image_ids``), which orders them."""
        if self.sums.device != features.device:
            self.sums, self.counts = self.sums.to(features.device), self.counts.to(features.device)
        means, counts = class_feature_means(features, labels, self.num_classes, self.min_pixels)
        keep = (counts >= self.min_pixels).float()  # classes with too few pixels in an image skip it
        self.sums += (means * keep[..., None]).sum(0)
        self.counts += keep.sum(0)
        if self.mean == "authors":
            if image_ids is None or len(image_ids) != len(means):
                raise ValueError("mean='authors' needs one image id per image of the batch (they order the images)")
            self.image_means += [(int(i), m.cpu(), k.bool().cpu()) for i, m, k in zip(image_ids, means, keep)]

    @property
    def valid(self) -> torch.Tensor:
        """(C,) bool: classes seen in at least one image."""
        return self.counts > 0

    def centroids(self) -> torch.Tensor:
        """(C,D) the centroids; zeros for classes never seen."""
        if self.mean == "once":
            return self.sums / self.counts.clamp(min=1.0)[:, None]
        out = torch.zeros(self.num_classes, self.dim, dtype=torch.float64)
        if not self.image_means:
            return out.float().to(self.sums.device)
        ordered = sorted(self.image_means, key=lambda item: item[0])
        means = torch.stack([m for _, m, _ in ordered]).double()  # (N,C,D) in the set's order
        # kept classes, without the vectors that sum to exactly zero (the authors skip those)
        folded = torch.stack([k for _, _, k in ordered]) & (means.sum(-1) != 0)
        for c in range(self.num_classes):
            vectors = means[folded[:, c], c]
            if len(vectors):
                out[c] = capped_running_mean_weights(len(vectors)) @ vectors
        return out.float().to(self.sums.device)

    def all_reduce(self, group: Any = None) -> None:
        """Sum the accumulators over a torch.distributed group (no-op when not initialised); with
        ``mean="authors"`` every rank also receives every rank's image means."""
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.sums, group=group)
            dist.all_reduce(self.counts, group=group)
            if self.mean == "authors":
                gathered: list[Any] = [None] * dist.get_world_size(group)
                dist.all_gather_object(gathered, self.image_means, group=group)
                self.image_means = [item for part in gathered for item in part]

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The raw sums and counts (saved beside the centroids)."""
        return {"sums": self.sums, "counts": self.counts}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore sums and counts."""
        self.sums = state["sums"].to(self.sums).clone()
        self.counts = state["counts"].to(self.counts).clone()


def prototype_labels(features: torch.Tensor, centroids: torch.Tensor,
                     valid: torch.Tensor | None = None) -> torch.Tensor:
    """(B,h,w) argmax of softmax(-||f - c||_2) = nearest centroid; invalid centroids never chosen."""
    f = features.detach().float()
    c = centroids.float()
    # ||f-c||^2 = |f|^2 - 2 f.c + |c|^2; |f|^2 is constant per pixel so the argmin ignores it, and
    # softmax is monotone, so argmax softmax(-d) = argmin d: no need to materialise either.
    # Autocast off: a bf16 matmul here could flip near-ties between centroids.
    with torch.autocast(device_type=f.device.type, enabled=False):
        d2 = (c * c).sum(1)[None, :, None, None] - 2.0 * torch.einsum("bdhw,cd->bchw", f, c)
    if valid is not None:
        d2 = torch.where(valid[None, :, None, None], d2, float("inf"))
    return d2.argmin(dim=1)


def prototype_labels_bilinear(features: torch.Tensor, centroids: torch.Tensor, size: tuple[int, int],
                              valid: torch.Tensor | None = None) -> torch.Tensor:
    """(B,H,W) prototype labels at ``size``: softmax(-||f - c||_2) over the classes, upsampled bilinearly
    (corners aligned) to ``size``, then the argmax (the authors' selection). Invalid centroids count as
    zero vectors and stay eligible, as the never-updated centroids of classes a model has not seen."""
    f = features.detach().float()
    c = centroids.float()
    if valid is not None:
        c = torch.where(valid[:, None], c, torch.zeros_like(c))
    with torch.autocast(device_type=f.device.type, enabled=False):
        d2 = ((f * f).sum(1, keepdim=True) + (c * c).sum(1)[None, :, None, None]
              - 2.0 * torch.einsum("bdhw,cd->bchw", f, c))
        weights = (-d2.clamp_min(0).sqrt()).softmax(dim=1)
        weights = F.interpolate(weights, size=tuple(size), mode="bilinear", align_corners=True)
    return weights.argmax(dim=1)


def select_dynamic(pseudo: torch.Tensor, proto: torch.Tensor) -> torch.Tensor:
    """Keep pseudo-labels where they equal the prototype label (nearest-upsampled), else 255."""
    proto = _to_size(proto, pseudo.shape[-2:])
    pseudo = pseudo.long()
    return torch.where(pseudo == proto, pseudo, IGNORE_INDEX)


def select_threshold(pseudo: torch.Tensor, probs: torch.Tensor, threshold: float = 0.9) -> torch.Tensor:
    """Keep pseudo-labels whose max probability reaches ``threshold`` (baseline), else 255."""
    if probs.shape[-2:] != pseudo.shape[-2:]:
        probs = F.interpolate(probs.float(), size=pseudo.shape[-2:], mode="bilinear", align_corners=False)
    pseudo = pseudo.long()
    return torch.where(probs.amax(dim=1) >= threshold, pseudo, IGNORE_INDEX)


def select_none(pseudo: torch.Tensor) -> torch.Tensor:
    """Keep every pseudo-label (no selection)."""
    return pseudo.long()


@torch.no_grad()
def batch_class_sums(features: torch.Tensor, labels: torch.Tensor, teacher_pred: torch.Tensor,
                     num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Feature sums (C,D) and pixel counts (C,) over pixels where label == teacher argmax, batch pooled."""
    size = features.shape[-2:]
    labels = _to_size(labels, size)
    teacher_pred = _to_size(teacher_pred, size)
    agree = torch.where(labels == teacher_pred, labels, IGNORE_INDEX)
    sums, counts = class_feature_sums(features, agree, num_classes)
    return sums.sum(0), counts.sum(0)


@torch.no_grad()
def image_class_means(features: torch.Tensor, labels: torch.Tensor, teacher_pred: torch.Tensor,
                      num_classes: int, min_pixels: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image class means (B,C,D) over pixels where label == teacher argmax, and (B,C) bool:
    the class has at least ``min_pixels`` such pixels in that image (the authors' update statistic)."""
    size = features.shape[-2:]
    labels, teacher_pred = _to_size(labels, size), _to_size(teacher_pred, size)
    agree = torch.where(labels == teacher_pred, labels, IGNORE_INDEX)
    means, counts = class_feature_means(features, agree, num_classes, min_pixels)
    return means, counts >= max(min_pixels, 1)


@torch.no_grad()
def apply_image_updates(centroids: torch.Tensor, means: torch.Tensor, present: torch.Tensor,
                        momentum: float = 1e-4) -> torch.Tensor:
    """One EMA step per image and present class, image after image (the authors' code): a class seen
    in k images moves k times, and every image weighs the same whatever its pixel count."""
    for image_means, image_present in zip(means, present):
        centroids = ema_centroids(centroids, image_means, image_present, momentum)
    return centroids


@torch.no_grad()
def ema_centroids(centroids: torch.Tensor, means: torch.Tensor, present: torch.Tensor,
                  momentum: float = 1e-4) -> torch.Tensor:
    """``c <- (1-m) c + m v`` for present classes; the others unchanged (returns a new tensor)."""
    updated = (1.0 - momentum) * centroids + momentum * means.to(centroids.dtype)
    return torch.where(present[:, None], updated, centroids)


@torch.no_grad()
def apply_centroid_update(centroids: torch.Tensor, sums: torch.Tensor, counts: torch.Tensor,
                          momentum: float = 1e-4) -> torch.Tensor:
    """EMA of each class seen in the statistics of :func:`batch_class_sums` towards its mean.

    Under DDP, sum ``sums`` and ``counts`` over the ranks first: every rank then applies the same
    update, from the whole global batch.
    """
    means = sums / counts.clamp(min=1.0)[:, None]
    return ema_centroids(centroids, means, counts > 0, momentum)


@torch.no_grad()
def update_centroids(centroids: torch.Tensor, features: torch.Tensor, labels: torch.Tensor,
                     teacher_pred: torch.Tensor, num_classes: int, momentum: float = 1e-4) -> torch.Tensor:
    """One DiGA centroid update from a batch in one process: the batch statistics, then the update."""
    sums, counts = batch_class_sums(features, labels, teacher_pred, num_classes)
    return apply_centroid_update(centroids, sums, counts, momentum)
