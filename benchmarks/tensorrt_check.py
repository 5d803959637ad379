"""What NVIDIA's builder does with diga's exported graph: parse, build, run — each step recorded.

    python benchmarks/tensorrt_check.py --json trt_check.json          # resnet101 at 1024x2048
    python benchmarks/tensorrt_check.py --model deeplabv2_light --imgsz 128 256

Uses whichever TensorRT module is importable (``tensorrt``, else TensorRT for RTX) through the
same ``diga export --format tensorrt`` code a user runs: the ONNX export, ``OnnxParser``,
``build_serialized_network`` (fp32 and --half), then loading and running the engine with the
``Predictor`` and comparing its labels with the PyTorch model's. Every step is recorded as ok,
failed (with the message) or not reached, so the result states exactly what was exercised:
TensorRT for RTX, for instance, parses and builds on an H100 but its engines refuse to run on
compute capability 9.0. Weights are random (the builder does not care).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def record(steps: list[dict], name: str, fn):
    """Run one step; keep its outcome; return its value (None when it failed)."""
    t0 = time.perf_counter()
    try:
        value = fn()
    except Exception as e:  # noqa: BLE001 - the failure *is* the measurement
        steps.append({"step": name, "status": "failed", "seconds": round(time.perf_counter() - t0, 1),
                      "error": f"{type(e).__name__}: {e}"[:600]})
        return None
    steps.append({"step": name, "status": "ok", "seconds": round(time.perf_counter() - t0, 1)})
    return value


def main() -> None:
    from diga.checkpoint import model_metadata, save_weights
    from diga.export import Predictor, export_model
    from diga.export.tensorrt import _find_tensorrt
    from diga.models import create

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="deeplabv2_resnet101")
    p.add_argument("--imgsz", type=int, nargs=2, default=(1024, 2048))
    p.add_argument("--json", type=Path)
    args = p.parse_args()

    trt = _find_tensorrt()
    facts = {"tensorrt": None if trt is None else f"{trt.__name__} {getattr(trt, '__version__', '?')}",
             "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
             "compute_capability": ".".join(map(str, torch.cuda.get_device_capability(0)))
             if torch.cuda.is_available() else None,
             "model": args.model, "imgsz": list(args.imgsz), "steps": []}
    steps = facts["steps"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        torch.manual_seed(0)
        model = create(args.model, 19).eval()
        weights = save_weights(tmp / "model.safetensors", model.state_dict(),
                               model_metadata(args.model, "cityscapes19", input_size=tuple(args.imgsz)))
        image = np.random.default_rng(0).integers(0, 256, (*args.imgsz, 3), dtype=np.uint8)
        reference = Predictor.load(weights, backend="torch").predict([image])[0].labels
        for precision, half in (("fp32", False), ("fp16", True)):
            engine = tmp / f"model-{precision}.engine"
            built = record(steps, f"export ONNX + parse + build ({precision})", lambda e=engine, h=half: export_model(
                weights, "tensorrt", out=e, imgsz=args.imgsz, half=h, check=False))
            if built is None:
                continue
            steps[-1]["engine_mib"] = round(engine.stat().st_size / 2**20, 1)
            predictor = record(steps, f"load engine ({precision})", lambda e=engine: Predictor.load(e))
            if predictor is None:
                continue
            labels = record(steps, f"run engine ({precision})", lambda pr=predictor: pr.predict([image])[0].labels)
            if labels is not None:
                steps[-1]["label_agreement_vs_torch_fp32"] = round(float((labels == reference).mean()), 5)
    print(json.dumps(facts, indent=2))
    if args.json:
        args.json.write_text(json.dumps(facts, indent=2) + "\n")


if __name__ == "__main__":
    main()
