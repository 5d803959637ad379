"""Loss values against literal hand computations."""

import math

import torch

from diga.method import seg_ce, soft_cross_entropy, symmetric_distillation


def _px(values):
    """One pixel of logits/probs: (1, C, 1, 1)."""
    return torch.tensor(values, dtype=torch.float32).view(1, -1, 1, 1)


def test_seg_ce_one_pixel():
    loss = seg_ce(_px([1.0, 2.0, 0.0]), torch.tensor([[[1]]]))
    expected = -(2.0 - math.log(math.exp(1) + math.exp(2) + math.exp(0)))
    assert math.isclose(loss.item(), expected, rel_tol=1e-6)


def test_seg_ce_ignores_255_and_averages_valid():
    logits = torch.tensor([[1.0, 0.0], [0.0, 0.0], [5.0, 0.0]]).T.reshape(1, 2, 1, 3)
    labels = torch.tensor([[[0, 1, 255]]])
    lse = math.log(math.exp(1) + 1)
    expected = ((lse - 1.0) + math.log(2.0)) / 2  # pixel 3 ignored, mean over the 2 valid
    assert math.isclose(seg_ce(logits, labels).item(), expected, rel_tol=1e-6)


def test_seg_ce_all_ignored_is_zero_not_nan():
    loss = seg_ce(torch.randn(2, 3, 4, 4, requires_grad=True), torch.full((2, 4, 4), 255))
    assert loss.item() == 0.0
    loss.backward()  # still differentiable


def test_seg_ce_upsamples_logits_to_labels():
    logits = _px([0.0, math.log(3.0)])  # softmax = (1/4, 3/4) everywhere after upsampling
    labels = torch.tensor([[[1, 1], [0, 255]]], dtype=torch.uint8)
    expected = (2 * -math.log(0.75) + -math.log(0.25)) / 3
    assert math.isclose(seg_ce(logits, labels).item(), expected, rel_tol=1e-6)


def test_soft_cross_entropy_value():
    s = _px([0.0, math.log(2.0)])  # log_softmax = log(1/3), log(2/3)
    q = _px([0.25, 0.75])
    expected = -(0.25 * math.log(1 / 3) + 0.75 * math.log(2 / 3))
    assert math.isclose(soft_cross_entropy(s, q).item(), expected, rel_tol=1e-6)


def test_soft_cross_entropy_mean_over_pixels():
    s = torch.zeros(1, 2, 1, 2)  # uniform student: every pixel costs log 2
    q = torch.tensor([[1.0, 0.5], [0.0, 0.5]]).view(1, 2, 1, 2)
    assert math.isclose(soft_cross_entropy(s, q).item(), math.log(2.0), rel_tol=1e-6)


def test_symmetric_distillation_weights_and_gradients():
    s_clean = _px([0.0, 0.0]).requires_grad_(True)  # log_softmax = log(1/2), log(1/2)
    s_mix = _px([0.0, math.log(3.0)]).requires_grad_(True)  # log(1/4), log(3/4)
    t_clean = _px([0.5, 0.5]).requires_grad_(True)  # "teacher" tensors that could take grads
    t_mix = _px([0.1, 0.9]).requires_grad_(True)
    forward = -(0.5 * math.log(0.25) + 0.5 * math.log(0.75))  # t_clean -> s_mix
    reverse = math.log(2.0)  # t_mix -> s_clean (uniform student)
    loss = symmetric_distillation(s_clean, s_mix, t_clean, t_mix)
    assert math.isclose(loss.item(), forward + 0.5 * reverse, rel_tol=1e-6)
    loss2 = symmetric_distillation(s_clean, s_mix, t_clean, t_mix, reverse_weight=2.0)
    assert math.isclose(loss2.item(), forward + 2.0 * reverse, rel_tol=1e-6)
    loss.backward()
    assert s_clean.grad is not None and s_mix.grad is not None
    assert t_clean.grad is None and t_mix.grad is None
    # d/ds of CE(q, softmax s) = softmax(s) - q; the reverse term carries weight 0.5.
    assert torch.allclose(s_mix.grad.flatten(), torch.tensor([0.25 - 0.5, 0.75 - 0.5]))
    assert torch.allclose(s_clean.grad.flatten(), 0.5 * torch.tensor([0.5 - 0.1, 0.5 - 0.9]))


def test_seg_ce_norm_all_divides_by_every_pixel_ignored_included():
    logits = torch.tensor([[1.0, 0.0], [0.0, 0.0], [5.0, 0.0], [0.0, 3.0]]).T.reshape(1, 2, 1, 4)
    labels = torch.tensor([[[0, 1, 255, 255]]])
    summed = (math.log(math.exp(1) + 1) - 1.0) + math.log(2.0)  # the two valid pixels
    assert math.isclose(seg_ce(logits, labels, norm="valid").item(), summed / 2, rel_tol=1e-6)
    assert math.isclose(seg_ce(logits, labels, norm="all").item(), summed / 4, rel_tol=1e-6)
    assert seg_ce(logits, torch.full((1, 1, 4), 255), norm="all").item() == 0.0


def test_seg_ce_rejects_an_unknown_norm():
    import pytest

    with pytest.raises(ValueError, match="norm must be one of all, valid"):
        seg_ce(_px([0.0, 1.0]), torch.tensor([[[0]]]), norm="pixels")


def test_distillation_at_crop_resolution_is_an_explicit_upsample_then_the_loss():
    from diga.method import distillation_from_logits
    from diga.method.losses import distillation_size

    # 2 classes on a 1x2 output: the student disagrees with the teacher on one pixel only
    s_clean = torch.tensor([[[[0.0, 0.0]], [[0.0, 2.0]]]])
    s_mix = torch.tensor([[[[1.0, 0.0]], [[0.0, 0.0]]]])
    t_clean = torch.tensor([[[[4.0, 0.0]], [[0.0, 0.0]]]])
    t_mix = torch.tensor([[[[0.0, 0.0]], [[0.0, 4.0]]]])
    at_output = distillation_from_logits(s_clean, s_mix, t_clean, t_mix, size=distillation_size("output", (1, 4)))
    expected_output = symmetric_distillation(s_clean, s_mix, t_clean.softmax(1), t_mix.softmax(1))
    assert math.isclose(at_output.item(), expected_output.item(), rel_tol=1e-6)

    crop = distillation_size("crop", torch.Size([1, 4]))
    assert crop == (1, 4)
    at_crop = distillation_from_logits(s_clean, s_mix, t_clean, t_mix, size=crop)
    # align_corners=True on 2 -> 4 columns: the samples sit at 0, 1/3, 2/3, 1 of the way between the pixels
    w = torch.tensor([0.0, 1 / 3, 2 / 3, 1.0])

    def up(v):
        return v[..., :1] * (1 - w) + v[..., 1:] * w

    expected_crop = symmetric_distillation(up(s_clean), up(s_mix), up(t_clean).softmax(1), up(t_mix).softmax(1))
    assert math.isclose(at_crop.item(), expected_crop.item(), rel_tol=1e-6)
    assert abs(at_crop.item() - at_output.item()) > 1e-3  # the two resolutions give different losses


def test_distillation_resolution_is_checked():
    import pytest

    from diga.method.losses import distillation_size

    with pytest.raises(ValueError, match="distil_resolution must be one of"):
        distillation_size("full", (4, 4))


def _pixels(p_true_class0):
    """Two-class logits, one row of pixels whose class-0 probability is each given value."""
    p = torch.tensor(p_true_class0, dtype=torch.float64)
    return torch.log(torch.stack([p, 1 - p])).float().view(1, 2, 1, -1)


def test_ohem_keeps_the_pixels_below_the_threshold_when_there_are_enough():
    from diga.method.losses import ohem_ce

    # true-class probabilities 0.9, 0.6, 0.2, 0.65 and one ignored pixel (its 0.1 must not count)
    logits = _pixels([0.9, 0.6, 0.2, 0.65, 0.1])
    labels = torch.tensor([[[0, 0, 0, 0, 255]]])
    expected = -(math.log(0.6) + math.log(0.2) + math.log(0.65)) / 3  # mean over the 3 kept, not 4 or 5
    assert math.isclose(ohem_ce(logits, labels, threshold=0.7, min_kept=2).item(), expected, rel_tol=1e-5)


def test_ohem_raises_the_cutoff_to_keep_min_kept_hard_pixels():
    from diga.method.losses import ohem_ce

    # only 0.2 is below 0.5; min_kept 3: the cut-off is the probability of rank 3 (from 0) in ascending
    # order, 0.8, and the pixels strictly below it are kept (0.2, 0.6, 0.7), the two at 0.8 and 0.95 not
    logits = _pixels([0.95, 0.8, 0.7, 0.6, 0.2])
    labels = torch.zeros((1, 1, 5), dtype=torch.long)
    expected = -(math.log(0.2) + math.log(0.6) + math.log(0.7)) / 3
    assert math.isclose(ohem_ce(logits, labels, threshold=0.5, min_kept=3).item(), expected, rel_tol=1e-5)


def test_ohem_with_fewer_labelled_pixels_than_min_kept_drops_the_most_confident_one():
    from diga.method.losses import ohem_ce

    # 3 labelled pixels, min_kept 100: the cut-off is the largest probability (rank n - 1), compared
    # strictly, as the authors' code: the 0.9 pixel goes, the ignored ones never count
    logits = _pixels([0.9, 0.6, 0.2, 0.01, 0.01])
    labels = torch.tensor([[[0, 0, 0, 255, 255]]])
    expected = -(math.log(0.6) + math.log(0.2)) / 2
    assert math.isclose(ohem_ce(logits, labels, threshold=0.7, min_kept=100).item(), expected, rel_tol=1e-5)


def test_ohem_all_ignored_is_zero_not_nan_and_has_gradients():
    from diga.method.losses import ohem_ce

    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    loss = ohem_ce(logits, torch.full((2, 4, 4), 255))
    assert loss.item() == 0.0
    loss.backward()
    # and with labels, only the kept pixels get a gradient
    logits = _pixels([0.9, 0.2]).requires_grad_()
    ohem_ce(logits, torch.zeros((1, 1, 2), dtype=torch.long), threshold=0.7, min_kept=1).backward()
    assert logits.grad[..., 0].abs().sum() == 0 and logits.grad[..., 1].abs().sum() > 0


def test_segmentation_loss_follows_the_loss_setting():
    from types import SimpleNamespace

    from diga.method.losses import ohem_ce, segmentation_loss

    logits = _pixels([0.9, 0.6, 0.2, 0.1])
    labels = torch.tensor([[[0, 0, 0, 255]]])
    ce = SimpleNamespace(loss="ce", loss_norm="all", ohem_threshold=0.7, ohem_min_kept=1, logits_align_corners=False)
    assert torch.equal(segmentation_loss(logits, labels, ce), seg_ce(logits, labels, norm="all"))
    ohem = SimpleNamespace(**{**vars(ce), "loss": "ohem"})
    assert torch.equal(segmentation_loss(logits, labels, ohem), ohem_ce(logits, labels, 0.7, 1))
    # loss_norm does not change OHEM: it is a mean over the kept pixels
    assert torch.equal(segmentation_loss(logits, labels, SimpleNamespace(**{**vars(ohem), "loss_norm": "valid"})),
                       segmentation_loss(logits, labels, ohem))
