"""EMA teacher: alpha schedule, one update by hand, BN buffers, no grads, wrappers."""

import math

import pytest
import torch
from torch import nn

from diga.method import EMATeacher, ema_alpha, unwrap_model


def test_alpha_schedule():
    assert ema_alpha(0) == 0.0
    assert ema_alpha(1) == 0.5
    assert math.isclose(ema_alpha(9), 0.9)
    assert ema_alpha(10000) == 0.999  # 1 - 1/10001 = 0.9999 is capped
    assert math.isclose(ema_alpha(3, max_alpha=0.5), 0.5)


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 2, bias=False), nn.BatchNorm1d(2))


def test_init_copies_freezes_and_evals():
    s = _net()
    t = EMATeacher(s)
    assert t.module is not s and t.module.training is False
    assert all(not p.requires_grad for p in t.module.parameters())
    assert all(p.requires_grad for p in s.parameters())
    for a, b in zip(t.module.parameters(), s.parameters()):
        assert torch.equal(a, b) and a.data_ptr() != b.data_ptr()


def test_one_update_by_hand_with_bn_buffers():
    s = _net()
    with torch.no_grad():
        s[0].weight.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    t = EMATeacher(s)
    with torch.no_grad():
        s[0].weight.copy_(torch.tensor([[3.0, 0.0], [1.0, 8.0]]))
        s[1].weight.copy_(torch.tensor([3.0, 5.0]))  # teacher's is 1, 1
        s[1].running_mean.copy_(torch.tensor([2.0, -4.0]))  # teacher's is 0, 0
        s[1].running_var.copy_(torch.tensor([3.0, 5.0]))  # teacher's is 1, 1
        s[1].num_batches_tracked.fill_(7)
    alpha = t.update(s, step=1)  # alpha = 0.5
    assert alpha == 0.5
    assert torch.allclose(t.module[0].weight, torch.tensor([[2.0, 1.0], [2.0, 6.0]]))
    assert torch.allclose(t.module[1].weight, torch.tensor([2.0, 3.0]))
    assert torch.allclose(t.module[1].running_mean, torch.tensor([1.0, -2.0]))
    assert torch.allclose(t.module[1].running_var, torch.tensor([2.0, 3.0]))
    assert t.module[1].num_batches_tracked.item() == 7  # integer buffer copied, not averaged
    # step 9: alpha = 0.9 -> 0.9 * 2 + 0.1 * 3 = 2.1 for the first weight
    t.update(s, step=9)
    assert math.isclose(t.module[0].weight[0, 0].item(), 2.1, rel_tol=1e-6)


def test_teacher_gets_no_grads_and_call_forwards():
    s = _net()
    t = EMATeacher(s)
    x = torch.randn(4, 2)
    loss = s(x).sum() + t(x).sum()
    loss.backward()
    assert all(p.grad is None for p in t.module.parameters())
    assert all(p.grad is not None for p in s.parameters())


def test_state_dict_passthrough():
    s = _net()
    t = EMATeacher(s)
    sd = t.state_dict()
    assert set(sd) == set(s.state_dict())
    sd = {k: v + 1 if v.is_floating_point() else v for k, v in sd.items()}
    t.load_state_dict(sd)
    assert torch.equal(t.module[0].weight, s[0].weight + 1)


def test_unwraps_compiled_student():
    s = _net()
    c = torch.compile(s)  # lazily compiled: nothing is compiled until called
    assert unwrap_model(c) is s
    t = EMATeacher(c)
    with torch.no_grad():
        s[0].weight.add_(2.0)
    t.update(c, step=0)  # alpha 0: teacher becomes the student
    assert torch.equal(t.module[0].weight, s[0].weight)


def test_unwraps_ddp_student(tmp_path):
    dist = pytest.importorskip("torch.distributed")
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("gloo backend not available")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/pg", rank=0, world_size=1)
    try:
        s = _net()
        ddp = nn.parallel.DistributedDataParallel(s)
        assert unwrap_model(ddp) is s
        t = EMATeacher(ddp)
        assert set(t.state_dict()) == set(s.state_dict())  # no "module." prefix
        with torch.no_grad():
            s[0].weight.add_(2.0)
        t.update(ddp, step=0)
        assert torch.equal(t.module[0].weight, s[0].weight)
    finally:
        dist.destroy_process_group()
