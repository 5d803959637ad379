"""The translator's losses against small hand-computed cases."""

from __future__ import annotations

import torch

from diga.method.translation_losses import (
    LOSS_WEIGHTS,
    edge_loss,
    lsgan_fake,
    lsgan_real,
    perceptual_loss,
    semantic_edges,
)


def test_loss_weights_are_the_authors():
    assert LOSS_WEIGHTS == {"adversarial": 0.5, "cycle": 10.0, "edge": 20.0, "perceptual": 0.1, "self": 0.001}


def test_lsgan_sums_the_scales():
    outputs = [torch.full((1, 1, 2, 2), 0.5), torch.full((1, 1, 1, 1), 2.0)]
    assert torch.isclose(lsgan_real(outputs), torch.tensor(0.25 + 1.0))
    assert torch.isclose(lsgan_fake(outputs), torch.tensor(0.25 + 4.0))


def test_semantic_edges_mark_class_boundaries_only():
    labels = torch.zeros(1, 8, 8, dtype=torch.long)
    labels[:, :, 4:] = 1
    edges = semantic_edges(labels)[0, 0]
    assert edges.shape == (8, 8)
    # A pixel is an edge when its 5x5 window crosses the boundary between columns 3 and 4.
    assert edges[:, 2:6].bool().all()
    assert not edges[:, :2].any() and not edges[:, 6:].any()
    assert not semantic_edges(torch.full((1, 8, 8), 7)).any()


def test_semantic_edges_of_one_pixel_against_ignore():
    labels = torch.full((1, 9, 9), 255)
    labels[0, 4, 4] = 0
    edges = semantic_edges(labels)[0, 0]
    # centre response |24*(0-255)|/48 and neighbours |0-255|/48 both exceed 0.1: the whole 5x5 window
    assert edges[2:7, 2:7].bool().all() and edges.sum() == 25


def test_edge_loss_looks_at_edges_only():
    labels = torch.zeros(1, 8, 8, dtype=torch.long)
    labels[:, :, 4:] = 1
    source = torch.zeros(1, 3, 8, 8)
    away = source.clone()
    away[..., 0] = 5.0  # changes far from the boundary cost nothing
    assert edge_loss(away, source, labels) == 0
    on = source.clone()
    on[..., 3] = 1.0  # one column on the boundary: 8 of 64 pixels per channel
    assert torch.isclose(edge_loss(on, source, labels), torch.tensor(8 / 64))


def test_perceptual_loss_weights_and_width_limit():
    seen = []

    def features(x):
        seen.append(x.shape[-1])
        return [x, 2 * x]

    x, y = torch.ones(1, 3, 4, 2048), torch.zeros(1, 3, 4, 2048)
    loss = perceptual_loss(features, x, y, weights=(1.0, 0.5))
    assert seen == [1024, 1024]  # pooled once to fit 1024 wide
    assert torch.isclose(loss, torch.tensor(1.0 * 1 + 0.5 * 2))
    assert perceptual_loss(features, x, x) == 0


def test_perceptual_loss_sends_no_gradient_to_the_reference():
    x = torch.rand(1, 3, 4, 4, requires_grad=True)
    y = torch.rand(1, 3, 4, 4, requires_grad=True)
    perceptual_loss(lambda t: [t * 3], x, y, weights=(1.0,)).backward()
    assert x.grad is not None and y.grad is None
