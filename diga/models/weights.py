"""Loading foreign backbone weights without unpickling arbitrary objects."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import ConfigError


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
    missing, unexpected = backbone.load_state_dict(state, strict=False)
    matched = len(backbone.state_dict()) - len(missing)
    if matched == 0:
        raise ConfigError(
            f"{path}: none of its {len(state)} tensors match the backbone "
            f"(e.g. file has {next(iter(state), '?')!r}, backbone expects "
            f"{next(iter(backbone.state_dict()))!r})"
        )
