"""INT8 on the CPU: ONNX Runtime INT8 (QDQ) vs ONNX Runtime fp32 vs PyTorch eager fp32.

    python benchmarks/int8.py CKPT --data cityscapes:DIR --calib DIR [--json out.json]

1. Settings (``--sweep``): the fp32 graph is quantised with each variant of
   :class:`diga.export.quantize.QuantSettings` (calibration method, per-channel weights, what
   stays fp32, activation type, int32 biases, pre-processing) and scored on ``--data``:
   target-val mIoU and the % of pixels whose label equals the fp32 model's, through the
   Predictor pipeline; speed at batch 1 against fp32 ONNX Runtime.
2. The table: ``diga export --int8`` with the default settings vs fp32 ONNX Runtime vs PyTorch
   eager, batch 1 and 4 (fixed-shape exports), images/s of the model call on prepared images
   and mIoU over ``--max-images`` images.

The machine may be shared: every timing alternates between the candidates in chunks of 5 calls
(``interleaved`` of benchmarks/inference.py), so load from other processes hits them alike.
Calibrate on target *train* frames and score on target *val*: never calibrate on the images
you score.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import torch
from inference import interleaved

from diga.checkpoint import read_metadata
from diga.evaluate import ConfusionMatrix
from diga.export import Predictor, export_model
from diga.export.backends import OnnxBackend, TorchBackend
from diga.export.bench import labelled_dataset
from diga.export.graph import prepare
from diga.export.onnx_export import finalize, session
from diga.export.quantize import CalibrationImages, QuantSettings, quantize_onnx, settings_for

DEFAULT = QuantSettings()
SWEEP = {
    "default (percentile 99.999, per-channel weights, uint8 activations, classifier + Resize fp32)": DEFAULT,
    "minmax calibration": replace(DEFAULT, method="minmax"),
    "entropy calibration": replace(DEFAULT, method="entropy"),
    "per-tensor weights": replace(DEFAULT, per_channel=False),
    "everything quantised (classifier + Resize too)": replace(DEFAULT, keep_fp32_ops=(), keep_fp32_layers=()),
    "classifier quantised, Resize fp32": replace(DEFAULT, keep_fp32_layers=()),
    "int8 symmetric activations": replace(DEFAULT, symmetric_activations=True),
    "the TensorRT graph (int8 symmetric, fp32 biases)": settings_for("tensorrt"),
    "no quant_pre_process": replace(DEFAULT, preprocess=False),
    "Conv only": replace(DEFAULT, op_types=("Conv",)),
}


def quiet(_m: str) -> None:
    pass


def score(predictor: Predictor, dataset, n: int, chunk: int = 8) -> tuple[float, list[np.ndarray]]:
    """mIoU over the first ``n`` images of ``dataset`` and the predicted label maps."""
    cm = ConfusionMatrix(predictor.num_classes)
    labels = []
    for start in range(0, n, chunk):
        pairs = [dataset[i] for i in range(start, min(start + chunk, n))]
        images = [image.permute(1, 2, 0).contiguous().numpy() for image, _ in pairs]
        for pred, (_, label) in zip(predictor.predict(images), pairs):
            cm.update(torch.from_numpy(pred.labels.astype(np.int64)), label)
            labels.append(pred.labels)
    return cm.compute().miou, labels


def agreement(a: list[np.ndarray], b: list[np.ndarray]) -> tuple[float, float]:
    """% of pixels with the same label: over all images, and in the image that agrees least."""
    per_image = [100.0 * float(np.mean(x == y)) for x, y in zip(a, b)]
    return float(np.mean(per_image)), min(per_image)


def ort_call(path: Path, x: torch.Tensor, level: str | None = None):
    """A timed call of an ONNX model on the prepared batch ``x``; ``level``: another ORT graph
    optimisation level than the default (all)."""
    sess = session(str(path), ["CPUExecutionProvider"], optimization=level)
    feed = {"images": x.numpy()}
    return lambda: sess.run(None, feed)


def speed(fns: dict, batch: int, warmup: int, iters: int) -> dict[str, dict]:
    times = interleaved(fns, warmup, iters)
    out = {}
    for name, t in times.items():
        lat = np.asarray(t)
        out[name] = {"p50_ms": round(float(np.percentile(lat, 50)), 2),
                     "p90_ms": round(float(np.percentile(lat, 90)), 2),
                     "images_per_s": round(batch * 1e3 / float(np.percentile(lat, 50)), 1)}
    return out


def sweep(args, meta, dataset, size, images, work: Path) -> list[dict]:
    fp32 = export_model(args.checkpoint, "onnx", out=work / "fp32_b1.onnx", imgsz=size, batch=1, check=False,
                        log=quiet).path
    fp32_miou, fp32_labels = score(Predictor.load(fp32), dataset, args.max_images)
    proto = onnx.load(str(fp32))
    reader = CalibrationImages(args.calib, size, meta["mean"], meta["std"], batch_size=1, limit=args.calib_images)
    x = prepare(images[:1], size, meta["mean"], meta["std"])
    rows = [{"variant": "fp32 ONNX Runtime", "miou": round(fp32_miou, 2), "agreement": 100.0}]
    for name, settings in SWEEP.items():
        if args.only and not any(o in name for o in args.only):
            continue
        qproto, facts = quantize_onnx(copy.deepcopy(proto), reader, settings, warn=print)
        path = work / f"variant{len(rows)}.int8.onnx"
        qmeta = copy.deepcopy(json.loads({p.key: p.value for p in proto.metadata_props}["diga"]))
        qmeta["export"].update(precision="int8", int8=True, quantization=facts)
        finalize(qproto, qmeta)
        onnx.save_model(qproto, str(path))
        miou, labels = score(Predictor.load(path), dataset, args.max_images)
        t = speed({"fp32": ort_call(fp32, x), "int8": ort_call(path, x)}, 1, args.warmup, args.sweep_iters)
        mean_agreement, worst_image = agreement(labels, fp32_labels)
        rows.append({"variant": name, "miou": round(miou, 2), "agreement": round(mean_agreement, 2),
                     "agreement_worst_image": round(worst_image, 2),
                     "speedup_b1": round(t["int8"]["images_per_s"] / t["fp32"]["images_per_s"], 2),
                     "int8_images_per_s": t["int8"]["images_per_s"], "fp32_images_per_s": t["fp32"]["images_per_s"],
                     "calibration_s": facts["seconds"], "fp32_nodes": facts["fp32_nodes"]})
        print(json.dumps(rows[-1]), flush=True)
        if settings == DEFAULT:  # the session's graph optimisation level, on the default INT8 graph
            t = speed({level: ort_call(path, x, level) for level in
                       ("ORT_ENABLE_BASIC", "ORT_ENABLE_EXTENDED", "ORT_ENABLE_ALL")}, 1, args.warmup,
                      args.sweep_iters)
            rows.append({"variant": "default, ORT graph optimisation levels (images/s, batch 1)",
                         **{k: v["images_per_s"] for k, v in t.items()}})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def table(args, meta, dataset, size, images, work: Path) -> list[dict]:
    rows = []
    for batch in args.batches:
        fp32 = export_model(args.checkpoint, "onnx", out=work / f"fp32_b{batch}.onnx", imgsz=size, batch=batch,
                            check=False, log=quiet)
        int8 = export_model(args.checkpoint, "onnx", out=work / f"int8_b{batch}.int8.onnx", imgsz=size,
                            batch=batch, int8=True, calib=args.calib, calib_images=args.calib_images, log=quiet,
                            warn=print)
        torch_backend = TorchBackend.load(args.checkpoint, torch.device("cpu"))
        x = prepare((images * batch)[:batch], size, meta["mean"], meta["std"])
        with torch.inference_mode():
            t = speed({"torch": lambda: torch_backend.run(x), "onnx": ort_call(fp32.path, x),
                       "int8": ort_call(int8.path, x)}, batch, args.warmup, args.iters)
        mious = {"torch": score(Predictor(torch_backend, batch), dataset, args.max_images)[0],
                 "onnx": score(Predictor(OnnxBackend(fp32.path, torch.device("cpu")), batch), dataset,
                               args.max_images)[0],
                 "int8": score(Predictor(OnnxBackend(int8.path, torch.device("cpu")), batch), dataset,
                               args.max_images)[0]}
        names = {"torch": "PyTorch eager fp32", "onnx": "ONNX Runtime fp32", "int8": "ONNX Runtime INT8 (QDQ)"}
        for key, name in names.items():
            rows.append({"backend": name, "batch": batch, **t[key], "miou": round(mious[key], 2),
                         "file_mb": round((int8.path if key == "int8" else fp32.path).stat().st_size / 2**20, 1),
                         "speedup_vs_onnx": round(t[key]["images_per_s"] / t["onnx"]["images_per_s"], 2),
                         "parity": int8.parity.agreement if key == "int8" else None})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def markdown(sweep_rows: list[dict], table_rows: list[dict]) -> str:
    lines = []
    if table_rows:
        lines += ["| backend | batch | p50 | p90 | images/s | vs ONNX fp32 | target-val mIoU | file |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in table_rows:
            lines.append(f"| {r['backend']} | {r['batch']} | {r['p50_ms']} ms | {r['p90_ms']} ms | {r['images_per_s']} "
                         f"| {r['speedup_vs_onnx']}x | {r['miou']} | {r['file_mb']} MB |")
    if sweep_rows:
        lines += ["", "| INT8 variant | target-val mIoU | label agreement with fp32 (worst image) "
                      "| speed-up vs fp32, batch 1 |", "|---|---|---|---|"]
        for r in sweep_rows:
            if "miou" not in r:
                levels = ", ".join(f"{k.removeprefix('ORT_ENABLE_').lower()} {v}" for k, v in r.items()
                                   if k != "variant")
                lines.append(f"| {r['variant']}: {levels} | | | |")
                continue
            worst = f" ({r['agreement_worst_image']} %)" if "agreement_worst_image" in r else ""
            lines.append(f"| {r['variant']} | {r['miou']} | {r['agreement']} %{worst} | "
                         f"{r.get('speedup_b1', '—')}{'x' if 'speedup_b1' in r else ''} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--data", required=True, help="labelled target-val images, KIND:PATH")
    ap.add_argument("--calib", required=True, type=Path, help="target-domain calibration frames (not --data's)")
    ap.add_argument("--calib-images", type=int, default=100)
    ap.add_argument("--max-images", type=int, default=100)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--iters", type=int, default=60)
    ap.add_argument("--sweep-iters", type=int, default=30)
    ap.add_argument("--sweep", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--table", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--only", nargs="*", help="sweep only the variants whose name contains one of these")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    meta = read_metadata(args.checkpoint)
    size = tuple(int(v) for v in meta.get("input_size") or (128, 256))
    dataset = labelled_dataset(args.data, meta.get("label_space", "cityscapes19"))
    args.max_images = min(args.max_images, len(dataset))
    images = [dataset[i][0].permute(1, 2, 0).contiguous().numpy() for i in range(4)]
    with tempfile.TemporaryDirectory(prefix="diga-int8-bench-") as d:
        sweep_rows = sweep(args, meta, dataset, size, images, Path(d)) if args.sweep else []
        table_rows = table(args, meta, dataset, size, images, Path(d)) if args.table else []
    print(f"\ntorch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads, {args.checkpoint}, {size[0]}x{size[1]}\n")
    print(markdown(sweep_rows, table_rows))
    if args.json:
        args.json.write_text(json.dumps({"sweep": sweep_rows, "table": table_rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
