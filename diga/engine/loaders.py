"""Data loaders for the training stages: resumable infinite sampling, rank-aware."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..classes import get_label_space
from ..data import build_dataset
from ..data.base import worker_start_method
from ..data.transforms import EvalTransform, TrainTransform
from ..errors import ConfigError
from . import runtime
from .config import BASE_SIZE_LISTS, StageConfig


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


def train_transform(cfg: StageConfig, side: str = "source") -> TrainTransform:
    """The geometric training augmentation the settings describe (source, target and pseudo-labelled
    sets); ``crop_retry`` applies to the labelled source side only, as the authors' loaders."""
    return TrainTransform(crop=cfg.crop, scale=cfg.scale, base_size=cfg.base_size, base_resize=cfg.base_resize,
                          crop_fill=cfg.crop_fill, scale_mode=cfg.scale_mode,
                          crop_retry=cfg.crop_retry if side == "source" else 0)


# Per-dataset base sizes (source_base_sizes, target_base_sizes): a side's batch is made of one
# sub-batch per base size, each from its own dataset (the same images, another transform) and its
# own resumable loader, concatenated in list order, as the authors' scripts concatenate the batches
# of their two loaders. A sub-batch is described by a config of its own: the entry's size as
# base_size and its crop count as batch_size, so the one-size code below serves it unchanged.

# Added to a loader's salt per sub-batch after the first: the sub-batches draw different images.
PART_SALT = 1000


def side_configs(cfg: StageConfig, side: str) -> list[StageConfig]:
    """One config per sub-batch of ``side`` ("source" or "target"); ``[cfg]`` when the side has no
    base-size list (the whole batch from ``base_size``, as before the lists existed)."""
    entries = {"source": cfg.source_base_sizes, "target": cfg.target_base_sizes}[side]
    if not entries:
        return [cfg]
    # The worker processes are shared out between the sub-batches' loaders (each keeps at least one).
    workers = -(-cfg.workers // len(entries))
    # A sub-batch's config has no lists of its own (their counts make up the whole batch, not its part).
    no_lists = dict.fromkeys(BASE_SIZE_LISTS)
    return [cfg.replace(base_size=(h, w), batch_size=n, workers=workers, **no_lists) for h, w, n in entries]


def train_datasets(spec: str, cfg: StageConfig, side: str) -> list[tuple[StageConfig, Dataset]]:
    """(sub-batch config, dataset) for each base size of ``side``."""
    parts = [(part, train_dataset(spec, part, side=side)) for part in side_configs(cfg, side)]
    if len(parts) > 1:  # each part checked its own crops: now the whole batch, as with one base size
        check_batch_fits(len(parts[0][1]), cfg, spec)
    return parts


def sized_loader(parts: list[tuple[StageConfig, Dataset]], start_step: int, salt: int = 0) -> Iterator:
    """Batches forever from ``parts`` (see :func:`train_datasets`): each part's sub-batch, concatenated
    in order (micro-batches likewise: each part gives its crops / accumulate)."""
    if len(parts) == 1:
        part, dataset = parts[0]
        return infinite_loader(dataset, part, start_step, salt)
    return _concatenated([infinite_loader(dataset, part, start_step, salt + PART_SALT * k)
                          for k, (part, dataset) in enumerate(parts)])


def _concatenated(loaders: list[Iterator]) -> Iterator:
    while True:
        batches = [next(loader) for loader in loaders]
        yield [_cat(items) for items in zip(*batches)]


def _cat(items: tuple[torch.Tensor, ...]) -> torch.Tensor:
    # Pinned sub-batches (a CUDA run) give a pinned batch: its copy to the GPU stays asynchronous.
    out = torch.cat(items)
    return out.pin_memory() if items[0].is_pinned() else out


def train_dataset(spec: str, cfg: StageConfig, split: str = "train", side: str = "source", **kw) -> Dataset:
    dataset = build_dataset(spec, split=split, label_space=get_label_space(cfg.label_space),
                            transform=train_transform(cfg, side), **kw)
    check_batch_fits(len(dataset), cfg, spec)
    check_crop_fits(dataset, cfg, spec)
    return dataset


def check_batch_fits(n_images: int, cfg: StageConfig, name: str) -> None:
    """Reject a batch larger than the images a process samples from: every batch would repeat images
    (a batch of 100000 from 16 images would load for minutes before the first step)."""
    world = runtime.world_size()
    per_rank = n_images // world
    if cfg.batch_size > per_rank:
        shared = f", {per_rank} per process for {world} processes" if world > 1 else ""
        raise ConfigError(
            f"--batch-size {cfg.batch_size} is larger than the {n_images} image(s) of {name}{shared}: no batch "
            f"of distinct images can be formed; choose --batch-size {max(per_rank, 1)} or less (or more images)"
        )


def loader_workers(requested: int) -> int:
    """Worker processes for a training loader: at most one per CPU this process may use."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(requested, cpus)


def _name(dataset: Dataset) -> str:
    """The folder a dataset (or the dataset it wraps, e.g. pseudo-labelled targets) reads."""
    root = getattr(dataset, "root", None) or getattr(getattr(dataset, "base", None), "root", None)
    return str(root) if root else type(dataset).__name__


def _worker_ignores_ctrl_c(worker_id: int) -> None:
    # Ctrl-C reaches the whole process group: the training process stops at a step boundary and
    # shuts its workers down; a worker dying on the signal would fail that last step instead.
    # (SIGTERM keeps its default: it is how a loader ends a worker that does not exit.)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


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
    check_batch_fits(len(dataset), cfg, _name(dataset))
    sampler = InfiniteSampler(len(dataset), cfg.seed + salt, start=start_step * cfg.batch_size)
    workers = loader_workers(cfg.workers)
    # Random crops/flips inside workers draw from torch's RNG: seed it by position so a resumed
    # run is reproducible too.
    gen = torch.Generator().manual_seed(cfg.seed * 7919 + salt * 104_729 + start_step)
    loader = DataLoader(
        dataset, batch_size=cfg.batch_size // cfg.accumulate, sampler=sampler, num_workers=workers,
        pin_memory=runtime.resolve_device(cfg.device).type == "cuda", drop_last=True, generator=gen,
        persistent_workers=workers > 0, prefetch_factor=4 if workers > 0 else None,
        worker_init_fn=_worker_ignores_ctrl_c if workers > 0 else None,
        multiprocessing_context=worker_start_method(dataset) if workers > 0 else None,
    )
    return iter(loader)


def eval_loader(dataset: Dataset, workers: int, batch_size: int = 1, shard: bool | None = None,
                device: torch.device | None = None) -> DataLoader:
    """The dataset in order; ``shard``: only this DDP rank's share (default: when distributed).
    Batches are pinned for a copy to a CUDA ``device`` (pinning for the CPU only costs memory)."""
    # Eval images may differ in size: batch 1 unless the caller knows they match.
    sampler = None
    if runtime.is_distributed() if shard is None else shard:
        from torch.utils.data.distributed import DistributedSampler

        sampler = DistributedSampler(dataset, shuffle=False, drop_last=False)
    # A generator of its own: without one, each pass draws the workers' base seed from torch's
    # global RNG, which dropout also uses, so evaluating during training would change the training.
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                      pin_memory=device is not None and device.type == "cuda", sampler=sampler,
                      generator=torch.Generator().manual_seed(0),
                      worker_init_fn=_worker_ignores_ctrl_c if workers > 0 else None,
                      multiprocessing_context=worker_start_method(dataset) if workers > 0 else None)
