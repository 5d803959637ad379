"""Between the stages: pseudo-labels for every target image, then the class centroids.

Pseudo-labels are PNG trainIds (one file per target image, written atomically, so generation
resumes by skipping files that exist) plus ``manifest.json`` written last. Work is split across
ranks when distributed; inference is batched and fused over scales on the device.

Both steps read the target images resized to ``base_size`` (pseudo_size base), or at their own size
(pseudo_size native: the authors predict Cityscapes at 1024x2048 and 512x1024 and store the labels at
1024x2048, and compute the centroids from 512x1024 inputs). A label is stored at the size it was
predicted at; self-training resizes it (nearest) with its image to whatever size it trains from.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader, Dataset, Subset

from ..checkpoint import load_model
from ..classes import IGNORE_INDEX, LabelSpace, get_label_space
from ..data import build_dataset
from ..data.base import worker_start_method
from ..data.transforms import TrainTransform, normalize
from ..errors import ConfigError, DigaError
from ..evaluate import fused_logits, resized
from ..inference import scaled_size
from ..io import atomic_write, atomic_write_text, remove_stale_temps
from ..method.prototypes import CentroidAccumulator
from ..method.pseudo import pseudo_labels
from ..progress import progress_bar
from . import runtime
from .config import StageConfig


def label_file_name(image: Path, root: Path) -> str:
    """A flat, safe, unique file name for an image's pseudo-label (never escapes its folder)."""
    try:
        rel = image.resolve().relative_to(root.resolve())
    except ValueError:
        rel = Path(image.name)
    stem = re.sub(r"[^\w.-]+", "_", rel.with_suffix("").as_posix().replace("/", "__"))
    digest = hashlib.sha1(rel.as_posix().encode()).hexdigest()[:8]
    return f"{stem[:120]}-{digest}.png"


def resize_image(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 (3,H,W) -> uint8 (3,h,w), bilinear: pseudo-labels and training see the same pixels."""
    return F.interpolate(image[None].float(), size=size, mode="bilinear",
                         align_corners=False)[0].round().clamp(0, 255).to(torch.uint8)


def _resize_label(label: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(label[None, None].float(), size=size, mode="nearest")[0, 0].long()


def _collate(batch):
    return batch


class _Indexed(Dataset):
    def __init__(self, base: Dataset, resize: tuple[int, int] | None) -> None:
        self.base, self.resize = base, resize

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        image, _ = self.base[i]
        if self.resize is not None and tuple(image.shape[-2:]) != tuple(self.resize):
            image = resize_image(image, self.resize)
        return i, image


# Pixels one inference forward may take: a batch of 8 images at the default 720x1280 base size. At
# native size (pseudo_size native) a batch is split so that it needs no more memory than that: 3
# Cityscapes images of 1024x2048 a forward.
PIXELS_PER_FORWARD = 8 * 720 * 1280


def _batches_by_shape(items, device, max_pixels: int = PIXELS_PER_FORWARD):
    """Group a list of (key, uint8 image) by image size: each group, split so that no batch holds more
    than ``max_pixels`` pixels (at least one image), is one batch -> (keys, float images in [0, 1])."""
    groups: dict[tuple, list] = {}
    for key, image in items:
        groups.setdefault(tuple(image.shape), []).append((key, image))
    for shape, group in groups.items():
        per_batch = max(1, max_pixels // (shape[-2] * shape[-1]))
        for start in range(0, len(group), per_batch):
            part = group[start:start + per_batch]
            x = torch.stack([img for _, img in part]).to(device, non_blocking=True).float().div_(255)
            yield [key for key, _ in part], x


def inference_size(cfg: StageConfig) -> tuple[int, int] | None:
    """The size target images are resized to for pseudo-labels and centroids: base_size, or with
    pseudo_size native their own (None), as the authors predict Cityscapes at its 1024x2048."""
    return None if cfg.pseudo_size == "native" else cfg.base_size


def centroid_scale(cfg: StageConfig) -> float:
    """The factor by which images at :func:`inference_size` are resized for the centroid features: 1,
    or with pseudo_size native the smallest of eval_scales. The authors compute centroids from
    512x1024 Cityscapes inputs, the half scale of their 1024x2048 + 512x1024 pseudo-label inference;
    with one scale (the cpu preset) the images stay at their size."""
    return min(cfg.eval_scales) if cfg.pseudo_size == "native" else 1.0


def generate_pseudo_labels(
    weights: str | Path, target: str, out_dir: str | Path, cfg: StageConfig, batch_size: int = 8,
) -> Path:
    """Predict every target training image at :func:`inference_size` (scales fused by max) ->
    ``out_dir/labels/*.png`` at that size."""
    out_dir = Path(out_dir)
    manifest = out_dir / "manifest.json"
    if manifest.exists():
        return manifest
    device = runtime.resolve_device(cfg.device)
    model, meta = load_model(weights, device)
    space = get_label_space(meta["label_space"])
    dataset = build_dataset(target, split="train", label_space=space)
    root = Path(getattr(dataset, "root", "."))
    names = [label_file_name(img, root) for img, _ in dataset.samples]
    labels_dir = out_dir / "labels"
    labels_dir.mkdir(parents=True, exist_ok=True)
    if runtime.is_main():
        remove_stale_temps(labels_dir)
    runtime.barrier()
    mine = range(runtime.rank(), len(dataset), runtime.world_size())
    todo = [i for i in mine if not (labels_dir / names[i]).exists()]
    amp = runtime.amp_dtype(device, cfg.amp)
    if todo:
        indexed, workers = Subset(_Indexed(dataset, inference_size(cfg)), todo), min(cfg.workers, 4)
        loader = DataLoader(indexed, batch_size=batch_size, num_workers=workers, collate_fn=_collate,
                            multiprocessing_context=worker_start_method(indexed) if workers > 0 else None)
        with progress_bar(enabled=runtime.is_main()) as progress, torch.inference_mode():
            task = progress.add_task("pseudo-labels", total=len(todo))
            for items in loader:
                for idx, x in _batches_by_shape(items, device):
                    logits = fused_logits(model, normalize(x, meta["mean"], meta["std"]), cfg.eval_scales, amp)
                    preds = pseudo_labels(logits).cpu().numpy()
                    for i, pred in zip(idx, preds):
                        _write_png(labels_dir / names[i], pred)
                    progress.advance(task, len(idx))
    runtime.barrier()
    if runtime.is_main():
        entries = [{"image": str(img), "label": names[i]} for i, (img, _) in enumerate(dataset.samples)]
        body = {"weights": str(weights), "target": target, "label_space": space.name,
                "scales": list(cfg.eval_scales), "resized_to": inference_size(cfg), "count": len(entries),
                "items": entries}
        atomic_write_text(manifest, json.dumps(body, indent=1) + "\n")
    runtime.barrier()
    return manifest


def _write_png(path: Path, labels: np.ndarray) -> None:
    atomic_write(path, lambda tmp: Image.fromarray(labels, mode="L").save(tmp, format="PNG"))


def centroid_pixel_labels(cfg: StageConfig, logits: torch.Tensor, combined: torch.Tensor) -> torch.Tensor:
    """(B,h,w) labels that choose the pixels each class centroid averages: the argmax of ``logits`` (the
    forward that gave the features; centroid_labels argmax, as the authors), or the stored pseudo-labels
    packed in ``combined`` (pseudo), which the accumulator brings to the feature grid (nearest)."""
    if cfg.centroid_labels == "argmax":
        return logits.argmax(1)
    return split_combined(combined)[0]


def compute_centroids(weights: str | Path, manifest: str | Path, out: str | Path, cfg: StageConfig,
                      batch_size: int = 8) -> Path:
    """Per-image per-class means of the head features over the pixels of each class, averaged
    (``centroid_mean``: plainly, or as the authors' capped running mean over the set's order; classes
    with fewer than 5 pixels at the feature resolution skip an image), over :func:`centroid_images`.
    The images are read at :func:`inference_size` and resized by :func:`centroid_scale`;
    :func:`centroid_pixel_labels` says which pixels belong to a class."""
    out = Path(out)
    if out.exists():
        return out
    device = runtime.resolve_device(cfg.device)
    model, meta = load_model(weights, device)
    space = get_label_space(meta["label_space"])
    data = centroid_images(manifest, space, cfg)
    acc = CentroidAccumulator(space.num_classes, model.feature_dim, min_pixels=5, device=device,
                              mean=cfg.centroid_mean)
    mine = list(range(runtime.rank(), len(data), runtime.world_size()))
    ids = iter(mine)  # the loader keeps the subset's order: each item's position in the whole set
    subset, workers = Subset(data, mine), min(cfg.workers, 4)
    # Listed, not stacked: images at their own size may differ in size (grouped below).
    loader = DataLoader(subset, batch_size=batch_size, num_workers=workers, collate_fn=_collate,
                        multiprocessing_context=worker_start_method(subset) if workers > 0 else None)
    amp, scale = runtime.amp_dtype(device, cfg.amp), centroid_scale(cfg)
    with torch.inference_mode():
        for items in loader:
            keyed = [((next(ids), label), image) for image, label in items]
            for keys, x in _batches_by_shape(keyed, device):
                x = resized(x, scaled_size(x.shape[-2:], scale))
                with runtime.autocast(device, amp):
                    logits, features = model(normalize(x, meta["mean"], meta["std"]))
                labels = torch.stack([label for _, label in keys]).to(device)
                acc.add(features.float(), centroid_pixel_labels(cfg, logits, labels), image_ids=[i for i, _ in keys])
    if runtime.is_distributed():
        acc.all_reduce()
    if runtime.is_main():
        tensors = {"centroids": acc.centroids().cpu().contiguous(), "valid": acc.valid.cpu().contiguous(),
                   **{f"acc.{k}": v.cpu().contiguous() for k, v in acc.state_dict().items()}}
        metadata = {"weights": str(weights), "labels": cfg.centroid_labels, "mean": cfg.centroid_mean,
                    "images": cfg.centroid_images}
        atomic_write(out, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))
    runtime.barrier()
    return out


class _Unlabelled(_Indexed):
    """Images at ``resize`` for the centroids, each with an all-ignore label in the packed form of
    :class:`PseudoLabelled` (the centroids' pixels then come from the model's argmax)."""

    def __getitem__(self, i: int):
        _, image = super().__getitem__(i)
        ignore = torch.full(tuple(image.shape[-2:]), IGNORE_INDEX, dtype=torch.long)
        return image, combine(ignore, ignore)


class _InPathOrder(Dataset):
    """Several datasets as one, their items ordered by image path (an image listed twice counted once)."""

    def __init__(self, parts: list[Dataset]) -> None:
        seen: dict[str, tuple[Dataset, int]] = {}
        for part in parts:
            for i, (image, _) in enumerate(part.base.samples):
                seen.setdefault(str(Path(image).resolve()), (part, i))
        self.items = [seen[path] for path in sorted(seen)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        part, j = self.items[i]
        return part[j]


def centroid_images(manifest: str | Path, space: LabelSpace, cfg: StageConfig) -> Dataset:
    """The images the centroids average over, at :func:`inference_size`, as ``(image, packed labels)``:
    the target's with their pseudo-labels (centroid_images target), or those and the source's training
    images in path order (all: the authors' semi-supervised centroids run over Cityscapes' whole train
    list, whose labelled part is the source there; the source's labels stay unused, as theirs)."""
    target = PseudoLabelled(manifest, space, transform=None, size=inference_size(cfg))
    if cfg.centroid_images == "target":
        return target
    if not cfg.source:
        raise ConfigError("centroid_images all averages the source's training images too: give --source KIND:PATH")
    source = build_dataset(cfg.source, split="train", label_space=space)
    return _InPathOrder([target, _Unlabelled(source, inference_size(cfg))])


def load_centroids(path: str | Path, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    t = load_file(str(path), device=str(device))
    return t["centroids"].float(), t["valid"].bool()


# --- target images with their pseudo-labels (and ground truth where it exists) ---------------

def combine(pseudo: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Pack pseudo-label and ground truth into one int64 map so paired transforms move both.

    ``(gt + 1) * 256 + pseudo``: a pixel padded by a crop (fill 255) decodes to pseudo 255 and
    gt ignore.
    """
    gt = torch.where(gt == IGNORE_INDEX, -1, gt.long())
    return (gt + 1) * 256 + pseudo.long()


def split_combined(combined: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    pseudo = combined % 256
    gt = combined // 256 - 1
    return pseudo, torch.where(gt < 0, IGNORE_INDEX, gt)


class PseudoLabelled(Dataset):
    """Target images with their pseudo-labels: ``(image, combine(pseudo, gt))``."""

    def __init__(self, manifest: str | Path, space: LabelSpace, transform: TrainTransform | None,
                 size: tuple[int, int] | None = None) -> None:
        manifest = Path(manifest)
        body = json.loads(manifest.read_text())
        self.labels_dir = manifest.parent / "labels"
        self.base = build_dataset(body["target"], split="train", label_space=space)
        self.names = [item["label"] for item in body["items"]]
        if len(self.names) != len(self.base):
            raise DigaError(f"{manifest} lists {len(self.names)} images but {body['target']} now has "
                             f"{len(self.base)}; delete {manifest.parent} to regenerate the pseudo-labels")
        self.transform, self.size = transform, size
        self.has_labels = getattr(self.base, "has_labels", False)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        image, gt = self.base[i]
        pseudo = torch.from_numpy(np.array(Image.open(self.labels_dir / self.names[i]))).long()
        if self.size is not None and tuple(image.shape[-2:]) != tuple(self.size):
            image = resize_image(image, self.size)
        h, w = image.shape[-2:]
        if tuple(pseudo.shape) != (h, w):
            pseudo = _resize_label(pseudo, (h, w))
        if tuple(gt.shape) != (h, w):
            gt = _resize_label(gt, (h, w))
        label = combine(pseudo, gt)
        if self.transform is not None:
            image, label = self.transform(image, label)
        return image, label
