"""Segmentation models. Every model returns ``(logits, features)`` at its output stride."""

from . import deeplabv2  # noqa: F401  (registers the DeepLab-V2 family)
from .registry import create, list_models, register

__all__ = ["create", "list_models", "register"]
