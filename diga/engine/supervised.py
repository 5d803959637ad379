"""Plain supervised training: the source-only baseline and the target-label oracle."""

from __future__ import annotations

import torch

from ..errors import ConfigError
from ..method.losses import segmentation_loss
from .loaders import infinite_loader, train_dataset
from .trainer import Trainer


class SupervisedTrainer(Trainer):
    """Cross-entropy on labelled images from ``cfg.source`` (any labelled dataset)."""

    stage = "train"

    @property
    def uses_aux(self) -> bool:  # type: ignore[override]
        """Supervised training (``diga train``, the references) trains the main output alone."""
        return False

    def build_data(self) -> None:
        super().build_data()
        if not self.cfg.source:
            raise ConfigError("training needs labelled data: --data KIND:PATH")
        self.train_set = train_dataset(self.cfg.source, self.cfg)
        if not getattr(self.train_set, "has_labels", True):
            raise ConfigError(f"{self.cfg.source} has no labels; supervised training needs labelled data")

    def run(self):
        self.batches = infinite_loader(self.train_set, self.cfg, self.start_step)
        return super().run()

    def train_step(self, step: int) -> dict[str, torch.Tensor]:
        images, labels = next(self.batches)
        x = self.prepare(images)
        y = labels.to(self.device, non_blocking=True)
        logits, _ = self.forward(x)
        loss = segmentation_loss(logits.float(), y, self.cfg)
        return {"loss": loss}
