"""Stage 1: warm-up by symmetric knowledge distillation with the cross-domain mixture."""

from __future__ import annotations

import torch

from ..method.losses import distillation_from_logits, distillation_size, segmentation_loss
from .source_branch import SourceBranch
from .trainer import Trainer
from .visualize import save_grid


class WarmupTrainer(Trainer):
    """``L = CE(S(x), y) + lambda * L_distil`` with the EMA teacher (docs/METHOD.md, warm-up).

    Ablations: ``distil=False`` drops the distillation term (the mixed view then gets its own CE,
    since it keeps the label y); ``mix=False`` replaces the cross-domain mixture by the augmented
    view alone; both off is the source-only baseline. ``generalize`` is the same loop without any
    target image (``diga generalize``): the second view is the augmented source.
    """

    @property
    def stage(self) -> str:  # type: ignore[override]
        return "generalize" if self.cfg.generalize else "warmup"

    @property
    def uses_teacher(self) -> bool:  # type: ignore[override]
        return self.cfg.distil

    @property
    def lr_schedule(self) -> str:  # type: ignore[override]
        return self.cfg.warmup_lr_schedule

    def build_data(self) -> None:
        super().build_data()
        self.branch = SourceBranch(self.cfg, self.space, target_statistics=self.cfg.warmup_target_bn,
                                   target_scale=self.cfg.warmup_target_scale)
        # inference_size() looks at these when no size is configured
        self.source_set, self.target_set = self.branch.source_set, self.branch.target_set

    def run(self):
        self.source, self.target = self.branch.loaders(self.start_step)
        return super().run()

    def distillation(self, student_heads: list[tuple[float, torch.Tensor]], x, x_mix) -> torch.Tensor:
        """The weighted symmetric distillation of each student head (logits of ``[x, x_mix]``) from the
        teacher's same head."""
        teacher = self.teacher_forward(torch.cat([x, x_mix]), features=False, aux=self.uses_aux)
        size = distillation_size(self.cfg.distil_resolution, x.shape[-2:])
        return sum(w * distillation_from_logits(*s.chunk(2), *t.float().chunk(2), size=size,
                                                reverse_weight=self.cfg.distil_reverse_weight)
                   for (w, s), (_, t) in zip(student_heads, self.heads(teacher)))

    def train_step(self, step: int) -> dict[str, torch.Tensor]:
        xs, ys = next(self.source)
        x, y = self.prepare(xs), ys.to(self.device, non_blocking=True)
        t_pool = self.prepare(next(self.target)[0]) if self.target is not None else None
        losses = self.losses(x, y, t_pool)
        if self.cfg.warmup_target_bn and t_pool is not None:
            self.target_statistics(t_pool)
        return losses

    @torch.no_grad()
    def target_statistics(self, t: torch.Tensor) -> None:
        """The student in train mode on target crops, without gradients (the authors' warm-up does
        this every step): its BatchNorm running statistics, which evaluation, pseudo-labels and
        centroids use, then follow the target as well as the source. The unwrapped model runs it,
        outside DDP and torch.compile; the step's buffer broadcast keeps the ranks equal."""
        self.forward(t, net=self.model)

    def losses(self, x: torch.Tensor, y: torch.Tensor, t_pool: torch.Tensor | None) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        if not cfg.distil and not cfg.mix:  # source-only baseline
            outputs = self.forward(x, aux=self.uses_aux)
            self._vis = {"source": x, "prediction": outputs[0], "ground truth": y}
            return {"loss": sum(w * segmentation_loss(logits.float(), y, cfg) for w, logits in self.heads(outputs))}
        views = self.branch.views(x, y, t_pool, self.gen)
        heads = self.heads(self.forward(torch.cat([x, views["x_mix"]]), aux=self.uses_aux))
        losses = {"seg": sum(w * segmentation_loss(logits.chunk(2)[0].float(), y, cfg) for w, logits in heads)}
        if cfg.distil:
            losses["distil"] = self.distillation(heads, x, views["x_mix"])
            losses["loss"] = losses["seg"] + cfg.distil_weight * losses["distil"]
        else:
            losses["seg_mix"] = sum(w * segmentation_loss(logits.chunk(2)[1].float(), y, cfg) for w, logits in heads)
            losses["loss"] = losses["seg"] + losses["seg_mix"]
        self._vis = {"source": x, "translated": views["x_translated"], "mixed": views["x_mix"],
                     "prediction": heads[0][1].chunk(2)[0], "ground truth": y}
        return losses

    def visualize(self, step: int) -> None:
        if getattr(self, "_vis", None):
            save_grid(self.dir / "vis" / f"step_{step:07d}.png", self._vis, self.space)
