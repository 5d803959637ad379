"""Class-mix masks and the two mixtures."""

import torch

from diga.method import class_mix_mask, class_presence, cross_domain_mixture, mix, target_cross_mix


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


LABELS = torch.tensor([[[0, 0, 1, 1], [2, 2, 255, 255], [4, 4, 4, 1]]])  # classes {0,1,2,4}, C=5


def test_presence_counts():
    counts = class_presence(LABELS, 5)
    assert counts.tolist() == [[2, 3, 2, 0, 3]]


def test_mask_is_exactly_chosen_classes_plus_ignore():
    for seed in range(10):
        mask = class_mix_mask(LABELS, 5, _gen(seed))
        assert mask.shape == LABELS.shape and mask.dtype == torch.bool
        assert mask[LABELS == 255].all()
        chosen = []
        for c in (0, 1, 2, 4):
            m = mask[LABELS == c]
            assert m.all() or not m.any()  # whole classes only
            if m.all():
                chosen.append(c)
        assert len(chosen) == 2  # ceil(4 / 2)


def test_ceil_half_and_without_ignore():
    lbl = torch.tensor([[[0, 1, 2, 255]]])  # 3 classes -> ceil(3/2) = 2
    for seed in range(5):
        mask = class_mix_mask(lbl, 3, _gen(seed), include_ignore=False)
        assert mask[0, 0, :3].sum().item() == 2 and not mask[0, 0, 3]
    one = torch.tensor([[[1, 1, 255]]])  # 1 class -> 1 chosen
    assert class_mix_mask(one, 3, _gen()).all()
    empty = torch.full((1, 2, 2), 255)
    assert class_mix_mask(empty, 3, _gen()).all()
    assert not class_mix_mask(empty, 3, _gen(), include_ignore=False).any()


def test_images_choose_independently_and_deterministically():
    lbl = torch.arange(8).repeat_interleave(2).view(1, 4, 4).expand(16, 4, 4)  # 8 classes, 16 copies
    mask = class_mix_mask(lbl, 8, _gen(1))
    assert (mask.flatten(1).sum(1) == 8).all()  # 4 classes x 2 pixels each
    assert len({tuple(m.flatten().tolist()) for m in mask}) > 1
    assert torch.equal(mask, class_mix_mask(lbl, 8, _gen(1)))


def test_mix_and_cross_domain_mixture():
    a, b = torch.ones(2, 3, 2, 2), torch.zeros(2, 3, 2, 2)
    mask = torch.tensor([[[True, False], [False, True]]]).expand(2, 2, 2)
    out = cross_domain_mixture(a, b, mask)
    assert torch.equal(out, mask[:, None].expand(2, 3, 2, 2).float())
    la, lb = torch.full((2, 2, 2), 7), torch.full((2, 2, 2), 3)
    assert mix(mask, la, lb).tolist() == [[[7, 3], [3, 7]]] * 2


def test_target_cross_mix():
    src_lbl = torch.tensor([[[0, 1], [255, 1]]])
    tgt_lbl = torch.tensor([[[2, 2], [2, 255]]])
    src_img = torch.full((1, 3, 2, 2), 0.9)
    tgt_img = torch.full((1, 3, 2, 2), 0.1)
    seen = set()
    for seed in range(12):
        t_mix, y_mix = target_cross_mix(src_img, src_lbl, tgt_img, tgt_lbl, 3, _gen(seed))
        pasted = t_mix[0, 0] > 0.5
        assert not pasted[1, 0]  # ignore pixels of the source are never pasted
        assert pasted.sum().item() in (1, 2)  # one of the two source classes
        assert torch.equal(y_mix[0][pasted], src_lbl[0][pasted])
        assert torch.equal(y_mix[0][~pasted], tgt_lbl[0][~pasted])
        seen.add(tuple(y_mix.flatten().tolist()))
    assert seen == {(0, 2, 2, 255), (2, 1, 2, 1)}
