"""--pretrained imagenet without internet: a failed download names the cache and the options."""

from __future__ import annotations

from urllib.error import URLError

import pytest
import torch

from diga.errors import DigaError
from diga.models import create
from diga.models.weights import torchvision_cache_dir


@pytest.mark.parametrize("error", [URLError("no route to host"), OSError(101, "Network is unreachable")])
def test_a_failed_imagenet_download_says_where_the_weights_go(error, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def no_network(url, dst, *args, **kwargs):
        raise error

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(DigaError) as info:
        create("deeplabv2_resnet50", 19, pretrained="imagenet")
    message = str(info.value)
    assert torchvision_cache_dir() == tmp_path / "torch" / "hub" / "checkpoints"
    assert str(torchvision_cache_dir()) in message
    assert "resnet50-0676ba61.pth" in message  # the exact file name to copy there
    assert "--pretrained FILE" in message and "--pretrained none" in message


def test_weights_in_the_cache_are_used_without_a_download(tmp_path, monkeypatch):
    from torchvision.models import ResNet50_Weights, resnet50

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cache = torchvision_cache_dir()
    cache.mkdir(parents=True)
    reference = resnet50().state_dict()
    torch.save(reference, cache / "resnet50-0676ba61.pth")
    assert ResNet50_Weights.IMAGENET1K_V1.url.endswith("/resnet50-0676ba61.pth")

    def no_network(url, dst, *args, **kwargs):
        raise URLError("offline")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    model = create("deeplabv2_resnet50", 19, pretrained="imagenet")
    assert torch.equal(model.backbone.conv1.weight, reference["conv1.weight"])
