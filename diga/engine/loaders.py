"""Data loaders for the training stages: resumable infinite sampling, rank-aware."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..classes import get_label_space
from ..data import build_dataset
from ..data.transforms import EvalTransform, TrainTransform
from ..errors import ConfigError
from . import runtime
from .config import StageConfig


class InfiniteSampler(Sampler[int]):
    """Endless shuffled indices: epoch e is a permutation seeded by (seed, e).

    Deterministic, so a resumed run continues with exactly the indices it would have drawn
    (``start`` = samples already consumed by this rank); ranks take interleaved slices.
    """

    def __init__(self, size: int, seed: int, start: int = 0) -> None:
        if size == 0:
            raise ValueError("cannot sample from an empty dataset")
        self.size, self.seed, self.start = size, seed, start
        self.rank, self.world = runtime.rank(), runtime.world_size()

    def __iter__(self) -> Iterator[int]:
        per_rank = max(self.size // self.world, 1)
        epoch, offset = divmod(self.start, per_rank)
        while True:
            g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            perm = torch.randperm(self.size, generator=g)[self.rank :: self.world][:per_rank]
            yield from perm[offset:].tolist()
            epoch, offset = epoch + 1, 0


def train_transform(cfg: StageConfig) -> TrainTransform:
    """The geometric training augmentation the settings describe (source, target and pseudo-labelled sets)."""
    return TrainTransform(crop=cfg.crop, scale=cfg.scale, base_size=cfg.base_size, base_resize=cfg.base_resize,
                          crop_fill=cfg.crop_fill)


def train_dataset(spec: str, cfg: StageConfig, split: str = "train", **kw) -> Dataset:
    dataset = build_dataset(spec, split=split, label_space=get_label_space(cfg.label_space),
                            transform=train_transform(cfg), **kw)
    check_crop_fits(dataset, cfg, spec)
    return dataset


def check_crop_fits(dataset, cfg: StageConfig, spec: str) -> None:
    """Reject a crop larger than the (resized) images: it would train mostly on padding."""
    h, w = cfg.base_size if cfg.base_size is not None else dataset.image_size(0)
    if cfg.crop[0] > h or cfg.crop[1] > w:
        raise ConfigError(
            f"--crop {cfg.crop[0]} {cfg.crop[1]} is larger than the images of {spec} ({h}x{w}"
            f"{' after resizing to base_size' if cfg.base_size else ''}); choose a crop of at most {h} {w}"
        )


def eval_dataset(spec: str, cfg: StageConfig, split: str = "val") -> Dataset:
    return build_dataset(spec, split=split, label_space=get_label_space(cfg.label_space),
                         transform=EvalTransform(cfg.eval_size))


def infinite_loader(dataset: Dataset, cfg: StageConfig, start_step: int, salt: int = 0) -> Iterator:
    """Batches forever, starting where a run stopped after ``start_step`` steps."""
    sampler = InfiniteSampler(len(dataset), cfg.seed + salt, start=start_step * cfg.batch_size)
    # Random crops/flips inside workers draw from torch's RNG: seed it by position so a resumed
    # run is reproducible too.
    gen = torch.Generator().manual_seed(cfg.seed * 7919 + salt * 104_729 + start_step)
    loader = DataLoader(
        dataset, batch_size=cfg.batch_size // cfg.accumulate, sampler=sampler, num_workers=cfg.workers,
        pin_memory=torch.cuda.is_available(), drop_last=True, generator=gen,
        persistent_workers=cfg.workers > 0, prefetch_factor=4 if cfg.workers > 0 else None,
    )
    return iter(loader)


def eval_loader(dataset: Dataset, workers: int, batch_size: int = 1, shard: bool | None = None) -> DataLoader:
    """The dataset in order; ``shard``: only this DDP rank's share (default: when distributed)."""
    # Eval images may differ in size: batch 1 unless the caller knows they match.
    sampler = None
    if runtime.is_distributed() if shard is None else shard:
        from torch.utils.data.distributed import DistributedSampler

        sampler = DistributedSampler(dataset, shuffle=False, drop_last=False)
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                      pin_memory=torch.cuda.is_available(), sampler=sampler)
