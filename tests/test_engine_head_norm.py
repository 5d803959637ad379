"""head_norm: the paper preset's GroupNorm head, recorded in checkpoints and rebuilt on loading."""

from __future__ import annotations

import torch
from torch import nn

from diga.checkpoint import load_model, read_metadata
from diga.engine.config import StageConfig, preset


def test_paper_preset_has_the_authors_gn_head_and_cpu_gpu_keep_bn():
    assert StageConfig().head_norm == "gn"
    assert preset("paper").head_norm == "gn"
    assert preset("cpu").head_norm == "bn" and preset("gpu").head_norm == "bn"


def test_a_gn_checkpoint_reloads_with_its_head_and_predicts_identically(tiny_cfg, tmp_path):
    from diga.engine.supervised import SupervisedTrainer

    cfg = tiny_cfg.replace(head_norm="gn", steps=2, eval_every=0, vis_every=0, val=None)
    trainer = SupervisedTrainer(cfg, tmp_path / "gn")
    assert trainer.model.head.norm == "gn"
    result = trainer.run()
    assert read_metadata(result.weights)["model_kwargs"] == {"head_norm": "gn"}
    model, _ = load_model(result.weights)
    assert model.head.norm == "gn" and any(isinstance(m, nn.GroupNorm) for m in model.head.modules())
    x = torch.rand(1, 3, 48, 96)
    trainer.model.eval().to(memory_format=torch.contiguous_format)  # the loaded model's layout: the same kernels
    with torch.no_grad():
        expected, got = trainer.model(x), model(x)
    assert torch.equal(expected[0], got[0]) and torch.equal(expected[1], got[1])


def test_training_from_a_checkpoint_keeps_its_head(tiny_cfg, tmp_path):
    from diga.engine.supervised import SupervisedTrainer

    cfg = tiny_cfg.replace(head_norm="gn", steps=1, eval_every=0, vis_every=0, val=None)
    first = SupervisedTrainer(cfg, tmp_path / "a").run()
    # the bn of the config does not override the head the --init checkpoint was trained with
    second = SupervisedTrainer(cfg.replace(head_norm="bn", init=str(first.weights)), tmp_path / "b").run()
    assert read_metadata(second.weights)["model_kwargs"] == {"head_norm": "gn"}
    assert load_model(second.weights)[0].head.norm == "gn"


def test_head_norm_option(cli, tmp_path):
    from diga.cli.options import build_config

    assert build_config("cpu", head_norm="gn").head_norm == "gn"
    for command in ("warmup", "adapt", "train"):
        assert "--head-norm" in cli(command, "--help").text
    result = cli("train", "--data", "gta5:/nowhere", "--preset", "cpu", "--head-norm", "ln", "--project", tmp_path)
    assert result.exit_code != 0 and "head_norm must be one of gn, bn" in result.text


def test_head_norm_is_left_out_for_networks_without_that_head(monkeypatch):
    from diga.models import registry

    monkeypatch.setitem(registry._MODELS, "plain_net", lambda num_classes=19, pretrained=None, **kwargs: None)
    assert registry.supported_settings("plain_net", {"head_norm": "gn"}) == {}
    assert registry.supported_settings("deeplabv2_light", {"head_norm": "gn"}) == {"head_norm": "gn"}
