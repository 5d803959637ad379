"""Stage 1: warm-up by symmetric knowledge distillation with the cross-domain mixture."""

from __future__ import annotations

import torch

from ..method.augment import augment_and_blend
from ..method.losses import seg_ce, symmetric_distillation
from ..method.mix import class_mix_mask, cross_domain_mixture
from ..method.translate import build_translator
from .loaders import infinite_loader, train_dataset
from .trainer import Trainer
from .visualize import save_grid


class WarmupTrainer(Trainer):
    """``L = CE(S(x), y) + lambda * L_distil`` with the EMA teacher (method.md, stage 1).

    Ablations: ``distil=False`` drops the distillation term (the mixed view then gets its own CE,
    since it keeps the label y); ``mix=False`` replaces the cross-domain mixture by the augmented
    view alone; both off is the source-only baseline.
    """

    stage = "warmup"

    @property
    def uses_teacher(self) -> bool:  # type: ignore[override]
        return self.cfg.distil

    def build_data(self) -> None:
        super().build_data()
        cfg = self.cfg
        if not cfg.source:
            raise ValueError("the warm-up needs labelled source data: --source KIND:PATH")
        self.source_set = train_dataset(cfg.source, cfg)
        self.needs_target = cfg.mix and cfg.translator != "none"
        if self.needs_target and not cfg.target:
            raise ValueError(f"--translator {cfg.translator} needs target images: --target KIND:PATH")
        self.target_set = train_dataset(cfg.target, cfg) if self.needs_target else None
        kw = {"fda": {"beta": cfg.fda_beta}, "color": {"space": cfg.color_space}}.get(cfg.translator, {})
        self.translator = build_translator(cfg.translator, **kw)

    def run(self):
        self.source = infinite_loader(self.source_set, self.cfg, self.start_step)
        self.target = infinite_loader(self.target_set, self.cfg, self.start_step, salt=1) if self.needs_target else None
        return super().run()

    def source_views(self, x: torch.Tensor, y: torch.Tensor, t_pool: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """The clean view, its translation and the second (mixed or augmented) view."""
        cfg = self.cfg
        x_aug = augment_and_blend(x, beta=cfg.blend_beta, generator=self.gen)
        if not cfg.mix:
            return {"x": x, "x_translated": x, "x_mix": x_aug}
        x_tr = self.translator(x, t_pool if t_pool is not None else x, self.gen)
        mask = class_mix_mask(y, self.space.num_classes, self.gen)
        return {"x": x, "x_translated": x_tr, "x_mix": cross_domain_mixture(x_aug, x_tr, mask)}

    def distillation(self, s_clean, s_mix, x, x_mix) -> torch.Tensor:
        t_logits = self.teacher_forward(torch.cat([x, x_mix]), features=False)[0].float()
        t_clean, t_mix = t_logits.softmax(1).chunk(2)
        return symmetric_distillation(s_clean.float(), s_mix.float(), t_clean, t_mix)

    def train_step(self, step: int) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        xs, ys = next(self.source)
        x, y = self.prepare(xs), ys.to(self.device, non_blocking=True)
        t_pool = self.prepare(next(self.target)[0]) if self.target is not None else None
        if not cfg.distil and not cfg.mix:  # source-only baseline
            logits = self.forward(x)[0]
            self._vis = {"source": x, "prediction": logits, "ground truth": y}
            return {"loss": seg_ce(logits.float(), y)}
        views = self.source_views(x, y, t_pool)
        s_logits = self.forward(torch.cat([x, views["x_mix"]]))[0]
        s_clean, s_mix = s_logits.chunk(2)
        losses = {"seg": seg_ce(s_clean.float(), y)}
        if cfg.distil:
            losses["distil"] = self.distillation(s_clean, s_mix, x, views["x_mix"])
            losses["loss"] = losses["seg"] + cfg.distil_weight * losses["distil"]
        else:
            losses["seg_mix"] = seg_ce(s_mix.float(), y)
            losses["loss"] = losses["seg"] + losses["seg_mix"]
        self._vis = {"source": x, "translated": views["x_translated"], "mixed": views["x_mix"],
                     "prediction": s_clean, "ground truth": y}
        return losses

    def visualize(self, step: int) -> None:
        if getattr(self, "_vis", None):
            save_grid(self.dir / "vis" / f"step_{step:07d}.png", self._vis, self.space)
