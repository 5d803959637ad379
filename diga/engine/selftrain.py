"""Stage 2: self-training with threshold-free dynamic pseudo-label selection (docs/METHOD.md)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from ..errors import ConfigError
from ..io import atomic_write
from ..method.augment import augment_and_blend
from ..method.losses import distillation_from_logits, distillation_size, segmentation_loss
from ..method.mix import target_cross_mix
from ..method.prototypes import (
    apply_centroid_update,
    apply_image_updates,
    batch_class_sums,
    image_class_means,
    prototype_labels,
    prototype_labels_bilinear,
    select_dynamic,
    select_none,
    select_threshold,
)
from . import runtime
from .loaders import side_configs, sized_loader, train_transform
from .pseudolabels import PseudoLabelled, load_centroids, split_combined
from .source_branch import SourceBranch, stage_photometric
from .state import TrainState
from .trainer import Trainer
from .visualize import save_grid


class SelfTrainer(Trainer):
    """``L = L_seg + L_mix + lambda * L_distil`` (lambda 0.25, beta 0.3) from a warm-up model."""

    stage = "selftrain"
    uses_teacher = True

    def build_data(self) -> None:
        cfg = self.cfg
        if not (cfg.init and cfg.pseudo_labels and cfg.centroids):
            raise ConfigError("self-training needs --init (a warm-up checkpoint), pseudo-labels and centroids")
        super().build_data()
        # The labelled crops may have a rescale range of their own (selftrain_source_scale; None: the
        # stage's scale, which the pseudo-labelled crops below take).
        self.branch = SourceBranch(cfg, self.space, source_scale=cfg.selftrain_source_scale)
        # inference_size() looks at these when no size is configured
        self.source_set, self.target_set = self.branch.source_set, self.branch.target_set
        # One base size: the image at base_size, the pixels its pseudo-label was predicted from. Per-dataset
        # sizes: the image at its own size with the pseudo-label resized to it (nearest), then each
        # sub-batch's transform brings both to its base size (the authors resize image and pseudo-label
        # together to each of their two sizes).
        size = None if cfg.target_base_sizes else cfg.base_size
        self.pseudo_parts = [(part, PseudoLabelled(cfg.pseudo_labels, self.space, train_transform(part, "target"), size=size))
                             for part in side_configs(cfg, "target")]
        self.pseudo_set = self.pseudo_parts[0][1]
        self.centroids, self.centroid_valid = load_centroids(cfg.centroids, self.device)
        zero = torch.zeros((), device=self.device)
        self.counters = {k: zero.clone() for k in ("pseudo", "kept", "kept_gt", "kept_correct")}

    def run(self):
        self.pseudo_batches = sized_loader(self.pseudo_parts, self.start_step, salt=2)
        self.source, self.target = self.branch.loaders(self.start_step)
        return super().run()

    def select(self, pseudo: torch.Tensor, t_logits: torch.Tensor, t_feats: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        if cfg.selection == "dynamic":
            if cfg.select_upsample == "bilinear":
                proto = prototype_labels_bilinear(t_feats.float(), self.centroids, pseudo.shape[-2:],
                                                  self.centroid_valid)
            else:
                proto = prototype_labels(t_feats.float(), self.centroids, self.centroid_valid)
            return select_dynamic(pseudo, proto)
        if cfg.selection == "threshold":
            probs = F.interpolate(t_logits.float(), size=pseudo.shape[-2:], mode="bilinear",
                                  align_corners=False).softmax(1)
            return select_threshold(pseudo, probs, cfg.threshold)
        return select_none(pseudo)

    def update_centroids(self, feats: torch.Tensor, labels: torch.Tensor, t_logits: torch.Tensor) -> None:
        """The method's centroid update, from the statistics of the global batch (all ranks).

        ``centroid_update="batch"``: one step per class towards the pooled mean. ``"image"`` (the
        authors' code): one step per image and class with at least ``centroid_min_pixels`` agreeing
        pixels, the target half of the batch (the second) before the source half, rank after rank.
        """
        if self.cfg.centroid_update == "image":
            return self.update_centroids_per_image(feats, labels, t_logits)
        sums, counts = batch_class_sums(feats.float(), labels, t_logits.argmax(1), self.space.num_classes)
        runtime.all_reduce_sum(sums)
        runtime.all_reduce_sum(counts)
        self.centroids = apply_centroid_update(self.centroids, sums, counts, self.cfg.centroid_momentum)
        self.centroid_valid = self.centroid_valid | (counts > 0)

    def update_centroids_per_image(self, feats: torch.Tensor, labels: torch.Tensor, t_logits: torch.Tensor) -> None:
        means, present = image_class_means(feats.float(), labels, t_logits.argmax(1), self.space.num_classes,
                                           self.cfg.centroid_min_pixels)
        half = feats.shape[0] // 2
        means, present = means.roll(-half, 0), present.roll(-half, 0)  # target images first
        # Every rank's images, in rank order, on every rank: an all-reduce of rank-placed slots.
        world, rank = runtime.world_size(), runtime.rank()
        slots = means.new_zeros((world, *means.shape))
        slots[rank] = means
        flags = means.new_zeros((world, *present.shape))
        flags[rank] = present.float()
        runtime.all_reduce_sum(slots)
        runtime.all_reduce_sum(flags)
        present = flags.flatten(0, 1) > 0
        self.centroids = apply_image_updates(self.centroids, slots.flatten(0, 1), present, self.cfg.centroid_momentum)
        self.centroid_valid = self.centroid_valid | present.any(0)

    def count(self, pseudo: torch.Tensor, kept: torch.Tensor, gt: torch.Tensor) -> None:
        c = self.counters
        c["pseudo"] += (pseudo != 255).sum()
        c["kept"] += (kept != 255).sum()
        has_gt = (kept != 255) & (gt != 255)
        c["kept_gt"] += has_gt.sum()
        c["kept_correct"] += (has_gt & (kept == gt)).sum()

    def interval_stats(self) -> dict[str, float]:
        stats = super().interval_stats()
        c = {k: float(v) for k, v in self.counters.items()}
        stats["kept_fraction"] = round(c["kept"] / max(c["pseudo"], 1), 4)
        if c["kept_gt"] > 0:
            stats["kept_accuracy"] = round(c["kept_correct"] / c["kept_gt"], 4)
        for v in self.counters.values():
            v.zero_()
        return stats

    def student_outputs(self, x: torch.Tensor, x_mix: torch.Tensor, t_mix: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The student's outputs (:meth:`forward`'s) for ``[x, x_mix, t_mix]``.

        ``student_forward="joint"``: one forward, so BatchNorm normalises the mixed target crops with
        statistics of the source crops too. ``"separate"`` (the authors' code): the source views, then
        the mixed target, each normalised by its own batch statistics (and each moving the running ones).
        """
        if self.cfg.student_forward == "separate":
            parts = self.forward(torch.cat([x, x_mix]), aux=self.uses_aux), self.forward(t_mix, aux=self.uses_aux)
            return tuple(torch.cat(pair) for pair in zip(*parts))
        return self.forward(torch.cat([x, x_mix, t_mix]), aux=self.uses_aux)

    def train_step(self, step: int) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        xs, ys = next(self.source)
        ts, combined = next(self.pseudo_batches)
        x, y = self.prepare(xs), ys.to(self.device, non_blocking=True)
        t = self.prepare(ts)
        pseudo, gt = split_combined(combined.to(self.device, non_blocking=True))
        t_pool = self.prepare(next(self.target)[0]) if self.target is not None else t
        views = self.branch.views(x, y, t_pool, self.gen)
        x_mix = views["x_mix"]
        n = x.shape[0]
        teacher = self.teacher_forward(torch.cat([x, x_mix]), t, aux=self.uses_aux)
        t_logits, t_feats = teacher[0].float(), teacher[1]
        kept = self.select(pseudo, t_logits[2 * n:], t_feats[2 * n:])
        self.count(pseudo, kept, gt)
        self.update_centroids(t_feats[n:], torch.cat([y, kept]), t_logits[n:])
        t_aug = augment_and_blend(t, beta=cfg.blend_beta, cfg=stage_photometric(cfg), generator=self.gen,
                                  space=cfg.blend_space)
        t_mix, y_mix = target_cross_mix(x, y, t_aug, kept, self.space.num_classes, self.gen,
                                        paste_ignore=cfg.target_mix_ignore == "paste", count=cfg.mix_count)
        size = distillation_size(cfg.distil_resolution, x.shape[-2:])
        losses = {"seg": 0.0, "mix": 0.0, "distil": 0.0}
        # each head (the main logits; the auxiliary ones with aux_weight) against the teacher's same head
        heads = self.heads(self.student_outputs(x, x_mix, t_mix))
        for (w, student), (_, t_head) in zip(heads, self.heads(teacher)):
            s_clean, s_mix, s_tmix = student.float().split(n)
            t_head = t_head.float()
            losses["seg"] = losses["seg"] + w * segmentation_loss(s_clean, y, cfg)
            losses["mix"] = losses["mix"] + w * segmentation_loss(s_tmix, y_mix, cfg)
            losses["distil"] = losses["distil"] + w * distillation_from_logits(
                s_clean, s_mix, t_head[:n], t_head[n:2 * n], size=size, reverse_weight=cfg.distil_reverse_weight)
        losses["loss"] = losses["seg"] + losses["mix"] + cfg.distil_weight * losses["distil"]
        self._vis = {"target": t, "pseudo-label": pseudo, "selected": kept, "target mix": t_mix,
                     "mixed label": y_mix, "prediction": heads[0][1].split(n)[2], "ground truth": gt}
        return losses

    def state_tensors(self) -> dict[str, dict[str, torch.Tensor]]:
        tensors = super().state_tensors()
        tensors["centroids"] = {"centroids": self.centroids, "valid": self.centroid_valid}
        return tensors

    def restore_extra(self, state: TrainState) -> None:
        self.centroids = state.tensors["centroids"]["centroids"].to(self.device)
        self.centroid_valid = state.tensors["centroids"]["valid"].to(self.device).bool()

    def save_models(self, tag: str, metrics: dict | None = None, step: int | None = None) -> None:
        super().save_models(tag, metrics, step=step)
        if runtime.is_main():
            tensors = {"centroids": self.centroids.cpu().contiguous(), "valid": self.centroid_valid.cpu().contiguous()}
            atomic_write(self.weights_dir / f"{tag}_centroids.safetensors", lambda tmp: save_file(tensors, str(tmp)))

    def visualize(self, step: int) -> None:
        if getattr(self, "_vis", None):
            save_grid(self.dir / "vis" / f"step_{step:07d}.png", self._vis, self.space)
