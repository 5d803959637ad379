"""One inference path: evaluation, pseudo-labels and the report predict the same labels."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

try:
    from fixtures_data import make_gta5
except ImportError:  # tests/ imported as a package
    from tests.fixtures_data import make_gta5

from diga.checkpoint import model_metadata, save_weights
from diga.engine import report
from diga.engine.config import preset
from diga.engine.evaluation import evaluate_checkpoint
from diga.engine.pseudolabels import generate_pseudo_labels
from diga.models import create

ODD_SCALES = (1.0, 0.5, 0.75)  # 77x131 -> 39x66 and 58x98: no scale divides the size exactly


def _varied_checkpoint(path):
    """Random weights whose predictions vary over the image (a fresh classifier's bias dominates)."""
    torch.manual_seed(3)
    model = create("deeplabv2_light", 19)
    with torch.no_grad():
        model.head.classifier.bias.zero_()
    return save_weights(path, model.state_dict(), model_metadata("deeplabv2_light", "cityscapes19"))


def test_evaluation_pseudo_labels_and_report_predict_the_same_at_odd_sizes(tmp_path):
    rng = np.random.default_rng(0)
    ids = rng.choice([7, 8, 11, 21, 23, 24, 26], size=(77, 131)).astype(np.uint8)  # Cityscapes labelIds
    data = f"gta5:{make_gta5(tmp_path / 'gta', {'00001.png': ids})}"
    weights = _varied_checkpoint(tmp_path / "m.safetensors")
    cfg = preset("cpu").replace(val=data, eval_scales=ODD_SCALES, device="cpu", workers=0)

    scored = []
    # in the run's precision, as pseudo-labels and the report (the cpu preset's bf16 where the CPU has it)
    evaluated = evaluate_checkpoint(weights, data, scales=ODD_SCALES, device="cpu", workers=0, amp=cfg.amp,
                                    on_prediction=lambda images, pred, labels: scored.append(pred[0]))
    manifest = generate_pseudo_labels(weights, data, tmp_path / "pseudo", cfg)
    (label_png,) = (manifest.parent / "labels").iterdir()
    pseudo = torch.from_numpy(np.array(Image.open(label_png))).long()
    metrics, space, shown = report._evaluate_pair(weights, weights, data, cfg)

    (evaluation,) = scored
    # Floor vs round-half-up of the scaled sizes changes hundreds of these pixels' labels.
    assert evaluation.shape == (77, 131) and len(evaluation.unique()) > 1  # not a trivial constant map
    assert torch.equal(pseudo, evaluation)
    assert torch.equal(shown["after"][0], evaluation) and torch.equal(shown["before"][0], evaluation)
    assert metrics["after"]["miou"] == evaluated["miou"] and metrics["after"]["iou"] == evaluated["iou"]
    assert space.name == "cityscapes19"
