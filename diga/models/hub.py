"""The ``nets`` extra: model libraries imported on first use, ImageNet weights from the Hugging Face Hub.

timm and segmentation-models-pytorch fetch their ImageNet weights from the Hugging Face Hub.
Without internet both fail in their own words; :func:`with_hub_weights` turns that into one
message that names the cache, the repository and the offline options.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from torch import nn

from ..errors import DigaError

INSTALL_HINT = "pip install 'diga[nets]'"


class MissingExtraError(DigaError, ImportError):
    """A registered model whose library is not installed."""


def import_library(module: str, package: str, model: str) -> ModuleType:
    """``import module`` for ``model``; a missing library is an error that says how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingExtraError(
            f"model {model} needs {package} ({e.name or module} is not installed): {INSTALL_HINT}"
        ) from None


def hub_cache_dir() -> Path:
    """Where huggingface_hub keeps downloads: ``$HF_HUB_CACHE`` (default ``~/.cache/huggingface/hub``)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def with_hub_weights(build: Callable[[], nn.Module], model: str, repo_id: str) -> nn.Module:
    """``build()``, which downloads ``repo_id``; a failed download is a DigaError that says how to work offline."""
    try:
        return build()
    except OSError as e:  # huggingface_hub's errors (offline, not cached, HTTP) and URLError are all OSErrors
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DigaError(
            f"--pretrained imagenet: could not get the ImageNet weights of {model} from the Hugging Face Hub "
            f"repository {repo_id} ({reason}); without internet, fill the Hugging Face cache {hub_cache_dir()} "
            f"($HF_HUB_CACHE; copy it from a machine where `hf download {repo_id}` ran), give the backbone "
            f"weights (that repository's model.safetensors) with --pretrained FILE, or train from scratch with "
            "--pretrained none"
        ) from None
