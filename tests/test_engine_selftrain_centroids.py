"""Self-training updates its centroids with the method's own function (around the all-reduce)."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from diga.engine.selftrain import SelfTrainer
from diga.method.prototypes import update_centroids


def test_selftrain_centroid_update_is_the_methods_in_one_process():
    g = torch.Generator().manual_seed(0)
    centroids = torch.randn(4, 6, generator=g)
    valid = torch.tensor([True, True, False, False])
    feats = torch.randn(2, 6, 5, 7, generator=g)
    labels = torch.randint(0, 4, (2, 10, 14), generator=g)
    labels[0, :2] = 255
    t_logits = torch.randn(2, 4, 5, 7, generator=g)
    trainer = SimpleNamespace(centroids=centroids.clone(), centroid_valid=valid.clone(),
                              space=SimpleNamespace(num_classes=4), cfg=SimpleNamespace(centroid_momentum=0.1))

    SelfTrainer.update_centroids(trainer, feats, labels, t_logits)

    expected = update_centroids(centroids, feats, labels, t_logits.argmax(1), num_classes=4, momentum=0.1)
    assert torch.equal(trainer.centroids, expected)
    assert not torch.equal(expected, centroids)  # the batch did move some centroids
    moved = (expected != centroids).any(1)
    assert torch.equal(trainer.centroid_valid, valid | moved)
