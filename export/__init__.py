"""Deployment: export a diga checkpoint (ONNX, TensorRT, AOTInductor .pt2) and predict with any of them.

    from diga.export import export_model, Predictor
    export_model("best.safetensors", "onnx", dynamic=True)        # + parity check vs PyTorch
    pred = Predictor.load("best.onnx")                            # or .safetensors/.engine/.pt2
    results = pred.predict(["a.png", "b.jpg"])                     # list[Prediction]
    results[0].labels, results[0].color, results[0].overlay(0.5)
"""

from .errors import ExportError, PredictorError
from .exporter import FORMATS, ExportResult, export_model
from .metadata import read_export_metadata
from .parity import ParityReport
from .predictor import Prediction, Predictor

__all__ = ["ExportError", "PredictorError", "ExportResult", "FORMATS", "ParityReport", "Prediction", "Predictor",
           "export_model", "read_export_metadata"]
