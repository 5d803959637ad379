"""Class means, centroid accumulation, prototype labels, selection and the centroid update."""

import pytest
import torch

from diga.method import (
    CentroidAccumulator,
    batch_class_sums,
    class_feature_means,
    ema_centroids,
    prototype_labels,
    select_dynamic,
    select_none,
    select_threshold,
    update_centroids,
)


def test_class_feature_means_hand_example():
    # D=2 features on a 2x2 map: pixel values (1,10), (3,30), (5,50), (7,70)
    f = torch.tensor([[1.0, 3.0], [5.0, 7.0]])
    features = torch.stack((f, 10 * f))[None]  # (1, 2, 2, 2)
    labels = torch.tensor([[[0, 0], [1, 255]]])
    means, counts = class_feature_means(features, labels, num_classes=3)
    assert counts.tolist() == [[2.0, 1.0, 0.0]]
    assert means.tolist() == [[[2.0, 20.0], [5.0, 50.0], [0.0, 0.0]]]
    means2, _ = class_feature_means(features, labels, num_classes=3, min_pixels=2)
    assert means2.tolist() == [[[2.0, 20.0], [0.0, 0.0], [0.0, 0.0]]]


def test_centroid_accumulator_averages_images_and_skips_small_classes():
    # Two 2x5 images, D=1. Image A: class 0 on 6 pixels (value 1), class 1 on 4 (skipped, < 5).
    # Image B: class 0 on 5 pixels (value 4), class 2 on 5 pixels (value 9).
    fa = torch.tensor([[1.0, 1, 1, 1, 1], [1, 100, 100, 100, 100]])
    la = torch.tensor([[0, 0, 0, 0, 0], [0, 1, 1, 1, 1]])
    fb = torch.tensor([[4.0, 4, 4, 4, 4], [9, 9, 9, 9, 9]])
    lb = torch.tensor([[0, 0, 0, 0, 0], [2, 2, 2, 2, 2]])
    acc = CentroidAccumulator(num_classes=4, dim=1, min_pixels=5)
    acc.add(fa[None, None], la[None])
    acc.add(fb[None, None], lb[None])
    # class 0: mean of the per-image means (1 + 4) / 2 = 2.5, not the pixel mean 21/11
    assert acc.centroids().flatten().tolist() == [2.5, 0.0, 9.0, 0.0]
    assert acc.valid.tolist() == [True, False, True, False]
    assert acc.counts.tolist() == [2.0, 0.0, 1.0, 0.0]
    # batched add gives the same result
    acc2 = CentroidAccumulator(num_classes=4, dim=1)
    acc2.add(torch.stack((fa, fb))[:, None], torch.stack((la, lb)))
    assert torch.equal(acc2.centroids(), acc.centroids())
    sd = acc.state_dict()
    acc3 = CentroidAccumulator(num_classes=4, dim=1)
    acc3.load_state_dict(sd)
    assert torch.equal(acc3.centroids(), acc.centroids())
    acc3.all_reduce()  # no process group: no-op
    assert torch.equal(acc3.sums, acc.sums)


def test_prototype_labels_nearest_valid_centroid():
    centroids = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    feats = torch.tensor([[1.0, 1.0], [9.0, 0.0], [1.0, 8.0]]).T.reshape(1, 2, 1, 3)
    assert prototype_labels(feats, centroids).tolist() == [[[0, 1, 2]]]
    valid = torch.tensor([True, False, True])
    assert prototype_labels(feats, centroids, valid).tolist() == [[[0, 0, 2]]]


def test_select_dynamic_keeps_exactly_agreeing_pixels():
    pseudo = torch.tensor([[[0, 0, 1, 1], [0, 2, 1, 1], [3, 3, 255, 2], [3, 3, 2, 2]]], dtype=torch.uint8)
    proto = torch.tensor([[[0, 1], [3, 2]]])  # nearest-upsampled to 2x2 blocks
    out = select_dynamic(pseudo, proto)
    assert out.dtype == torch.int64
    assert out.tolist() == [[[0, 0, 1, 1], [0, 255, 1, 1], [3, 3, 255, 2], [3, 3, 2, 2]]]


def test_select_threshold_and_none():
    pseudo = torch.tensor([[[0, 1]]])
    probs = torch.tensor([[0.95, 0.3], [0.05, 0.7]]).view(1, 2, 1, 2)
    assert select_threshold(pseudo, probs, 0.9).tolist() == [[[0, 255]]]
    assert select_none(pseudo).tolist() == [[[0, 1]]]


def test_update_centroids_momentum_arithmetic():
    centroids = torch.tensor([[0.0, 0.0], [10.0, 10.0], [5.0, 5.0]])
    # 1 image 1x4, D=2; labels vs teacher prediction agree on pixels 0, 1 (class 0) and 3 (class 1)
    feats = torch.tensor([[2.0, 4.0, 100.0, 20.0], [6.0, 8.0, 100.0, 0.0]]).view(1, 2, 1, 4)
    labels = torch.tensor([[[0, 0, 2, 1]]])
    teacher = torch.tensor([[[0, 0, 1, 1]]])
    new = update_centroids(centroids, feats, labels, teacher, num_classes=3, momentum=0.1)
    # class 0: v = (3, 7) -> 0.9*(0,0) + 0.1*(3,7); class 1: v = (20, 0) -> (11, 9); class 2 unchanged
    assert torch.allclose(new, torch.tensor([[0.3, 0.7], [11.0, 9.0], [5.0, 5.0]]))
    sums, counts = batch_class_sums(feats, labels, teacher, 3)
    assert counts.tolist() == [2.0, 1.0, 0.0]
    assert sums.tolist() == [[6.0, 14.0], [20.0, 0.0], [0.0, 0.0]]
    same = ema_centroids(centroids, sums, torch.tensor([False, False, False]), 0.5)
    assert torch.equal(same, centroids)


def test_update_centroids_pools_images_and_downsamples_labels():
    centroids = torch.zeros(2, 1)
    feats = torch.tensor([1.0, 3.0]).view(2, 1, 1, 1)  # two images, one feature pixel each
    labels = torch.zeros(2, 2, 2, dtype=torch.long)  # full resolution labels, nearest-downsampled
    teacher = torch.zeros(2, 1, 1, dtype=torch.long)
    new = update_centroids(centroids, feats, labels, teacher, num_classes=2, momentum=0.5)
    assert new.flatten().tolist() == [1.0, 0.0]  # 0.5 * mean(1, 3)


@pytest.mark.parametrize("fn", ["means", "proto"])
def test_no_grad_leaks(fn):
    f = torch.randn(1, 2, 2, 2, requires_grad=True)
    if fn == "means":
        means, _ = class_feature_means(f, torch.zeros(1, 2, 2, dtype=torch.long), 2)
        assert not means.requires_grad
    else:
        assert not prototype_labels(f, torch.randn(3, 2)).requires_grad


def test_per_image_centroid_update_steps_once_per_image_and_skips_small_classes():
    from diga.method.prototypes import apply_image_updates, image_class_means, update_centroids

    feats = torch.zeros(2, 1, 2, 6)  # 12 pixels per image, 1-d features
    feats[0] = 1.0
    feats[1] = 3.0
    labels = torch.full((2, 2, 6), 255)
    labels[0, :, :3] = 0  # image 0: 6 pixels of class 0 (feature 1)
    labels[1, 0, :5] = 0  # image 1: 5 pixels of class 0 (feature 3)
    labels[1, 1, :4] = 1  # image 1: 4 pixels of class 1: fewer than 5, skipped
    pred = labels.clamp(max=1)  # the teacher agrees everywhere that is labelled
    means, present = image_class_means(feats, labels, pred, num_classes=2, min_pixels=5)
    assert present.tolist() == [[True, False], [True, False]]
    per_image = apply_image_updates(torch.zeros(2, 1), means, present, momentum=0.5)
    assert per_image[:, 0].tolist() == [0.5 * 0.5 + 0.5 * 3.0, 0.0]  # 0 -> 0.5 -> 1.75; class 1 untouched
    pooled = update_centroids(torch.zeros(2, 1), feats, labels, pred, num_classes=2, momentum=0.5)
    assert torch.allclose(pooled[:, 0], torch.tensor([0.5 * (6 * 1.0 + 5 * 3.0) / 11, 0.5 * 3.0]))
