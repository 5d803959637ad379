"""The labelled source branch both training stages share: source batches, the target images the
translator draws its styles from, and the cross-domain mixture of the source views (stage 1 of
docs/METHOD.md, kept in stage 2)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import torch

from ..classes import LabelSpace
from ..errors import ConfigError
from ..method.augment import GENERALIZATION_PHOTOMETRIC, PhotometricConfig, augment_and_blend
from ..method.mix import class_mix_mask, cross_domain_mixture
from ..method.translate import build_translator
from .config import StageConfig
from .loaders import sized_loader, train_datasets


def stage_photometric(cfg: StageConfig) -> PhotometricConfig:
    """The photometric augmentation of a stage's second views: the paper's ops, with the stage's jitter
    and grayscale probabilities (``jitter_p``, ``grayscale_p``: the authors' SYNTHIA warm-up raises the
    first and lowers the second) and the ops' semantics (``augment_ops``); ``diga generalize`` leaves the
    sharpness op out, as their DG script."""
    base = GENERALIZATION_PHOTOMETRIC if cfg.generalize else PhotometricConfig()
    return dataclasses.replace(base, jitter_p=cfg.jitter_p, grayscale_p=cfg.grayscale_p, ops=cfg.augment_ops)


class SourceBranch:
    """Source (and translator target) datasets, their resumable loaders and the source views."""

    def __init__(self, cfg: StageConfig, space: LabelSpace, target_statistics: bool = False,
                 target_scale: tuple[float, float] | None = None,
                 source_scale: tuple[float, float] | None = None) -> None:
        """``target_statistics``: load target batches even when no translator needs them (the
        warm-up's target BatchNorm pass, ``warmup_target_bn``), when target images are given;
        ``target_scale`` / ``source_scale``: the target / source crops' random-rescale range (None:
        the stage's ``scale``)."""
        if not cfg.source:
            raise ConfigError("the warm-up and self-training need labelled source data: --source KIND:PATH")
        self.cfg, self.space = cfg, space
        # One (config, dataset) per base size of each side (one part without per-dataset sizes).
        source_cfg = cfg if source_scale is None else cfg.replace(scale=tuple(source_scale))
        self.source_parts = train_datasets(cfg.source, source_cfg, "source")
        self.source_set = self.source_parts[0][1]
        kw = {"fda": {"beta": cfg.fda_beta}, "color": {"space": cfg.color_space},
              "learned": {"weights": cfg.translator_weights}}.get(cfg.translator, {})
        self.translator = build_translator(cfg.translator, **kw)
        translator_needs_target = cfg.mix and self.translator.needs_target
        if translator_needs_target and not cfg.target:
            raise ConfigError(f"--translator {cfg.translator} needs target images: --target KIND:PATH")
        self.needs_target = translator_needs_target or (target_statistics and bool(cfg.target))
        target_cfg = cfg if target_scale is None else cfg.replace(scale=tuple(target_scale))
        self.target_parts = train_datasets(cfg.target, target_cfg, "target") if self.needs_target else None
        self.target_set = self.target_parts[0][1] if self.needs_target else None

    def loaders(self, start_step: int) -> tuple[Iterator, Iterator | None]:
        """(source batches, translator target batches or None), resumed after ``start_step`` steps."""
        source = sized_loader(self.source_parts, start_step)
        target = sized_loader(self.target_parts, start_step, salt=1) if self.needs_target else None
        return source, target

    def views(self, x: torch.Tensor, y: torch.Tensor, t_pool: torch.Tensor | None,
              generator: torch.Generator) -> dict[str, torch.Tensor]:
        """The clean view, its translation and the second (mixed or augmented) view."""
        cfg = self.cfg
        x_aug = augment_and_blend(x, beta=cfg.blend_beta, cfg=stage_photometric(cfg), generator=generator,
                                  space=cfg.blend_space)
        if not cfg.mix:
            return {"x": x, "x_translated": x, "x_mix": x_aug}
        x_tr = self.translator(x, t_pool if t_pool is not None else x, generator)
        mask = class_mix_mask(y, self.space.num_classes, generator, count=cfg.mix_count)
        return {"x": x, "x_translated": x_tr, "x_mix": cross_domain_mixture(x_aug, x_tr, mask)}
