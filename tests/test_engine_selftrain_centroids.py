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
                              space=SimpleNamespace(num_classes=4), cfg=SimpleNamespace(centroid_momentum=0.1, centroid_update="batch"))

    SelfTrainer.update_centroids(trainer, feats, labels, t_logits)

    expected = update_centroids(centroids, feats, labels, t_logits.argmax(1), num_classes=4, momentum=0.1)
    assert torch.equal(trainer.centroids, expected)
    assert not torch.equal(expected, centroids)  # the batch did move some centroids
    moved = (expected != centroids).any(1)
    assert torch.equal(trainer.centroid_valid, valid | moved)


def test_selftrain_per_image_update_moves_target_images_first_then_source():
    from diga.method.prototypes import apply_image_updates, image_class_means

    g = torch.Generator().manual_seed(1)
    centroids = torch.randn(3, 4, generator=g)
    feats = torch.randn(4, 4, 3, 3, generator=g)  # [source mixed view x2, target x2]
    labels = torch.randint(0, 3, (4, 3, 3), generator=g)
    t_logits = torch.nn.functional.one_hot(labels, 3).permute(0, 3, 1, 2).float()  # agrees everywhere
    cfg = SimpleNamespace(centroid_momentum=0.1, centroid_update="image", centroid_min_pixels=2)
    trainer = SimpleNamespace(centroids=centroids.clone(), centroid_valid=torch.zeros(3, dtype=torch.bool),
                              space=SimpleNamespace(num_classes=3), cfg=cfg)
    trainer.update_centroids_per_image = lambda *a: SelfTrainer.update_centroids_per_image(trainer, *a)

    SelfTrainer.update_centroids(trainer, feats, labels, t_logits)

    means, present = image_class_means(feats, labels, labels, 3, min_pixels=2)
    order = [2, 3, 0, 1]
    expected = apply_image_updates(centroids, means[order], present[order], momentum=0.1)
    assert torch.equal(trainer.centroids, expected)
    assert torch.equal(trainer.centroid_valid, present.any(0))
