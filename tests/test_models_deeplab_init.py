"""The authors' DeepLab-V2 network: the Caffe backbone layout, the DeepLab init file's key layout
(--pretrained deeplab or FILE) and the input normalisation a checkpoint records (--input-norm)."""

from __future__ import annotations

from urllib.error import URLError

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from diga.data.transforms import INPUT_NORMS, PIXEL_MEAN, normalize
from diga.engine.config import StageConfig, preset
from diga.errors import ConfigError, DigaError
from diga.models import create
from diga.models.weights import torchvision_cache_dir

DEEPLAB_FILE = "DeepLab_resnet_pretrained_init-f81d91e8.pth"


def _caffe_net(arch: str = "deeplabv2_resnet101", **kwargs) -> torch.nn.Module:
    return create(arch, 19, backbone_layout="caffe", head_norm="gn", **kwargs)


def _in_authors_layout(backbone: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A backbone's weights as the DeepLab init file holds them: "Scale."-prefixed keys, no
    num_batches_tracked, and a classifier of its own (layer5) that is never loaded."""
    state = {f"Scale.{k}": v.clone() for k, v in backbone.state_dict().items() if not k.endswith("num_batches_tracked")}
    state["Scale.layer5.conv2d_list.0.weight"] = torch.randn(21, 2048, 3, 3)
    return state


# --- layout --------------------------------------------------------------------------------


def test_the_caffe_layout_is_the_authors_resnet():
    net = _caffe_net("deeplabv2_resnet50").backbone
    assert net.maxpool.ceil_mode
    assert net.layer2[0].conv1.stride == (2, 2) and net.layer2[0].conv2.stride == (1, 1)  # stride on the 1x1
    assert [b.conv2.dilation for b in net.layer3] == [(2, 2)] * len(net.layer3)  # every block, the first too
    assert [b.conv2.dilation for b in net.layer4] == [(4, 4)] * len(net.layer4)
    assert all(b.conv2.padding == b.conv2.dilation for b in (*net.layer3, *net.layer4))
    plain = create("deeplabv2_resnet50", 19).backbone
    assert not plain.maxpool.ceil_mode and plain.layer3[0].conv2.dilation == (1, 1)
    assert plain.layer2[0].conv2.stride == (2, 2)


@pytest.mark.parametrize("size,caffe,torchvision", [
    ((512, 896), (65, 113), (64, 112)),  # the authors' training crop
    ((64, 96), (9, 13), (8, 12)),  # an even stem output: ceil-mode pooling keeps one more row/column
    ((66, 98), (9, 13), (9, 13)),  # an odd one: both poolings agree
])
def test_ceil_mode_pooling_gives_the_authors_output_sizes(size, caffe, torchvision):
    x = torch.empty(1, 3, *size, device="meta")  # shapes only: no arithmetic
    for layout, expected in (("caffe", caffe), ("torchvision", torchvision)):
        model = create("deeplabv2_resnet101", 19, backbone_layout=layout, pretrained=None).to("meta").eval()
        assert tuple(model(x)[0].shape[-2:]) == expected, layout


def test_the_caffe_layout_draws_the_head_convs_from_n_0_001():
    torch.manual_seed(0)
    head = _caffe_net("deeplabv2_resnet50").head
    for conv in (head.branches[0][0], head.bottleneck[0], head.classifier):
        assert abs(conv.weight.std().item() - 0.01) < 0.001
    assert torch.count_nonzero(head.bottleneck[0].bias) == 0 and torch.count_nonzero(head.branches[0][0].bias) > 0
    se = head.se[0]  # the squeeze-and-excitation keeps PyTorch's default: U(+-1/sqrt(fan_in)), std 1/sqrt(3 fan_in)
    assert abs(se.weight.std().item() - (3 * se.in_channels) ** -0.5) < 0.001
    assert create("deeplabv2_resnet50", 19, head_norm="gn").head.classifier.weight.std().item() > 0.02


# --- the DeepLab init file -----------------------------------------------------------------


def test_the_deeplab_init_layout_round_trips(tmp_path):
    torch.manual_seed(0)
    authors = _caffe_net().backbone
    state = _in_authors_layout(authors)
    torch.save(state, tmp_path / DEEPLAB_FILE)
    torch.manual_seed(1)
    loaded = _caffe_net(pretrained=str(tmp_path / DEEPLAB_FILE)).backbone.state_dict()
    # the first conv reads RGB: its input channels reversed from the file's BGR ones
    assert torch.equal(loaded["conv1.weight"], state["Scale.conv1.weight"].flip(1))
    others = [k for k in loaded if not k.endswith("num_batches_tracked") and k != "conv1.weight"]
    assert len(others) == len(state) - 2  # every file tensor but conv1 and the classifier
    assert all(torch.equal(loaded[k], state[f"Scale.{k}"]) for k in others)


def test_the_loaded_network_on_rgb_computes_the_authors_network_on_bgr(tmp_path):
    """input_norm caffe in RGB order + the reversed first conv = the authors' BGR (255x - mean)/128."""
    torch.manual_seed(0)
    authors = _caffe_net("deeplabv2_resnet50").eval()
    torch.save(_in_authors_layout(authors.backbone), tmp_path / "init.pth")
    ours = _caffe_net("deeplabv2_resnet50", pretrained=str(tmp_path / "init.pth")).eval()
    ours.head.load_state_dict(authors.head.state_dict())
    rgb = torch.rand(1, 3, 40, 56)
    bgr_authors = (rgb * 255 - torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1)).flip(1) / 128  # their loaders
    with torch.no_grad():
        expected = authors(bgr_authors)[0]
        got = ours(normalize(rgb, *INPUT_NORMS["caffe"]))[0]
    assert torch.allclose(got, expected, atol=1e-4, rtol=1e-4)


def test_a_file_in_another_layout_is_refused_naming_the_keys(tmp_path):
    torch.manual_seed(0)
    plain = {k: v for k, v in _caffe_net("deeplabv2_resnet50").backbone.state_dict().items()}
    torch.save(plain, tmp_path / "torchvision_names.pth")  # no "Scale." prefix
    with pytest.raises(ConfigError, match=r"torchvision_names\.pth: not the DeepLab init layout.*"
                                          r"missing \(e\.g\. Scale\.conv1\.weight.*unexpected \(e\.g\. conv1\.weight"):
        _caffe_net("deeplabv2_resnet50", pretrained=str(tmp_path / "torchvision_names.pth"))
    torch.save(_in_authors_layout(_caffe_net("deeplabv2_resnet50").backbone), tmp_path / "r50.pth")
    with pytest.raises(ConfigError, match=r"r50\.pth: .*missing \(e\.g\. Scale\.layer3\.6\."):
        _caffe_net("deeplabv2_resnet101", pretrained=str(tmp_path / "r50.pth"))  # a ResNet-50 file in a ResNet-101


def test_the_deeplab_file_in_the_torchvision_layout_says_which_layout_it_needs(tmp_path):
    torch.save(_in_authors_layout(_caffe_net("deeplabv2_resnet50").backbone), tmp_path / "init.pth")
    with pytest.raises(ConfigError, match="--backbone-layout caffe"):
        create("deeplabv2_resnet50", 19, pretrained=str(tmp_path / "init.pth"))


def _offline(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def no_network(url, dst, *args, **kwargs):
        raise URLError("no route to host")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)


def test_pretrained_deeplab_reads_the_file_from_the_torch_hub_cache(tmp_path, monkeypatch):
    _offline(monkeypatch, tmp_path)
    torch.manual_seed(0)
    state = _in_authors_layout(_caffe_net("deeplabv2_resnet50").backbone)
    torchvision_cache_dir().mkdir(parents=True)
    torch.save(state, torchvision_cache_dir() / DEEPLAB_FILE)
    model = _caffe_net("deeplabv2_resnet50", pretrained="deeplab")
    assert torch.equal(model.backbone.layer4[2].conv3.weight, state["Scale.layer4.2.conv3.weight"])


def test_pretrained_deeplab_offline_says_where_the_file_goes(tmp_path, monkeypatch):
    _offline(monkeypatch, tmp_path)
    with pytest.raises(DigaError) as info:
        _caffe_net("deeplabv2_resnet50", pretrained="deeplab")
    message = str(info.value)
    assert DEEPLAB_FILE in message and str(torchvision_cache_dir()) in message
    assert "--pretrained FILE" in message and "--pretrained none" in message


@pytest.mark.parametrize("settings,expected", [
    (dict(backbone_layout="caffe"), "cannot start from torchvision's ImageNet weights"),
    (dict(pretrained="deeplab"), "needs a DeepLab-V2 ResNet with backbone_layout caffe"),
    (dict(pretrained="deeplab", backbone_layout="caffe", model="deeplabv2_light"), "got model deeplabv2_light"),
    (dict(pretrained="deeplab", backbone_layout="caffe", model="deeplabv2_resnet50"),
     "ResNet-101 weights: it needs model deeplabv2_resnet101"),
    (dict(pretrained="imagenet", input_norm="caffe"), "expects the ImageNet input normalisation"),
    (dict(model="deeplabv2_resnet50", pretrained="imagenet", input_norm="caffe"), "give --input-norm imagenet"),
])
def test_weights_that_do_not_fit_the_layout_are_refused(settings, expected):
    with pytest.raises(ConfigError, match=expected):
        StageConfig(**settings).validate()


def test_the_paper_presets_take_the_authors_network_and_normalisation():
    for name in ("paper", "paper-dg"):
        cfg = preset(name).validate()
        assert (cfg.pretrained, cfg.backbone_layout, cfg.input_norm) == ("deeplab", "caffe", "caffe")
    assert preset("paper-semi").input_norm == "caffe"  # their loaders' (x - mean)/128, turned back to RGB
    assert preset("paper-semi").backbone_layout == "torchvision"  # HRNet: no DeepLab layout
    for name in ("cpu", "gpu"):
        assert (preset(name).backbone_layout, preset(name).input_norm) == ("torchvision", "imagenet")
    assert preset("gpu").pretrained == "imagenet"  # torchvision's weights stay possible in their layout


def test_the_caffe_normalisation_is_the_authors_on_rgb():
    mean, std = INPUT_NORMS["caffe"]
    x = torch.rand(2, 3, 4, 5)
    authors_bgr = (x.flip(1) * 255 - torch.tensor((104.00698793, 116.66876762, 122.67891434)).view(1, 3, 1, 1)) / 128
    assert torch.allclose(normalize(x, mean, std).flip(1), authors_bgr, atol=1e-5)


# --- the normalisation a checkpoint records ------------------------------------------------


@pytest.fixture(scope="module")
def caffe_run(tmp_path_factory, tiny_bench):
    """A checkpoint trained (two steps) with --input-norm caffe."""
    from diga.engine.supervised import SupervisedTrainer

    cfg = preset("cpu").replace(source=tiny_bench["source"], val=tiny_bench["val"], crop=(48, 96), batch_size=2,
                                workers=0, steps=2, eval_every=0, vis_every=0, ckpt_every=0, input_norm="caffe")
    return SupervisedTrainer(cfg, tmp_path_factory.mktemp("caffe") / "run").run().weights


def test_a_checkpoint_records_its_normalisation(caffe_run):
    import json

    from diga.checkpoint import read_metadata, sidecar_path

    mean, std = INPUT_NORMS["caffe"]
    for meta in (read_metadata(caffe_run), json.loads(sidecar_path(caffe_run).read_text())):
        assert meta["input_norm"] == "caffe"
        assert np.allclose(meta["mean"], mean) and np.allclose(meta["std"], std)


@pytest.fixture(scope="module")
def caffe_checkpoint(tmp_path_factory):
    """Random weights (varied predictions) recorded with the caffe normalisation."""
    from diga.checkpoint import model_metadata, save_weights

    torch.manual_seed(0)
    model = create("deeplabv2_light", 19)
    meta = model_metadata("deeplabv2_light", "cityscapes19", input_size=(64, 128), input_norm="caffe")
    return save_weights(tmp_path_factory.mktemp("ckpt") / "caffe.safetensors", model.state_dict(), meta)


def _hand_normalised_labels(weights, image: np.ndarray, norm: str = "caffe") -> np.ndarray:
    from diga.checkpoint import load_model

    model, _ = load_model(weights)
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float()
    if norm == "caffe":
        z = (x - torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1)) / 128  # the authors' values, in RGB order
    else:
        z = normalize(x / 255, *INPUT_NORMS["imagenet"])
    with torch.no_grad():
        logits = F.interpolate(model(z)[0], size=image.shape[:2], mode="bilinear", align_corners=False)
    return logits.argmax(1)[0].numpy()


def _agrees_with_caffe_only(weights, image: np.ndarray, got: np.ndarray) -> None:
    assert (got == _hand_normalised_labels(weights, image)).mean() > 0.999
    assert (got == _hand_normalised_labels(weights, image, "imagenet")).mean() < 0.9  # the check can tell


def test_the_predictor_applies_the_recorded_normalisation(caffe_checkpoint):
    from diga.export import Predictor

    image = np.random.default_rng(0).integers(0, 256, (64, 128, 3), dtype=np.uint8)
    got = Predictor.load(caffe_checkpoint, device="cpu").predict(image, mode="whole")[0].labels
    _agrees_with_caffe_only(caffe_checkpoint, image, got)


def test_an_onnx_export_keeps_the_recorded_normalisation(caffe_checkpoint, tmp_path):
    pytest.importorskip("onnxruntime")
    from diga.export import Predictor, export_model

    result = export_model(caffe_checkpoint, "onnx", out=tmp_path / "caffe.onnx", imgsz=(64, 128), n_check=2,
                          log=lambda _: None)
    mean, std = INPUT_NORMS["caffe"]
    preprocessing = result.meta["export"]["preprocessing"]
    assert np.allclose(preprocessing["mean"], mean) and np.allclose(preprocessing["std"], std)
    image = np.random.default_rng(0).integers(0, 256, (64, 128, 3), dtype=np.uint8)
    onnx = Predictor.load(result.path)
    assert onnx.backend == "onnx"
    _agrees_with_caffe_only(caffe_checkpoint, image, onnx.predict(image, mode="whole")[0].labels)


def test_evaluation_applies_the_recorded_normalisation(caffe_checkpoint, tiny_bench, monkeypatch):
    from diga.engine import evaluation

    fed, seen = [], []
    real_load = evaluation.load_model

    def recording_load(path, device):  # the network's own input, as evaluation hands it over
        model, meta = real_load(path, device)
        model.register_forward_pre_hook(lambda module, args: fed.append(args[0].clone()))
        return model, meta

    monkeypatch.setattr(evaluation, "load_model", recording_load)
    evaluation.evaluate_checkpoint(caffe_checkpoint, tiny_bench["val"], scales=(1.0,), device="cpu", workers=0,
                                   on_prediction=lambda images, pred, labels: seen.append(images))
    images = seen[0].float()
    assert fed[0].shape == images.shape
    authors = (images - torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1)) / 128  # in RGB order
    assert torch.allclose(fed[0], authors, atol=1e-4)


def test_pseudo_labels_and_centroids_apply_the_recorded_normalisation(caffe_checkpoint, tiny_bench, tmp_path,
                                                                      monkeypatch):
    """Their inputs, mapped back by the caffe normalisation, are whole 0-255 pixel values (with the
    ImageNet one they would not be)."""
    from diga.engine import pseudolabels

    fed = []
    real_load = pseudolabels.load_model

    def recording_load(path, device):
        model, meta = real_load(path, device)
        model.register_forward_pre_hook(lambda module, args: fed.append(args[0].clone()))
        return model, meta

    monkeypatch.setattr(pseudolabels, "load_model", recording_load)
    cfg = preset("cpu").replace(workers=0, device="cpu")  # one scale (1.0): the images are not resized
    manifest = pseudolabels.generate_pseudo_labels(caffe_checkpoint, tiny_bench["target"], tmp_path / "pseudo", cfg)
    n_pseudo = len(fed)
    pseudolabels.compute_centroids(caffe_checkpoint, manifest, tmp_path / "centroids.safetensors", cfg)
    assert 0 < n_pseudo < len(fed)
    for x in (fed[0], fed[n_pseudo]):
        pixels = x * 128 + torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1)
        assert torch.allclose(pixels, pixels.round(), atol=1e-3) and pixels.min() >= -1e-3 and pixels.max() <= 255.001
        assert pixels.std() > 1  # real images, not a constant


def test_training_forwards_apply_the_setting(tiny_bench, tmp_path):
    from diga.engine.supervised import SupervisedTrainer

    cfg = preset("cpu").replace(source=tiny_bench["source"], workers=0, steps=1, input_norm="caffe")
    trainer = SupervisedTrainer(cfg, tmp_path / "run")
    fed = []
    trainer.model.register_forward_pre_hook(lambda module, args: fed.append(args[0].clone()))
    x01 = torch.rand(1, 3, 32, 48)
    trainer.forward(x01, trainer.model)
    assert torch.allclose(fed[0], (x01 * 255 - torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1)) / 128, atol=1e-4)


def test_label_free_signals_apply_the_setting(tiny_cfg):
    from types import SimpleNamespace

    from diga.classes import get_label_space
    from diga.engine import labelfree

    fed = []

    class Recording(torch.nn.Module):  # two classes, left and right, whatever the input
        def forward(self, x):
            fed.append(x.clone())
            logits, feats = torch.zeros(x.shape[0], 19, 4, 4), torch.zeros(x.shape[0], 2, 4, 4)
            logits[:, 0, :, :2] = logits[:, 1, :, 2:] = feats[:, 0, :, :2] = feats[:, 1, :, 2:] = 1.0
            return logits, feats

    labelfree._stage_inputs.cache_clear()
    stage = SimpleNamespace(cfg=tiny_cfg.replace(input_norm="caffe"), space=get_label_space("cityscapes19"),
                            model=Recording(), teacher=None, device=torch.device("cpu"), amp=None,
                            norm=INPUT_NORMS["caffe"])  # as Trainer sets it from cfg.input_norm
    assert labelfree.stage_signals(stage)
    pixels = fed[0] * 128 + torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1)
    assert torch.allclose(pixels, pixels.round(), atol=1e-3) and pixels.std() > 1


def test_an_init_checkpoint_of_another_normalisation_is_refused(caffe_run, tiny_bench, tmp_path):
    from diga.engine.supervised import SupervisedTrainer

    cfg = preset("cpu").replace(source=tiny_bench["source"], workers=0, steps=1, init=str(caffe_run))
    with pytest.raises(ConfigError, match="trained with input_norm caffe.*give --input-norm caffe"):
        SupervisedTrainer(cfg, tmp_path / "run")
    assert SupervisedTrainer(cfg.replace(input_norm="caffe"), tmp_path / "ok").norm == INPUT_NORMS["caffe"]
