"""--teacher-mode: the EMA teacher in train mode (the authors' code: each batch normalised by its own
statistics, dropout active, parameters-only EMA) or in eval mode (running statistics, averaged like
the weights; the cpu and gpu presets)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from diga.engine.config import StageConfig, preset
from diga.method import EMATeacher


def _bn_net(dropout: float = 0.0) -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Dropout2d(dropout))
    with torch.no_grad():  # running statistics away from the init's (0, 1), as after some training
        net.train()(torch.randn(8, 3, 8, 8) * 3 + 2)
    return net


def _images(shift: float, n: int = 2) -> torch.Tensor:
    return torch.randn(n, 3, 8, 8, generator=torch.Generator().manual_seed(int(shift))) + shift


@torch.no_grad()
def test_a_train_mode_teacher_normalises_each_batch_by_its_own_statistics():
    student = _bn_net()
    train, eval_ = EMATeacher(student, mode="train"), EMATeacher(student)
    a, b, c = _images(0), _images(1), _images(4)
    assert train.module.training and not eval_.module.training
    # train: the same images give other outputs next to other images, and not the eval-mode ones
    assert not torch.allclose(train(torch.cat([a, b]))[:2], train(torch.cat([a, c]))[:2])
    assert not torch.allclose(train(a), eval_(a))
    # eval: an image's output does not depend on its batch
    assert torch.allclose(eval_(torch.cat([a, b]))[:2], eval_(torch.cat([a, c]))[:2], atol=1e-6)


@torch.no_grad()
def test_a_train_mode_teacher_drops_out_and_an_eval_mode_one_does_not():
    student = _bn_net(dropout=0.5)
    x = _images(0, n=4)
    train, eval_ = EMATeacher(student, mode="train"), EMATeacher(student)
    assert not torch.equal(train(x), train(x))
    assert torch.equal(eval_(x), eval_(x))


@torch.no_grad()
def test_a_train_mode_update_averages_the_parameters_only():
    student = _bn_net()
    teacher = EMATeacher(student, mode="train")
    old_params = [p.clone() for p in teacher.module.parameters()]
    old_buffers = {k: b.clone() for k, b in teacher.module.named_buffers()}
    for p in student.parameters():
        p.add_(1.0)
    student[1].running_mean.fill_(5.0)
    student[1].running_var.fill_(9.0)
    student[1].num_batches_tracked.fill_(70)
    assert teacher.update(student, step=1) == 0.5
    for t, old, s in zip(teacher.module.parameters(), old_params, student.parameters()):
        assert torch.allclose(t, (old + s) / 2)
    assert all(torch.equal(b, old_buffers[k]) for k, b in teacher.module.named_buffers())
    # the teacher's own forwards move its running statistics (used only when it is evaluated)
    teacher(_images(3))
    assert int(teacher.module[1].num_batches_tracked) == int(old_buffers["1.num_batches_tracked"]) + 1
    assert not torch.equal(teacher.module[1].running_mean, old_buffers["1.running_mean"])


@torch.no_grad()
def test_an_eval_mode_update_still_averages_the_buffers():
    student = _bn_net()
    teacher = EMATeacher(student)
    assert teacher.mode == "eval"
    old_mean = teacher.module[1].running_mean.clone()
    student[1].running_mean.fill_(5.0)
    student[1].num_batches_tracked.fill_(70)
    teacher.update(student, step=1)
    assert torch.allclose(teacher.module[1].running_mean, (old_mean + 5.0) / 2)
    assert int(teacher.module[1].num_batches_tracked) == 70


def test_an_unknown_teacher_mode_is_refused():
    with pytest.raises(ValueError, match="mode must be one of train, eval"):
        EMATeacher(_bn_net(), mode="training")


def test_the_paper_presets_run_the_teacher_in_train_mode_and_the_others_in_eval_mode():
    assert [preset(p).teacher_mode for p in ("paper", "paper-dg", "paper-semi")] == ["train"] * 3
    assert [preset(p).teacher_mode for p in ("cpu", "gpu")] == ["eval"] * 2
    # a config file written before the setting existed keeps its meaning
    old = "\n".join(line for line in preset("cpu").to_yaml().splitlines() if not line.startswith("teacher_mode:"))
    assert StageConfig.from_yaml(old).teacher_mode == "eval"


def _warmup_trainer(cfg, run_dir):
    from diga.engine.warmup import WarmupTrainer

    trainer = WarmupTrainer(cfg.replace(eval_every=0, vis_every=0, ckpt_every=0), run_dir)
    trainer.source, trainer.target = trainer.branch.loaders(0)
    return trainer


def _without_dropout(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Dropout2d):
            m.p = 0.0


def test_teacher_forward_runs_each_batch_alone_in_train_mode_and_together_in_eval_mode(tiny_cfg, tmp_path):
    x, t = torch.rand(2, 3, 48, 96), torch.rand(2, 3, 48, 96) * 0.5
    train = _warmup_trainer(tiny_cfg.replace(teacher_mode="train"), tmp_path / "train")
    _without_dropout(train.teacher.module)  # batch statistics alone
    joint, feats = train.teacher_forward(x, t)
    alone = [train.teacher_forward(b) for b in (x, t)]
    assert torch.equal(joint, torch.cat([alone[0][0], alone[1][0]]))
    assert torch.equal(feats, torch.cat([alone[0][1], alone[1][1]]))
    assert not torch.allclose(joint, train.teacher_forward(torch.cat([x, t]))[0])
    eval_ = _warmup_trainer(tiny_cfg, tmp_path / "eval")
    assert torch.equal(eval_.teacher_forward(x, t)[0], eval_.teacher_forward(torch.cat([x, t]))[0])


def test_a_train_mode_warmup_keeps_the_teachers_own_statistics_and_mode(tiny_cfg, tmp_path):
    # warmup_target_bn: the student sees two batches a step, the teacher one
    cfg = tiny_cfg.replace(steps=2, warmup_target_bn=True)
    counts = {}
    for mode in ("train", "eval"):
        trainer = _warmup_trainer(cfg.replace(teacher_mode=mode), tmp_path / mode)
        for step in range(2):
            assert torch.isfinite(trainer.optimization_step(step)["loss"])
        bn = next(m for m in trainer.teacher.module.modules() if isinstance(m, nn.BatchNorm2d))
        counts[mode] = int(bn.num_batches_tracked)
        trainer.evaluate(trainer.teacher.module)  # an evaluation point puts the teacher back in its mode
        assert trainer.teacher.module.training == (mode == "train")
    assert counts == {"train": 2, "eval": 4}  # its own forwards vs the student's, averaged


def test_a_train_mode_selftraining_step_runs_with_separate_teacher_forwards(tiny_cfg, tmp_path):
    from conftest import make_checkpoint

    from diga.engine.loaders import infinite_loader
    from diga.engine.pseudolabels import compute_centroids, generate_pseudo_labels
    from diga.engine.selftrain import SelfTrainer

    init = make_checkpoint(tmp_path / "warm.safetensors")
    manifest = generate_pseudo_labels(init, tiny_cfg.target, tmp_path / "pseudo", tiny_cfg)
    centroids = compute_centroids(init, manifest, tmp_path / "centroids.safetensors", tiny_cfg)
    cfg = tiny_cfg.replace(init=str(init), pseudo_labels=str(manifest), centroids=str(centroids),
                           teacher_mode="train", steps=2, eval_every=0, vis_every=0, ckpt_every=0)
    trainer = SelfTrainer(cfg, tmp_path / "selftrain")
    trainer.pseudo_batches = infinite_loader(trainer.pseudo_set, cfg, 0, salt=2)
    trainer.source, trainer.target = trainer.branch.loaders(0)
    for step in range(2):
        assert torch.isfinite(trainer.optimization_step(step)["loss"])
    assert trainer.teacher.module.training and torch.isfinite(trainer.centroids).all()
    bn = next(m for m in trainer.teacher.module.modules() if isinstance(m, nn.BatchNorm2d))
    assert int(bn.num_batches_tracked) == 4  # [x, x_mix] and t: two forwards a step


@pytest.mark.parametrize("command", ["warmup", "selftrain", "adapt"])
def test_the_stage_commands_pass_teacher_mode_on(tiny_bench, tmp_path, monkeypatch, command):
    from conftest import stage_configs

    seen = stage_configs(command, tiny_bench, tmp_path, monkeypatch, "--teacher-mode", "train")
    assert [cfg.teacher_mode for cfg in seen] == ["train"]
