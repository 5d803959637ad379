"""The translator network, its VGG-19 feature extractor and its weights files (all offline)."""

from __future__ import annotations

from urllib.error import URLError

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from diga.errors import ConfigError, DigaError
from diga.models.translator import (
    ImageTranslator,
    MultiScaleDiscriminator,
    VGGFeatures,
    build_vgg_features,
    from_translator_space,
    load_translator,
    save_translator,
    to_translator_space,
    translator_metadata,
)
from diga.models.weights import torchvision_cache_dir


def test_architecture_is_the_authors_instance_norm_encoder_decoder():
    net = ImageTranslator()
    convs = [m for m in net.encoder.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size[0], c.stride[0]) for c in convs[:3]] == [
        (3, 64, 7, 1), (64, 128, 4, 2), (128, 256, 4, 2)]
    assert len(convs) == 3 + 4 * 2  # stem, two downsamplings, four residual blocks
    norms = [m for m in net.modules() if isinstance(m, nn.InstanceNorm2d)]
    assert norms and not any(m.affine or m.track_running_stats for m in norms)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    last = [m for m in net.decoder.modules() if isinstance(m, nn.Conv2d)][-1]
    assert (last.in_channels, last.out_channels, last.kernel_size[0]) == (64, 3, 7)
    assert isinstance(net.decoder[-1][-1], nn.Tanh)


def test_translate_keeps_any_size_and_the_value_range():
    torch.manual_seed(0)
    net = ImageTranslator().eval()
    x = torch.rand(2, 3, 30, 42)  # not multiples of 4
    with torch.no_grad():
        y = net.translate(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert 0 <= float(y.min()) and float(y.max()) <= 1


def test_pixel_space_round_trip():
    x = torch.rand(1, 3, 4, 4)
    assert torch.allclose(from_translator_space(to_translator_space(x)), x, atol=1e-6)
    # a grey of the mean pixel is 0 in translator space
    grey = torch.tensor([122.67891434, 116.66876762, 104.00698793]).view(1, 3, 1, 1) / 255
    assert to_translator_space(grey).abs().max() < 1e-5


def test_discriminator_has_three_scales():
    outputs = MultiScaleDiscriminator()(torch.rand(1, 3, 64, 96))
    assert [tuple(o.shape[-2:]) for o in outputs] == [(4, 6), (2, 3), (1, 1)]


def _vgg_file(tmp_path, prefix="features."):
    torch.manual_seed(3)
    state = {f"{prefix}{k}": v for k, v in VGGFeatures().features.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(2, 2)  # other parts of a full vgg19 state dict are ignored
    path = tmp_path / "vgg19.safetensors"
    save_file(state, str(path))
    return path, state


def test_vgg_from_a_file_and_none(tmp_path):
    path, state = _vgg_file(tmp_path)
    net = build_vgg_features(str(path))
    assert torch.equal(net.features[28].weight, state["features.28.weight"])
    assert not any(p.requires_grad for p in net.parameters())
    feats = net(torch.rand(1, 3, 32, 32))
    assert [f.shape[1] for f in feats] == [64, 128, 256, 512, 512]
    assert build_vgg_features("none").features[0].weight.shape == (64, 3, 3, 3)


@pytest.mark.parametrize("problem", ["missing", "truncated", "shape", "garbage"])
def test_a_bad_vgg_file_names_the_option(tmp_path, problem):
    path, state = _vgg_file(tmp_path)
    if problem == "missing":
        path = tmp_path / "nowhere.pth"
    elif problem == "truncated":
        save_file({k: v for k, v in state.items() if not k.startswith("features.28")}, str(path))
    elif problem == "shape":
        save_file({**state, "features.0.weight": torch.zeros(8, 3, 3, 3)}, str(path))
    else:
        path.write_bytes(b"not a state dict")
    with pytest.raises(ConfigError, match="--vgg") as info:
        build_vgg_features(str(path))
    assert str(path) in str(info.value)


def test_imagenet_vgg_offline_names_the_cache_and_the_options(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def no_network(url, dst, *args, **kwargs):
        raise URLError("no route to host")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(DigaError) as info:
        build_vgg_features("imagenet")
    message = str(info.value)
    assert str(torchvision_cache_dir()) in message and "vgg19-dcbb9e9d.pth" in message
    assert "--vgg FILE" in message and "--vgg none" in message


def test_translator_file_round_trip(tmp_path):
    torch.manual_seed(1)
    net = ImageTranslator(dim=8, n_res=2)
    path = save_translator(tmp_path / "t.safetensors", net, translator_metadata(net, step=3))
    loaded, meta = load_translator(path)
    assert meta["step"] == 3 and meta["format"] == "diga-translator"
    assert loaded.settings == {"dim": 8, "n_res": 2}  # the file's own architecture
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded.translate(x), net.eval().translate(x))


@pytest.mark.parametrize("problem", ["missing", "foreign", "damaged", "garbage", "architecture"])
def test_a_bad_translator_file_is_refused_clearly(tmp_path, problem):
    path = tmp_path / "t.safetensors"
    net = ImageTranslator(dim=8, n_res=1)
    if problem == "missing":
        path = tmp_path / "none.safetensors"
    elif problem == "foreign":
        save_file({"w": torch.zeros(2)}, str(path))
    elif problem == "damaged":
        save_translator(path, net, translator_metadata(net))
        from safetensors.torch import load_file, safe_open

        with safe_open(str(path), framework="pt") as f:
            header = f.metadata()
        state = load_file(str(path))
        state["encoder.0.1.weight"][0, 0, 0, 0] = float("nan")
        save_file(state, str(path), metadata=header)
    elif problem == "architecture":
        save_translator(path, net, {**translator_metadata(net), "architecture": {"dim": 10**6, "n_res": 1}})
    else:
        path.write_bytes(b"\x00" * 64)
    with pytest.raises(ConfigError, match="--translator-weights") as info:
        load_translator(path)
    assert str(path) in str(info.value)
