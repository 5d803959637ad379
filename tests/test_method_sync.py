"""The hot-path pieces run without host synchronisation (CUDA only)."""

import pytest
import torch

from diga.method import (
    EMATeacher,
    class_mix_mask,
    photometric_augment,
    prototype_labels,
    seg_ce,
    select_dynamic,
    target_cross_mix,
    update_centroids,
)
from diga.method.translate import build_translator


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="host-sync check needs CUDA")
def test_no_host_sync_on_cuda():
    dev = torch.device("cuda")
    g = torch.Generator(device=dev).manual_seed(0)
    x = torch.rand(2, 3, 32, 48, device=dev)
    lbl = torch.randint(0, 5, (2, 32, 48), device=dev)
    feats = torch.randn(2, 8, 8, 12, device=dev)
    cent = torch.randn(5, 8, device=dev)
    student = torch.nn.Sequential(torch.nn.Conv2d(3, 5, 1), torch.nn.BatchNorm2d(5)).to(dev)
    teacher = EMATeacher(student)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        mask = class_mix_mask(lbl, 5, g)
        photometric_augment(x, generator=g)
        for name in ("fda", "color"):
            build_translator(name)(x, x, g)
        target_cross_mix(x, lbl, x, lbl, 5, g)
        proto = prototype_labels(feats, cent)
        sel = select_dynamic(lbl, proto)
        update_centroids(cent, feats, sel, proto, 5)
        seg_ce(torch.randn(2, 5, 8, 12, device=dev), sel)
        teacher.update(student, 3)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert mask.shape == lbl.shape
