"""A timm-style model registry: ``create(name, num_classes, pretrained=...)``."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from ..errors import ConfigError

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    def wrap(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _MODELS[name] = factory
        return factory

    return wrap


def list_models() -> list[str]:
    return sorted(_MODELS)


def supported_settings(name: str, settings: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``settings`` that model ``name``'s factory names as keywords: a setting such as
    ``head_norm`` applies to the networks that have that head and is left out for the others."""
    if name not in _MODELS:
        return {}
    params = inspect.signature(_MODELS[name]).parameters
    return {k: v for k, v in settings.items() if k in params}


def create(
    name: str, num_classes: int = 19, pretrained: str | Path | None = None, **kwargs
) -> nn.Module:
    """Build a registered segmenter; ``pretrained`` is None, "imagenet" or a backbone file."""
    if name not in _MODELS:
        raise ConfigError(f"unknown model {name!r}; choose one of: {', '.join(list_models())}")
    if num_classes < 1:
        raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
    return _MODELS[name](num_classes=num_classes, pretrained=pretrained, **kwargs)
