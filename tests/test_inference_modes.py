"""Inference modes (whole / resize / slide / auto): the windows, the averaging, the resizing, the
automatic rule, the metadata they read, and the same labels from every backend and from evaluation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diga.inference import (
    MODE_CHOICES,
    WHOLE_RANGE,
    TrainingScale,
    auto_mode,
    check_mode,
    infer_logits,
    plan_inference,
    resize_size,
    slide_logits,
    slide_stride,
    slide_windows,
)

SCALE = TrainingScale(size=(64, 128), crop=(32, 64))


class Recorder:
    """``run`` that records the shapes it was given and returns ``fn(x)``."""

    def __init__(self, fn):
        self.fn, self.shapes = fn, []

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.shapes.append(tuple(x.shape))
        return self.fn(x)


def identity_logits(x: torch.Tensor) -> torch.Tensor:
    return x.clone()


# -- the windows -------------------------------------------------------------------------------

def test_slide_windows_follow_mmsegmentation_grid():
    # 100x150, window 32x64, stride 22x43: rows = (100-32+21)//22+1 = 5, cols = (150-64+42)//43+1 = 3;
    # the last row starts at 68 (shifted back to end at 100), not at 88
    boxes = slide_windows((100, 150), (32, 64), (22, 43))
    assert len(boxes) == 15
    assert sorted({(y1, y2) for y1, y2, _, _ in boxes}) == [(0, 32), (22, 54), (44, 76), (66, 98), (68, 100)]
    assert sorted({(x1, x2) for _, _, x1, x2 in boxes}) == [(0, 64), (43, 107), (86, 150)]
    covered = np.zeros((100, 150), bool)
    for y1, y2, x1, x2 in boxes:
        assert (y2 - y1, x2 - x1) == (32, 64)
        covered[y1:y2, x1:x2] = True
    assert covered.all()


def test_slide_windows_of_an_image_smaller_than_the_window():
    assert slide_windows((20, 30), (32, 64), (22, 43)) == [(0, 20, 0, 30)]
    assert slide_stride((32, 64)) == (22, 43) and slide_stride((512, 1024)) == (342, 683)


def test_slide_averages_overlapping_windows():
    # 4x6 image, windows 4x4 every 2 columns: [0, 4) and [2, 6). Window k returns the constant k + 1,
    # so columns 0-1 see 1, columns 2-3 the mean of 1 and 2, columns 4-5 see 2.
    calls = []

    def constant_per_window(x):
        calls.append(tuple(x.shape))
        return torch.cat([torch.full((1, 1, *x.shape[-2:]), float(k + 1)) for k in range(x.shape[0])])

    out = slide_logits(constant_per_window, torch.zeros(1, 3, 4, 6), (4, 4), (2, 2), batch=8)
    assert calls == [(2, 3, 4, 4)]  # both windows in one call
    assert out.shape == (1, 1, 4, 6)
    assert torch.equal(out[0, 0, 0], torch.tensor([1.0, 1.0, 1.5, 1.5, 2.0, 2.0]))
    # one window per call gives the same average
    calls.clear()
    assert torch.equal(slide_logits(constant_per_window, torch.zeros(1, 3, 4, 6), (4, 4), (2, 2), batch=1),
                       torch.tensor([1.0, 1.0, 1.0, 1.0, 1.0, 1.0]).expand(1, 1, 4, 6))
    assert calls == [(1, 3, 4, 4), (1, 3, 4, 4)]


def test_slide_larger_image_reproduces_a_pixelwise_model():
    x = torch.randn(2, 3, 70, 150)
    run = Recorder(identity_logits)
    plan = plan_inference("slide", (70, 150), SCALE)
    out = infer_logits(run, x, plan, batch=4)
    assert torch.allclose(out, x, atol=1e-6)  # every window agrees, so the average is the input
    assert all(s[1:] == (3, 32, 64) and s[0] <= 4 for s in run.shapes)


def test_slide_smaller_image_is_padded_to_the_window():
    x = torch.randn(1, 3, 20, 30)
    run = Recorder(identity_logits)
    out = infer_logits(run, x, plan_inference("slide", (20, 30), SCALE))
    assert run.shapes == [(1, 3, 32, 64)]  # the backend always gets the window's shape
    assert out.shape == (1, 3, 20, 30) and torch.allclose(out, x)


def test_slide_votes_for_a_labels_output_model():
    def labels(x):  # class 1 in the left window, 2 in the right one
        return torch.tensor([1, 2])[: x.shape[0], None, None].expand(x.shape[0], *x.shape[-2:])

    votes = slide_logits(labels, torch.zeros(1, 3, 4, 6), (4, 4), (2, 2), num_classes=3)
    assert torch.equal(votes[0, :, 0, 0], torch.tensor([0.0, 1.0, 0.0]))
    assert torch.equal(votes[0, :, 0, 2], torch.tensor([0.0, 0.5, 0.5]))
    with pytest.raises(ValueError, match="num_classes"):
        slide_logits(labels, torch.zeros(1, 3, 4, 6), (4, 4), (2, 2))


# -- resize and whole --------------------------------------------------------------------------

def test_resize_runs_at_the_training_scale_and_returns_the_original_size():
    x = torch.randn(1, 3, 256, 512)
    run = Recorder(lambda t: t[:, :2])
    plan = plan_inference("resize", (256, 512), SCALE)
    assert plan.input_size == (64, 128)
    out = infer_logits(run, x, plan)
    assert run.shapes == [(1, 3, 64, 128)] and out.shape == (1, 2, 256, 512)
    # a constant image survives the round trip exactly
    const = infer_logits(run, torch.full((1, 3, 256, 512), 0.25), plan)
    assert torch.allclose(const, torch.full_like(const, 0.25))


def test_resize_keeps_the_aspect_ratio():
    assert resize_size((256, 512), (64, 128)) == (64, 128)
    assert resize_size((100, 100), (64, 128)) == (64, 64)  # the short side limits
    assert resize_size((1024, 2048), (720, 1280)) == (640, 1280)  # Cityscapes vs the paper's base size
    assert resize_size((32, 64), (64, 128)) == (64, 128)  # small images grow


def test_whole_runs_the_image_as_it_is_or_fitted():
    run = Recorder(identity_logits)
    x = torch.randn(1, 3, 40, 90)
    assert torch.equal(infer_logits(run, x, plan_inference("whole", (40, 90), SCALE)), x)
    plan = plan_inference("whole", (40, 90), SCALE, fit=lambda s: (48, 96))
    out = infer_logits(run, x, plan)
    assert run.shapes[-1] == (1, 3, 48, 96) and out.shape == (1, 3, 40, 90)


# -- the automatic rule and the metadata -------------------------------------------------------

@pytest.mark.parametrize("size, mode", [
    ((64, 128), "whole"), ((70, 130), "whole"), ((46, 90), "whole"),  # 1x, 1.11x, just over 1/2 the pixels
    ((80, 130), "resize"), ((90, 180), "resize"), ((256, 512), "resize"),  # 1.27x, 2x, 16x
    ((32, 64), "resize"), ((45, 91), "resize"),  # 1/4, just under 1/2
])
def test_auto_rule(size, mode):
    assert auto_mode(size, SCALE) == mode
    plan = plan_inference("auto", size, SCALE)
    assert plan.mode == mode and plan.automatic and "chosen from the image size" in plan.describe()


def test_auto_thresholds_are_the_measured_range():
    assert WHOLE_RANGE == (0.5, 1.25)  # docs/BENCHMARKS.md, "Inference modes at any resolution"
    h, w = SCALE.size
    assert auto_mode((h, w // 2), SCALE) == "whole" and auto_mode((h, w // 2 - 1), SCALE) == "resize"
    assert auto_mode((h, w * 5 // 4), SCALE) == "whole" and auto_mode((h, w * 5 // 4 + 1), SCALE) == "resize"


def test_describe_names_image_and_training_scale():
    big = TrainingScale((720, 1280), (512, 896))
    assert plan_inference("slide", (1024, 2048), big).describe() == (
        "slide (image 1024x2048 vs training crop 512x896: windows 512x896, stride 342x598)")
    assert plan_inference("resize", (1024, 2048), big).describe() == (
        "resize (image 1024x2048 vs training scale 720x1280: network input 640x1280)")
    assert plan_inference("whole", (720, 1280), big).describe() == "whole (image 720x1280 vs training scale 720x1280)"


def test_training_scale_from_metadata_with_fallbacks():
    assert TrainingScale.from_meta({"train_size": [720, 1280], "crop": [512, 896], "input_size": [1, 1]}) == (
        TrainingScale((720, 1280), (512, 896)))
    assert TrainingScale.from_meta({"input_size": [64, 128]}) == TrainingScale((64, 128), (64, 128))
    assert TrainingScale.from_meta({}) == TrainingScale((512, 1024), (512, 1024))


def test_bad_mode_names_the_choices():
    assert check_mode("slide") == "slide"
    with pytest.raises(ValueError, match="--mode must be one of auto, whole, resize, slide"):
        check_mode("tile", "--mode")
    assert MODE_CHOICES == ("auto", "whole", "resize", "slide")


def test_trainer_metadata_records_train_size_and_crop(tiny_cfg, tmp_path):
    from diga.engine.supervised import SupervisedTrainer

    cfg = tiny_cfg.replace(source=tiny_cfg.target)
    meta = SupervisedTrainer(cfg, tmp_path / "own").metadata()
    assert meta["train_size"] == [64, 128] and meta["crop"] == [48, 96]  # the images' own size
    meta = SupervisedTrainer(cfg.replace(base_size=(96, 192)), tmp_path / "base").metadata()
    assert meta["train_size"] == [96, 192]
    assert TrainingScale.from_meta(meta) == TrainingScale((96, 192), (48, 96))


# -- evaluation shares the modes ---------------------------------------------------------------

class TinyModel(torch.nn.Module):
    """(logits, features): a per-pixel linear map of the input, so windows agree with the whole."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 4, 1)

    def forward(self, x):
        return self.conv(x), x


def test_evaluate_model_modes_agree_for_a_pixelwise_model():
    from diga.evaluate import evaluate_model

    rng = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (2, 3, 64, 96), generator=rng, dtype=torch.uint8)
    labels = torch.randint(0, 4, (2, 64, 96), generator=rng)
    loader = [(images, labels)]
    model = TinyModel()
    scale = TrainingScale((64, 96), (32, 48))
    whole = evaluate_model(model, loader, 4, "cpu", mode="whole")
    slide = evaluate_model(model, loader, 4, "cpu", mode="slide", training_scale=scale)
    assert whole.miou == slide.miou and torch.equal(whole.confusion, slide.confusion)
    with pytest.raises(ValueError, match="training_scale"):
        evaluate_model(model, loader, 4, "cpu", mode="resize")


# -- the Predictor: every backend, every mode --------------------------------------------------

@pytest.fixture(scope="module")
def light_ckpt(tmp_path_factory):
    from tests.conftest import make_checkpoint

    return make_checkpoint(tmp_path_factory.mktemp("modes") / "light.safetensors", train_size=[64, 128],
                           crop=[32, 64])


@pytest.fixture(scope="module")
def light_onnx(light_ckpt):
    pytest.importorskip("onnxruntime")
    from diga.export import export_model

    return export_model(light_ckpt, "onnx", out=light_ckpt.with_name("light.onnx"), dynamic=True,
                        log=lambda m: None).path


@pytest.mark.parametrize("mode", ["whole", "resize", "slide", "auto"])
def test_predictor_torch_and_onnx_agree_in_every_mode(light_ckpt, light_onnx, mode):
    from diga.export import Predictor

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (128, 256, 3), dtype=np.uint8), rng.integers(0, 256, (48, 80, 3), dtype=np.uint8)]
    p_torch, p_onnx = Predictor.load(light_ckpt, mode=mode), Predictor.load(light_onnx)
    r_torch, r_onnx = p_torch.predict(images), p_onnx.predict(images, mode=mode)
    for a, b, im in zip(r_torch, r_onnx, images):
        assert a.labels.shape == im.shape[:2]
        assert (a.labels == b.labels).mean() > 0.999
        assert a.mode == b.mode
    expected = {"whole": "whole", "resize": "resize", "slide": "slide", "auto": "resize"}[mode]
    assert r_torch[0].mode.startswith(expected + " (image 128x256")
    if mode == "slide":
        assert r_torch[0].net_size == (32, 64) and p_torch.last_timing.batches > 2
    if mode == "resize":
        assert r_torch[0].net_size == (64, 128)


def test_predictor_slide_on_a_fixed_shape_export_uses_its_input_size(light_ckpt, tmp_path):
    pytest.importorskip("onnxruntime")
    from diga.export import Predictor, export_model

    fixed = export_model(light_ckpt, "onnx", out=tmp_path / "fixed.onnx", imgsz=(32, 64), batch=2, check=False,
                         log=lambda m: None).path
    p = Predictor.load(fixed, mode="slide")
    image = np.random.default_rng(1).integers(0, 256, (70, 150, 3), dtype=np.uint8)
    (res,) = p.predict([image])
    assert res.labels.shape == (70, 150) and res.net_size == (32, 64)
    ref = Predictor.load(light_ckpt, mode="slide").predict([image])[0]
    assert (res.labels == ref.labels).mean() > 0.999


def test_predictor_default_mode_comes_from_the_export_metadata(light_ckpt):
    from diga.export import Predictor, PredictorError
    from diga.export.backends import TorchBackend
    from diga.export.metadata import default_mode

    assert default_mode({"export": {"mode": "slide"}}) == "slide" and default_mode({}) == "auto"
    backend = TorchBackend.load(light_ckpt, torch.device("cpu"))
    assert Predictor(backend).mode == "auto"
    backend.meta["export"]["mode"] = "slide"
    assert Predictor(backend).mode == "slide" and "mode='slide'" in repr(Predictor(backend))
    assert Predictor(backend, mode="whole").mode == "whole"
    with pytest.raises(PredictorError, match="mode must be one of"):
        Predictor(backend, mode="tiles")


def test_export_records_the_default_mode(light_ckpt, tmp_path, cli):
    pytest.importorskip("onnxruntime")
    from diga.export import ExportError, Predictor, export_model, read_export_metadata

    path = export_model(light_ckpt, "onnx", out=tmp_path / "slide.onnx", dynamic=True, check=False, mode="slide",
                        log=lambda m: None).path
    meta = read_export_metadata(path)
    assert meta["export"]["mode"] == "slide" and meta["train_size"] == [64, 128] and meta["crop"] == [32, 64]
    assert Predictor.load(path).mode == "slide" and Predictor.load(path, mode="whole").mode == "whole"
    with pytest.raises(ExportError, match="--mode must be one of auto, whole, resize, slide"):
        export_model(light_ckpt, "onnx", out=tmp_path / "x.onnx", mode="tiles", log=lambda m: None)
    r = cli("export", light_ckpt, "--mode", "tiles", "--out", tmp_path / "y.onnx")
    assert r.exit_code == 2 and "--mode" in r.text
