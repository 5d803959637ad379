"""Batches are pinned only when they are copied to a CUDA device: a run with --device cpu on a
machine that has a GPU used to pin every batch (page-locked memory for nothing)."""

from __future__ import annotations

import torch

from diga.engine import loaders


def _pinning(monkeypatch, build) -> bool:
    seen = {}

    class Recording(torch.utils.data.DataLoader):
        def __init__(self, *a, **kw):
            seen.update(kw)
            super().__init__(*a, **{**kw, "pin_memory": False})  # nothing to pin for on this machine

    monkeypatch.setattr(loaders, "DataLoader", Recording)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a machine with a GPU
    build()
    return seen["pin_memory"]


def test_cpu_runs_do_not_pin_even_where_cuda_exists(tiny_cfg, monkeypatch):
    dataset = list(zip(torch.zeros(4, 3, 8, 8), torch.zeros(4, 8, 8, dtype=torch.int64)))
    cfg = tiny_cfg.replace(device="cpu", workers=0)
    assert not _pinning(monkeypatch, lambda: loaders.infinite_loader(dataset, cfg, 0))
    assert not _pinning(monkeypatch, lambda: loaders.eval_loader(dataset, 0, device=torch.device("cpu")))
    assert _pinning(monkeypatch, lambda: loaders.eval_loader(dataset, 0, device=torch.device("cuda")))
