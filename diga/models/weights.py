"""Loading foreign backbone weights without unpickling arbitrary objects."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn
from torchvision.models import WeightsEnum

from ..errors import ConfigError, DigaError


def torchvision_cache_dir() -> Path:
    """Where torchvision keeps downloaded weights: ``$TORCH_HOME/hub/checkpoints`` (default ``~/.cache/torch``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def with_imagenet_weights(build: Callable[..., nn.Module], weights: WeightsEnum, **kwargs) -> nn.Module:
    """``build(weights=weights, **kwargs)``; a failed download is a DigaError that says how to work offline."""
    try:
        return build(weights=weights, **kwargs)
    except OSError as e:  # URLError, HTTPError, socket errors and unwritable caches are all OSErrors
        raise offline_weights_error("--pretrained", weights, e, "a backbone state dict", "train from scratch") from None


def offline_weights_error(option: str, weights: WeightsEnum, error: OSError, file_kind: str,
                          without: str) -> DigaError:
    """The one message for torchvision weights that could not be fetched: where to put the file by
    hand, or which ``option`` values work offline (FILE: ``file_kind``; none: ``without``)."""
    name = os.path.basename(urlparse(weights.url).path)
    return DigaError(
        f"{option} imagenet: could not get the torchvision weights {name} ({error}); without internet, copy "
        f"{name} (same name) into {torchvision_cache_dir()} (the torch hub cache, $TORCH_HOME/hub/checkpoints), "
        f"give {file_kind} with {option} FILE, or {without} with {option} none"
    )


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from .safetensors or a .pth/.pt (weights_only=True: nothing is unpickled but tensors)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained backbone file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
    if not isinstance(state, dict):
        raise ConfigError(f"{path}: expected a state dict of tensors, got {type(state).__name__}")
    return state


def load_backbone_weights(backbone: nn.Module, path: str | Path) -> None:
    """Load a backbone state dict from .safetensors or a .pth/.pt (weights_only=True)."""
    state = read_state_dict(path)
    # nn.Module's own: smp's MiT encoder overrides load_state_dict without a ``strict`` argument
    nn.Module.load_state_dict(backbone, state, strict=False)
    # counted by name: BatchNorm never reports a missing num_batches_tracked as missing
    matched = len(set(state) & set(backbone.state_dict()))
    if matched == 0:
        hint = (" (it looks like the DeepLab init file: that needs --backbone-layout caffe)"
                if any(k.startswith(DEEPLAB_PREFIX) for k in state) else "")
        raise ConfigError(
            f"{path}: none of its {len(state)} tensors match the backbone "
            f"(e.g. file has {next(iter(state), '?')!r}, backbone expects "
            f"{next(iter(backbone.state_dict()))!r}){hint}"
        )


# The DeepLab-V2 initialisation of ResNet-101 (ImageNet + MS-COCO, Caffe layout) that the authors'
# code starts from, as the AdaptSegNet authors host it; the hash prefix in its name is checked on download.
DEEPLAB_INIT_URL = "http://vllab.ucmerced.edu/ytsai/CVPR18/DeepLab_resnet_pretrained_init-f81d91e8.pth"
DEEPLAB_INIT_SHA256 = "f81d91e8"  # prefix, as torch hub names its files
DEEPLAB_PREFIX = "Scale."  # every key of that file: "Scale.layer1.0.conv1.weight", ...
DEEPLAB_CLASSIFIER = "layer5."  # its own classifier, never loaded


def deeplab_init_file() -> Path:
    """The DeepLab init file from the torch hub cache, downloaded there once; offline, an error that
    says where to put it by hand."""
    name = os.path.basename(urlparse(DEEPLAB_INIT_URL).path)
    cached = torchvision_cache_dir() / name
    if cached.is_file():
        return cached
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(DEEPLAB_INIT_URL, str(cached), hash_prefix=DEEPLAB_INIT_SHA256)
    except (OSError, RuntimeError) as e:  # URL and socket errors, unwritable cache, hash mismatch
        raise DigaError(
            f"--pretrained deeplab: could not get the DeepLab init weights {name} from {DEEPLAB_INIT_URL} ({e}); "
            f"without internet, copy {name} (same name; the AdaptSegNet authors' release) into {cached.parent} "
            "(the torch hub cache, $TORCH_HOME/hub/checkpoints), give it with --pretrained FILE, or train from "
            "scratch with --pretrained none"
        ) from None
    return cached


def load_deeplab_init(backbone: nn.Module, path: str | Path) -> None:
    """Load the DeepLab init file (or a state dict with its key layout) into a Caffe-layout ResNet.

    The file's keys are torchvision's parameter names behind the ``Scale.`` prefix, plus its own
    classifier (``Scale.layer5``), which is skipped. Every key must carry the prefix and every backbone
    tensor must be there with its shape: otherwise an error names the file and the first missing and
    unexpected keys (as the file names them). The file's first conv reads BGR input; it is loaded with
    its input channels reversed, so that the backbone reads RGB (input_norm caffe: the same
    ``(255 x - mean) / 128`` in RGB order) and computes the same function."""
    file_state = read_state_dict(path)
    state = {k.removeprefix(DEEPLAB_PREFIX): v for k, v in file_state.items()
             if k.startswith(DEEPLAB_PREFIX) and not k.startswith(DEEPLAB_PREFIX + DEEPLAB_CLASSIFIER)}
    expected = {k: v for k, v in backbone.state_dict().items() if not k.endswith("num_batches_tracked")}
    missing = [DEEPLAB_PREFIX + k for k in expected if k not in state]
    unexpected = [k for k in file_state if not k.startswith(DEEPLAB_PREFIX)] + [
        DEEPLAB_PREFIX + k for k in state if k not in expected and not k.endswith("num_batches_tracked")]
    wrong = [f"{k}: file {tuple(state[k].shape)} vs backbone {tuple(v.shape)}"
             for k, v in expected.items() if k in state and state[k].shape != v.shape]
    if missing or unexpected or wrong:
        parts = [f"{len(missing)} missing (e.g. {', '.join(missing[:3])})"] if missing else []
        parts += [f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})"] if unexpected else []
        parts += [f"shape mismatches: {'; '.join(wrong[:3])}"] if wrong else []
        raise ConfigError(
            f"{path}: not the DeepLab init layout of this backbone ({DEEPLAB_PREFIX}-prefixed ResNet keys, "
            f"{DEEPLAB_CLASSIFIER.rstrip('.')} skipped): " + ", ".join(parts)
        )
    state = {k: state[k] for k in expected}
    state["conv1.weight"] = state["conv1.weight"].flip(1)  # BGR -> RGB input channels
    backbone.load_state_dict(state, strict=False)  # strict but for num_batches_tracked, checked above
