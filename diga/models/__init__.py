"""Segmentation models. Every model returns ``(logits, features)`` at its output stride."""

from . import deeplabv2, hrnet, segformer  # noqa: F401  (register DeepLab-V2, HRNet + OCR, SegFormer)
from .registry import create, list_models, register

__all__ = ["create", "list_models", "register"]
