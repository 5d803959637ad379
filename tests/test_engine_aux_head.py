"""The auxiliary head's loss (``aux_weight``, ``--aux-weight``; the authors' semi-supervised code weighs
HRNet-OCR's soft object regions 0.1 beside the main output in every loss)."""

from __future__ import annotations

import pytest
import torch

from diga.engine.config import preset
from diga.errors import ConfigError
from diga.models import create

AUX_NET = "hrnet_w18_small_ocr"


@pytest.fixture()
def timm():
    return pytest.importorskip("timm", reason="the hrnet networks need timm (the nets extra)")


def test_the_ocr_head_returns_its_soft_region_logits_as_the_auxiliary_output(timm):
    torch.manual_seed(0)
    model = create(AUX_NET, num_classes=7).eval()
    assert model.has_aux and not getattr(create("deeplabv2_light", 7), "has_aux", False)
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        logits, features = model(x)
        logits_aux, features_aux, aux = model(x, aux=True)
        regions = model.head.regions(model.backbone(x))
    assert torch.equal(logits, logits_aux) and torch.equal(features, features_aux)  # aux adds, changes nothing
    assert aux.shape == logits.shape and torch.equal(aux, regions)
    assert not torch.allclose(aux, logits)


def test_a_network_without_an_auxiliary_head_refuses_a_weight(tiny_cfg, tmp_path):
    from diga.engine.warmup import WarmupTrainer

    with pytest.raises(ConfigError, match=r"--aux-weight.*deeplabv2_light|deeplabv2_light.*--aux-weight"):
        WarmupTrainer(tiny_cfg.replace(aux_weight=0.1), tmp_path / "warmup")


def test_only_the_semi_supervised_paper_preset_weighs_the_auxiliary_head():
    assert preset("paper-semi").aux_weight == 0.1
    assert {preset(p).aux_weight for p in ("paper", "paper-synthia", "paper-dg", "cpu", "gpu")} == {0.0}


class Recorder:
    """Wraps a loss function: calls it and keeps (args, result) of every call."""

    def __init__(self, fn):
        self.fn, self.calls = fn, []

    def __call__(self, *args, **kwargs):
        result = self.fn(*args, **kwargs)
        self.calls.append((args, result))
        return result


@pytest.fixture()
def aux_outputs(monkeypatch):
    """Every auxiliary output the OCR head returns (student and teacher forwards alike)."""
    from diga.models.hrnet import OCRHead

    seen, forward = [], OCRHead.forward

    def recording_forward(self, x, aux=False):
        out = forward(self, x, aux=aux)
        if aux:
            seen.append(out[2].detach().clone())
        return out

    monkeypatch.setattr(OCRHead, "forward", recording_forward)
    return seen


def is_aux_output(logits: torch.Tensor, seen: list[torch.Tensor]) -> bool:
    """Whether ``logits`` is a batch slice of one of the recorded auxiliary outputs."""
    logits = logits.detach().float()
    return any(torch.equal(logits, out[i:i + logits.shape[0]].float())
               for out in seen for i in range(out.shape[0] - logits.shape[0] + 1))


def weighted(calls, w: float) -> torch.Tensor:
    (_, main), (_, aux) = calls
    return main + w * aux


@pytest.mark.parametrize("aux_weight", [0.0, 0.25])
def test_the_warmup_weighs_the_auxiliary_head_in_ce_and_distillation(timm, tiny_cfg, tmp_path, monkeypatch,
                                                                     aux_outputs, aux_weight):
    from diga.engine import warmup
    from diga.engine.warmup import WarmupTrainer

    seg = Recorder(warmup.segmentation_loss)
    distil = Recorder(warmup.distillation_from_logits)
    monkeypatch.setattr(warmup, "segmentation_loss", seg)
    monkeypatch.setattr(warmup, "distillation_from_logits", distil)
    cfg = tiny_cfg.replace(model=AUX_NET, aux_weight=aux_weight, eval_every=0, vis_every=0, ckpt_every=0)
    trainer = WarmupTrainer(cfg, tmp_path / "warmup")
    trainer.source, trainer.target = trainer.branch.loaders(0)
    losses = trainer.optimization_step(0)
    if aux_weight == 0:  # the main output alone, as before the setting existed
        assert (len(seg.calls), len(distil.calls), aux_outputs) == (1, 1, [])
        return
    assert len(seg.calls) == len(distil.calls) == 2
    assert torch.allclose(losses["seg"], weighted(seg.calls, aux_weight))
    assert torch.allclose(losses["distil"], weighted(distil.calls, aux_weight))
    # the first call of each is the main output, the second the auxiliary one; the distillation pairs
    # the student's auxiliary logits with the teacher's
    assert not is_aux_output(seg.calls[0][0][0], aux_outputs) and is_aux_output(seg.calls[1][0][0], aux_outputs)
    assert all(is_aux_output(arg, aux_outputs) for arg in distil.calls[1][0][:4])
    assert not any(is_aux_output(arg, aux_outputs) for arg in distil.calls[0][0][:4])


@pytest.mark.parametrize("student_forward", ["joint", "separate"])
def test_self_training_weighs_the_auxiliary_head_in_every_loss(timm, tiny_cfg, tmp_path, monkeypatch, aux_outputs,
                                                               student_forward):
    from conftest import make_checkpoint

    from diga.engine import selftrain
    from diga.engine.loaders import infinite_loader
    from diga.engine.pseudolabels import compute_centroids, generate_pseudo_labels

    cfg = tiny_cfg.replace(model=AUX_NET)
    init = make_checkpoint(tmp_path / "warm.safetensors", arch=AUX_NET)
    manifest = generate_pseudo_labels(init, cfg.target, tmp_path / "pseudo", cfg)
    centroids = compute_centroids(init, manifest, tmp_path / "centroids.safetensors", cfg)
    seg = Recorder(selftrain.segmentation_loss)
    distil = Recorder(selftrain.distillation_from_logits)
    monkeypatch.setattr(selftrain, "segmentation_loss", seg)
    monkeypatch.setattr(selftrain, "distillation_from_logits", distil)
    cfg = cfg.replace(init=str(init), pseudo_labels=str(manifest), centroids=str(centroids), aux_weight=0.1,
                      student_forward=student_forward, eval_every=0, vis_every=0, ckpt_every=0)
    trainer = selftrain.SelfTrainer(cfg, tmp_path / "selftrain")
    trainer.pseudo_batches = infinite_loader(trainer.pseudo_set, cfg, 0, salt=2)
    trainer.source, trainer.target = trainer.branch.loaders(0)
    losses = trainer.optimization_step(0)
    # per head: source CE, cross-mix CE (in that order), distillation
    assert len(seg.calls) == 4 and len(distil.calls) == 2
    assert torch.allclose(losses["seg"], weighted(seg.calls[0::2], 0.1))
    assert torch.allclose(losses["mix"], weighted(seg.calls[1::2], 0.1))
    assert torch.allclose(losses["distil"], weighted(distil.calls, 0.1))
    assert [is_aux_output(args[0], aux_outputs) for args, _ in seg.calls] == [False, False, True, True]
    assert all(is_aux_output(arg, aux_outputs) for arg in distil.calls[1][0][:4])


@pytest.mark.parametrize("command", ["warmup", "selftrain", "adapt"])
def test_the_stage_commands_pass_the_weight_on(tiny_bench, tmp_path, monkeypatch, command):
    from conftest import stage_configs

    configs = stage_configs(command, tiny_bench, tmp_path, monkeypatch, "--aux-weight", "0.3")
    assert configs and all(cfg.aux_weight == 0.3 for cfg in configs)
