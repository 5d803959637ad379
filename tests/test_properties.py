"""Property-based tests: label mapping, class-mix masks and the confusion-matrix metric."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from diga.classes import CITYSCAPES_ID_TO_TRAINID, IGNORE_INDEX, SYNTHIA13, SYNTHIA16, id_lut
from diga.evaluate import ConfusionMatrix, metrics_from_confusion
from diga.method.mix import class_mix_mask

FAST = settings(max_examples=60, deadline=None)
label_maps = arrays(np.uint8, st.tuples(st.integers(1, 3), st.integers(1, 12), st.integers(1, 12)),
                    elements=st.sampled_from(list(range(19)) + [IGNORE_INDEX]))


@FAST
@given(arrays(np.uint16, st.integers(1, 300), elements=st.integers(0, 65535)))
def test_label_lut_maps_every_id_to_a_train_id_or_ignore(raw):
    out = id_lut(CITYSCAPES_ID_TO_TRAINID)[raw]
    assert set(np.unique(out)) <= set(range(19)) | {IGNORE_INDEX}
    for r, o in zip(raw.tolist(), out.tolist()):
        assert o == CITYSCAPES_ID_TO_TRAINID.get(r, IGNORE_INDEX)


@FAST
@given(arrays(np.uint8, st.integers(1, 200), elements=st.sampled_from(list(range(19)) + [IGNORE_INDEX])))
def test_label_space_reduction_keeps_names(train_ids):
    lut = SYNTHIA16.from_cityscapes19()
    out = lut[train_ids]
    from diga.classes import CITYSCAPES_CLASSES

    for a, b in zip(train_ids.tolist(), out.tolist()):
        if b == IGNORE_INDEX:
            assert a == IGNORE_INDEX or CITYSCAPES_CLASSES[a] not in SYNTHIA16.classes
        else:
            assert SYNTHIA16.classes[b] == CITYSCAPES_CLASSES[a]
    assert set(SYNTHIA13.classes) <= set(SYNTHIA16.classes)


@FAST
@given(label_maps, st.integers(0, 2**31 - 1))
def test_mix_mask_is_half_of_each_images_classes_plus_ignore(labels, seed):
    y = torch.from_numpy(labels.astype(np.int64))
    g = torch.Generator().manual_seed(seed)
    mask = class_mix_mask(y, 19, generator=g)
    for b in range(y.shape[0]):
        present = set(torch.unique(y[b]).tolist()) - {IGNORE_INDEX}
        chosen = set(torch.unique(y[b][mask[b]]).tolist()) - {IGNORE_INDEX}
        assert chosen <= present and len(chosen) == (len(present) + 1) // 2
        # whole classes only: a class is either fully inside or fully outside the mask
        for c in present:
            inside = mask[b][y[b] == c]
            assert inside.all() or (~inside).all()
        assert mask[b][y[b] == IGNORE_INDEX].all()


@FAST
@given(label_maps, label_maps)
def test_confusion_matrix_matches_a_literal_count(a, b):
    shape = tuple(min(x, y) for x, y in zip(a.shape, b.shape))
    target = torch.from_numpy(a[: shape[0], : shape[1], : shape[2]].astype(np.int64))
    pred = torch.from_numpy(b[: shape[0], : shape[1], : shape[2]].astype(np.int64)).clamp(max=18)
    cm = ConfusionMatrix(19)
    cm.update(pred, target)
    expected = np.zeros((19, 19), np.int64)
    for t, p in zip(target.reshape(-1).tolist(), pred.reshape(-1).tolist()):
        if t != IGNORE_INDEX:
            expected[t, p] += 1
    assert np.array_equal(cm.mat.numpy(), expected)
    m = metrics_from_confusion(cm.mat)
    ious = []
    for c in range(19):
        tp = expected[c, c]
        union = expected[c].sum() + expected[:, c].sum() - tp
        if union:
            ious.append(tp / union)
            assert abs(m.iou[str(c)] - round(100 * tp / union, 2)) < 1e-6
        else:
            assert m.iou[str(c)] is None  # absent from both GT and prediction: excluded
    if ious:
        assert abs(m.miou - round(100 * float(np.mean(ious)), 2)) < 1e-6
    assert 0.0 <= (m.pixel_accuracy if not np.isnan(m.pixel_accuracy) else 0.0) <= 100.0
