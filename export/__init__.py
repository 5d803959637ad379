"""Deployment: export a diga checkpoint (ONNX, TensorRT, AOTInductor .pt2) and predict with any of them.

    from diga.export import export_model, Predictor
    export_model("best.safetensors", "onnx", dynamic=True)        # + parity check vs PyTorch
    pred = Predictor.load("best.onnx")                            # or .safetensors/.engine/.pt2
    results = pred.predict(["a.png", "b.jpg"])                     # list[Prediction]
    results[0].labels, results[0].color, results[0].overlay(0.5)

The formats themselves are one table, :data:`diga.export.formats.MODEL_FORMATS`.
"""

from __future__ import annotations

import importlib
from typing import Any

# Names are imported on first use, so that ``diga.export.formats`` (the CLI's choices) does not
# pull in torch.
_PUBLIC = {
    "ExportError": "errors", "PredictorError": "errors", "ExportResult": "exporter", "export_model": "exporter",
    "FORMATS": "exporter", "read_export_metadata": "metadata", "ParityReport": "parity",
    "Prediction": "predictor", "Predictor": "predictor",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'diga.export' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_PUBLIC[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
