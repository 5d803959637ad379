"""Model registry and shapes; mIoU on hand-computed cases; checkpoint round trip."""

from __future__ import annotations

import pytest
import torch

from diga.checkpoint import load_model, model_metadata, read_metadata, save_weights
from diga.evaluate import ConfusionMatrix, fused_logits
from diga.models import create, list_models


def test_registry_lists_the_paper_and_cpu_models():
    assert {"deeplabv2_resnet101", "deeplabv2_resnet50", "deeplabv2_light"} <= set(list_models())
    with pytest.raises(ValueError, match="deeplabv2_resnet101"):
        create("segformer_b9")


@pytest.mark.parametrize("name,stride,dim", [("deeplabv2_light", 8, 64), ("deeplabv2_resnet50", 8, 256)])
def test_models_return_logits_and_head_features(name, stride, dim):
    model = create(name, num_classes=16).eval()
    with torch.no_grad():
        logits, features = model(torch.zeros(2, 3, 64, 96))
    assert logits.shape == (2, 16, 64 // stride, 96 // stride)
    assert features.shape == (2, dim, 64 // stride, 96 // stride)
    backbone, head = model.parameter_groups()
    assert len({id(p) for p in backbone + head}) == len(list(model.parameters()))  # each once


def test_resnet101_is_output_stride_8_with_a_256d_head():
    model = create("deeplabv2_resnet101", 19).eval()
    with torch.no_grad():
        logits, features = model(torch.zeros(1, 3, 64, 64))
    assert logits.shape[-2:] == (8, 8) and features.shape[1] == 256
    dilations = [b[0].dilation[0] for b in model.head.branches]
    assert dilations == [1, 6, 12, 18, 24]


def test_miou_hand_computed():
    # GT:   0 0 1 1 255     pred: 0 1 1 1 2
    cm = ConfusionMatrix(3)
    cm.update(torch.tensor([0, 1, 1, 1, 2]), torch.tensor([0, 0, 1, 1, 255]))
    m = cm.compute(["a", "b", "c"])
    # class a: tp 1, fn 1, fp 0 -> 1/2; class b: tp 2, fp 1 -> 2/3; class c: absent everywhere
    # (its only prediction is on an ignore pixel) -> excluded
    assert m.iou == {"a": 50.0, "b": 66.67, "c": None}
    assert m.miou == round((0.5 + 2 / 3) / 2 * 100, 2)
    assert m.pixel_accuracy == 75.0
    sub = cm.compute(["a", "b", "c"], subset=[1])
    assert sub.miou == 66.67
    assert m.subset_miou([1]) == 66.67 and m.subset_miou([0, 2]) == 50.0  # c excluded again


def test_class_predicted_but_absent_from_gt_counts_as_zero():
    cm = ConfusionMatrix(2)
    cm.update(torch.tensor([0, 1]), torch.tensor([0, 0]))
    m = cm.compute()
    assert m.iou == {"0": 50.0, "1": 0.0} and m.miou == 25.0


def test_multiscale_fusion_is_elementwise_max():
    class Toy(torch.nn.Module):
        def forward(self, x):
            full = x.shape[-1] == 8
            logits = torch.zeros(1, 2, *x.shape[-2:])
            logits[:, 0 if full else 1] = 1.0 if full else 2.0
            return logits, logits

    fused = fused_logits(Toy(), torch.zeros(1, 3, 8, 8), scales=(1.0, 0.5))
    assert fused.shape == (1, 2, 8, 8)
    assert torch.allclose(fused[:, 0], torch.ones(8, 8)) and torch.allclose(fused[:, 1], torch.full((8, 8), 2.0))


def test_checkpoint_round_trip_keeps_weights_and_metadata(tmp_path):
    model = create("deeplabv2_light", 19)
    meta = model_metadata("deeplabv2_light", "cityscapes19", input_size=(64, 128), metrics={"miou": 12.5})
    save_weights(tmp_path / "m.safetensors", model.state_dict(), meta)
    loaded, meta2 = load_model(tmp_path / "m.safetensors")
    assert meta2["metrics"] == {"miou": 12.5} and meta2["input_size"] == [64, 128]
    assert read_metadata(tmp_path / "m.safetensors")["mean"] == [0.485, 0.456, 0.406]
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), k


def test_evaluate_checkpoint_reports_the_synthia_13_class_mean(tmp_path):
    """A synthia16 model: 16-class mIoU plus the 13-class mean over the same confusion matrix."""
    import numpy as np

    from diga.checkpoint import model_metadata, save_weights
    from diga.classes import SYNTHIA13_CLASSES, SYNTHIA16, SYNTHIA_ID_TO_TRAINID
    from diga.engine.evaluation import evaluate_checkpoint
    from diga.models import create

    try:
        from fixtures_data import make_synthia
    except ImportError:
        from tests.fixtures_data import make_synthia

    rng = np.random.default_rng(0)
    ids = np.array(sorted(SYNTHIA_ID_TO_TRAINID))
    root = make_synthia(tmp_path / "syn", {f"{i:07d}.png": rng.choice(ids, (32, 64)) for i in range(2)})
    torch.manual_seed(0)
    weights = save_weights(tmp_path / "m.safetensors", create("deeplabv2_light", 16).state_dict(),
                           model_metadata("deeplabv2_light", "synthia16", input_size=(32, 64)))
    result = evaluate_checkpoint(weights, f"synthia:{root}", scales=(1.0,), device="cpu", workers=0)
    thirteen = result["extra_miou"]["mIoU (13 classes)"]
    present = [result["iou"][c] for c in SYNTHIA13_CLASSES if result["iou"][c] is not None]
    assert len(result["iou"]) == SYNTHIA16.num_classes
    assert abs(thirteen - sum(present) / len(present)) < 0.01  # same classes, unrounded IoUs
