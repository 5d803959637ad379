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


def load_backbone_weights(backbone: nn.Module, path: str | Path) -> None:
    """Load a backbone state dict from .safetensors or a .pth/.pt (weights_only=True)."""
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
    # nn.Module's own: smp's MiT encoder overrides load_state_dict without a ``strict`` argument
    nn.Module.load_state_dict(backbone, state, strict=False)
    # counted by name: BatchNorm never reports a missing num_batches_tracked as missing
    matched = len(set(state) & set(backbone.state_dict()))
    if matched == 0:
        raise ConfigError(
            f"{path}: none of its {len(state)} tensors match the backbone "
            f"(e.g. file has {next(iter(state), '?')!r}, backbone expects "
            f"{next(iter(backbone.state_dict()))!r})"
        )
