"""SegFormer (MiT, segmentation-models-pytorch) and HRNet + OCR (timm): the segmenter contract,
backbone files, the offline ImageNet error, a training step and the ONNX export."""

from __future__ import annotations

import sys
from urllib.error import URLError

import pytest
import torch
import torch.nn.functional as F

from diga.errors import ConfigError, DigaError
from diga.models import create, list_models

NETS = ("segformer_b0", "hrnet_w18_small_ocr")  # the small member of each family
FEATURE_DIM = {"segformer_b0": 256, "hrnet_w18_small_ocr": 256}


def needs_library(name: str):
    return pytest.importorskip("segmentation_models_pytorch" if name.startswith("segformer") else "timm")


def test_registry_lists_the_library_models():
    names = {f"segformer_b{i}" for i in range(6)} | {"hrnet_w48_ocr", "hrnet_w18_small_ocr"}
    assert names <= set(list_models())  # listed even where the nets extra is not installed


@pytest.mark.parametrize("name,module", [("segformer_b0", "segmentation_models_pytorch"),
                                         ("hrnet_w18_small_ocr", "timm")])
def test_a_missing_library_says_how_to_install_it(monkeypatch, name, module):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    with pytest.raises(ImportError) as info:
        create(name, 19)
    assert isinstance(info.value, DigaError)
    assert "pip install 'diga[nets]'" in str(info.value) and name in str(info.value)


@pytest.mark.parametrize("name", NETS)
def test_forward_returns_stride_4_logits_and_the_classifier_feature(name):
    needs_library(name)
    torch.manual_seed(0)
    model = create(name, num_classes=16).eval()
    assert model.output_stride == 4 and model.feature_dim == FEATURE_DIM[name]
    with torch.no_grad():
        logits, features = model(torch.randn(2, 3, 64, 96))
    assert logits.shape == (2, 16, 16, 24)
    assert features.shape == (2, model.feature_dim, 16, 24)
    # the feature the centroids live in is the one the classifier reads
    assert torch.allclose(logits, model.head.classifier(features), atol=1e-5)
    backbone, head = model.parameter_groups()
    assert len({id(p) for p in backbone + head}) == len(list(model.parameters()))  # each once


@pytest.mark.parametrize("name", NETS)
def test_any_input_size_works(name):
    """HRNet pads to a multiple of 32 and crops back; SegFormer's patch embeddings take any size."""
    needs_library(name)
    model = create(name, num_classes=5).eval()
    with torch.no_grad():
        logits, features = model(torch.randn(1, 3, 70, 130))
    assert logits.shape[-2:] == features.shape[-2:]
    assert all(abs(s - side / 4) < 1 for s, side in zip(logits.shape[-2:], (70, 130)))


@pytest.mark.slow  # MiT-B5's initialisation alone takes ~20 s on 2 shared CPU cores
@pytest.mark.parametrize("name,dim", [("segformer_b5", 768), ("hrnet_w48_ocr", 512)])
def test_the_large_variants_build(name, dim):
    needs_library(name)
    model = create(name, num_classes=19)
    assert model.feature_dim == dim
    millions = sum(p.numel() for p in model.backbone.parameters()) / 1e6
    assert millions > 60  # MiT-B5 ~82 M, HRNet-W48 ~65 M: not a small variant by mistake


def library_backbone(name: str) -> torch.nn.Module:
    """The backbone as its library builds it for classification: the layout of the ImageNet files."""
    if name.startswith("segformer"):
        import segmentation_models_pytorch as smp

        return smp.encoders.get_encoder("mit_b0")
    import timm

    return timm.create_model("hrnet_w18_small_v2")  # with the classifier: its keys are ignored


@pytest.mark.parametrize("name", NETS)
@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_pretrained_file_loads_into_the_backbone(tmp_path, name, suffix):
    needs_library(name)
    torch.manual_seed(1)
    state = {k: v.contiguous() for k, v in library_backbone(name).state_dict().items()}
    path = tmp_path / f"backbone{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save({"state_dict": state}, path)
    torch.manual_seed(2)
    model = create(name, 19, pretrained=path)
    loaded = model.backbone.branches if name.startswith("hrnet") else model.backbone
    assert loaded.state_dict()
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, state[key]), key


@pytest.mark.parametrize("name", NETS + ("deeplabv2_light",))
def test_a_file_for_another_network_is_refused(tmp_path, name):
    """Also for BatchNorm networks, whose num_batches_tracked never counts as missing."""
    if name != "deeplabv2_light":
        needs_library(name)
    torch.save({"fc.weight": torch.zeros(3, 3)}, tmp_path / "other.pth")
    with pytest.raises(ConfigError, match="none of its 1 tensors match"):
        create(name, 19, pretrained=tmp_path / "other.pth")


@pytest.mark.parametrize("name", NETS)
def test_offline_imagenet_names_the_cache_and_the_options(tmp_path, monkeypatch, name):
    needs_library(name)
    from huggingface_hub import constants

    from diga.models.hub import hub_cache_dir

    # no Hub and no fallback URL: nothing is downloaded, whatever the machine can reach
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def no_network(url, dst, *args, **kwargs):
        raise URLError("offline")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(DigaError) as info:
        create(name, 19, pretrained="imagenet")
    message = str(info.value)
    assert hub_cache_dir() == tmp_path / "hf" and str(hub_cache_dir()) in message
    assert "--pretrained FILE" in message and "--pretrained none" in message and name in message
    assert "/" in message.split("repository ")[1].split()[0]  # the Hub repository to fetch


@pytest.mark.parametrize("name", NETS)
def test_a_training_step_reaches_every_parameter_and_lowers_the_loss(name):
    needs_library(name)
    torch.manual_seed(0)
    model = create(name, num_classes=4).train()
    model.freeze_backbone_bn_affine()
    backbone, head = model.parameter_groups()
    frozen = [p for p in model.parameters() if not p.requires_grad]
    assert all(id(p) not in {id(q) for q in backbone + head} for p in frozen)
    # Small plain steps on one fixed batch, dropout off. The loss is not monotone even so (train-mode
    # BatchNorm on a batch of 2, at 2x2 in HRNet's lowest branch), so the check is that the steps
    # get below the starting loss, which a wrong or missing gradient would not.
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout | torch.nn.Dropout2d):
            module.eval()
    optimizer = torch.optim.SGD([{"params": backbone, "lr": 0.005}, {"params": head, "lr": 0.005}])
    x = torch.randn(2, 3, 64, 64)
    labels = torch.randint(0, 4, (2, 64, 64))
    losses = []
    for step in range(4):
        logits, _ = model(x)
        loss = F.cross_entropy(F.interpolate(logits, size=labels.shape[-2:], mode="bilinear"), labels)
        optimizer.zero_grad()
        loss.backward()
        if step == 0:
            silent = [n for n, p in model.named_parameters() if p.requires_grad
                      and (p.grad is None or not p.grad.abs().sum() > 0)]
            assert not silent, f"no gradient reaches {silent[:5]}"
        optimizer.step()
        losses.append(loss.item())
    assert min(losses[1:]) < losses[0], losses


@pytest.mark.slow  # 15-25 s each on 2 shared CPU cores
@pytest.mark.parametrize("name", NETS)
def test_onnx_export_passes_the_parity_check(tmp_path, name):
    needs_library(name)
    pytest.importorskip("onnxruntime")
    from diga.checkpoint import model_metadata, save_weights
    from diga.export import export_model

    torch.manual_seed(0)
    model = create(name, 19)
    meta = model_metadata(name, "cityscapes19", input_size=(64, 128))
    ckpt = save_weights(tmp_path / f"{name}.safetensors", model.state_dict(), meta)
    result = export_model(ckpt, "onnx", imgsz=(64, 128), n_check=2, log=lambda _: None)
    assert result.parity.passed and result.parity.agreement >= 99.9
    assert result.meta["export"]["output_stride"] == 4
