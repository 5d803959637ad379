"""The two exceptions of the deployment layer. Both are ValueErrors, so the CLI prints them as one line."""

from __future__ import annotations

from diga.errors import DigaError


class ExportError(DigaError, ValueError):
    """An export could not be made, or its parity check against PyTorch failed."""


class PredictorError(DigaError, ValueError):
    """A model file cannot be loaded for inference, or an input cannot be predicted."""
