"""Inference benchmark: PyTorch vs ONNX Runtime (CPU) and the GPU deployment paths.

    python benchmarks/inference.py                 # CPU part; GPU part too when CUDA is present
    python benchmarks/inference.py --json out.json

CPU: ``deeplabv2_light`` at 128x256 (the CPU preset's image size), batch 1 and 4: PyTorch eager
fp32 vs ONNX Runtime (CPUExecutionProvider), same thread count.
GPU: ``deeplabv2_resnet101`` at 1024x2048, batch 1: eager fp32, eager bf16 / fp16 autocast,
``torch.compile`` (bf16), an AOTInductor ``.pt2`` (bf16), ONNX Runtime (CUDA EP, fp32) when
onnxruntime-gpu is installed.

Every row shows the arithmetic floor: the model's FLOPs (``FlopCounterMode``, 2 per
multiply-add) divided by a matmul rate measured on the same device in the row's precision.
Weights are random: timing does not depend on them. Time = one forward incl. the in-graph
bilinear upsampling of the logits to the input size (what the exported graphs compute).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from diga.export.bench import time_fn
from diga.export.graph import DeployModule
from diga.models import create


def flops_of(module: torch.nn.Module, x: torch.Tensor) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(x)
    return int(counter.get_total_flops())


def matmul_rate(device: torch.device, dtype: torch.dtype, tf32: bool = False) -> float:
    """Measured dense matmul FLOP/s on ``device`` in ``dtype``."""
    # CPUs have no fast fp16/bf16 matmul: a small one keeps a CPU rehearsal of the GPU part short.
    n = 4096 if device.type == "cuda" else (2048 if dtype == torch.float32 else 256)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    saved = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    try:
        times = time_fn(lambda: a @ b, sync, 3, 10 if device.type == "cuda" else 5)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved
    return 2 * n**3 / (min(times) / 1e3)


def row(device, model, size, batch, backend, times, flops, rate, note=""):
    lat = np.asarray(times)
    floor = flops / rate * 1e3 if rate else None
    return {"device": device, "model": model, "input": f"{size[0]}x{size[1]}", "batch": batch, "backend": backend,
            "p50_ms": round(float(np.percentile(lat, 50)), 2), "p90_ms": round(float(np.percentile(lat, 90)), 2),
            "images_per_s": round(batch * 1e3 / float(np.percentile(lat, 50)), 1),
            "gflop": round(flops / 1e9, 2), "floor_ms": None if floor is None else round(floor, 3),
            "rate_tflops": None if not rate else round(rate / 1e12, 2), "note": note}


def onnx_session(module, x, dynamic_batch: bool, providers):
    from diga.export.onnx_export import session, to_onnx

    proto, used = to_onnx(module.cpu().eval(), x.cpu(), output="logits", dynamic=dynamic_batch, warn=lambda m: None)
    return session(proto.SerializeToString(), providers), used


def interleaved(fns: dict, warmup: int, iters: int, chunk: int = 5) -> dict[str, list[float]]:
    """Time several functions in alternating chunks, so that load from other processes on a
    shared machine affects all of them alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    out: dict[str, list[float]] = {k: [] for k in fns}
    while any(len(v) < iters for v in out.values()):
        for k, fn in fns.items():
            n = min(chunk, iters - len(out[k]))
            out[k] += time_fn(fn, lambda: None, 0, n) if n > 0 else []
    return out


def cpu_part(warmup: int, iters: int) -> list[dict]:
    size, rows = (128, 256), []
    torch.manual_seed(0)
    module = DeployModule(create("deeplabv2_light", 19)).eval()
    device = torch.device("cpu")
    x4 = torch.randn(4, 3, *size)
    sess, used = onnx_session(module, x4, True, ["CPUExecutionProvider"])
    threads = torch.get_num_threads()
    rate = matmul_rate(device, torch.float32)
    for batch in (1, 4):
        x = torch.randn(batch, 3, *size)
        xn = x.numpy()
        flops = flops_of(module, x)
        with torch.inference_mode():
            times = interleaved({"torch": lambda: module(x), "ort": lambda: sess.run(None, {"images": xn})},
                                warmup, iters)
        rate = max(rate, matmul_rate(device, torch.float32))
        rows.append(row("cpu", "deeplabv2_light", size, batch, f"PyTorch eager fp32 ({threads} threads)",
                        times["torch"], flops, None))
        rows.append(row("cpu", "deeplabv2_light", size, batch, f"ONNX Runtime CPU fp32 ({threads} threads)",
                        times["ort"], flops, None, note=used.split(" torch")[0]))
    for r in rows:  # the best matmul rate seen (the least disturbed by other processes)
        r["floor_ms"], r["rate_tflops"] = round(r["gflop"] * 1e9 / rate * 1e3, 2), round(rate / 1e12, 3)
    return rows


def gpu_part(warmup: int, iters: int, pt2: bool, compile: bool = True, device: str = "cuda",
             model_name: str = "deeplabv2_resnet101", size: tuple[int, int] = (1024, 2048)) -> list[dict]:
    """The GPU deployment paths; ``device``/``model_name``/``size`` let a CPU rehearse them."""
    batch, rows = 1, []
    dev = torch.device(device)
    on_cuda = dev.type == "cuda"
    name = torch.cuda.get_device_name(dev) if on_cuda else f"{dev.type} (rehearsal)"
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    module = DeployModule(create(model_name, 19)).to(dev).eval()
    x = torch.randn(batch, 3, *size, device=dev)
    flops = flops_of(module, x)
    rates = {"fp32": matmul_rate(dev, torch.float32, tf32=True), "bf16": matmul_rate(dev, torch.bfloat16),
             "fp16": matmul_rate(dev, torch.float16)}
    sync = (lambda: torch.cuda.synchronize(dev)) if on_cuda else (lambda: None)

    def add(backend, fn, prec, note=""):
        try:
            t = time_fn(fn, sync, warmup, iters)
            rows.append(row(name, model_name, size, batch, backend, t, flops, rates[prec], note))
        except Exception as e:  # keep the other rows
            rows.append({"device": name, "model": model_name, "input": f"{size[0]}x{size[1]}",
                         "batch": batch, "backend": backend, "note": f"failed: {type(e).__name__}: {e}"[:200]})

    def autocast(dt):
        return torch.autocast(dev.type, dtype=dt)

    with torch.inference_mode():
        add("eager fp32 (TF32 convs)", lambda: module(x), "fp32")
        for prec, dt in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
            def run(dt=dt):
                with autocast(dt):
                    return module(x)
            add(f"eager {prec} autocast", run, prec)
        cl = module.to(memory_format=torch.channels_last)
        xc = x.contiguous(memory_format=torch.channels_last)

        def run_cl():
            with autocast(torch.bfloat16):
                return cl(xc)
        add("eager bf16 autocast, channels_last", run_cl, "bf16")
        if compile:
            compiled = torch.compile(cl)
            t = time.perf_counter()

            def run_compiled():
                with autocast(torch.bfloat16):
                    return compiled(xc)
            try:
                run_compiled()
                add("torch.compile bf16, channels_last", run_compiled, "bf16",
                    note=f"compile {time.perf_counter() - t:.0f} s")
            except Exception as e:
                rows.append({"device": name, "backend": "torch.compile bf16, channels_last",
                             "note": f"failed: {type(e).__name__}: {e}"[:200]})
    if pt2:
        try:
            bf = DeployModule(create(model_name, 19).to(dev, torch.bfloat16).eval(),
                              compute_dtype=torch.bfloat16).eval()
            t = time.perf_counter()
            with torch.no_grad():
                ep = torch.export.export(bf, (x,))
            with tempfile.TemporaryDirectory() as d:
                path = torch._inductor.aoti_compile_and_package(ep, package_path=str(Path(d) / "m.pt2"))
                runner = torch._inductor.aoti_load_package(path)
            note = f"compile {time.perf_counter() - t:.0f} s"
            with torch.inference_mode():
                add("AOTInductor .pt2 bf16", lambda: runner(x), "bf16", note)
        except Exception as e:
            rows.append({"device": name, "backend": "AOTInductor .pt2 bf16", "note": f"failed: {e}"[:200]})
    try:
        import onnxruntime as ort

        if on_cuda and "CUDAExecutionProvider" in ort.get_available_providers():
            sess, used = onnx_session(DeployModule(create(model_name, 19)).eval(), x.cpu(), False,
                                      ["CUDAExecutionProvider"])
            io = sess.io_binding()
            io.bind_input("images", "cuda", dev.index or 0, np.float32, list(x.shape), x.data_ptr())
            io.bind_output("logits", "cuda")
            add("ONNX Runtime CUDA EP fp32 (IO binding)", lambda: sess.run_with_iobinding(io), "fp32",
                used.split(" torch")[0])
        else:
            rows.append({"device": name, "backend": "ONNX Runtime CUDA EP",
                         "note": "skipped: onnxruntime without CUDAExecutionProvider (pip install onnxruntime-gpu)"})
    except ImportError:
        rows.append({"device": name, "backend": "ONNX Runtime CUDA EP", "note": "skipped: onnxruntime not installed"})
    return rows


def markdown(rows: list[dict]) -> str:
    head = "| device | model | input | batch | backend | p50 ms | p90 ms | img/s | GFLOP | floor ms (rate) | note |"
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        floor = "—" if r.get("floor_ms") is None else f"{r['floor_ms']} ({r['rate_tflops']} TFLOP/s)"
        lines.append("| " + " | ".join(str(v) for v in (
            r.get("device", ""), r.get("model", ""), r.get("input", ""), r.get("batch", ""), r["backend"],
            r.get("p50_ms", "—"), r.get("p90_ms", "—"), r.get("images_per_s", "—"), r.get("gflop", "—"), floor,
            r.get("note", ""))) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--iters", type=int, default=60)
    ap.add_argument("--cpu", action=argparse.BooleanOptionalAction, default=True, help="run the CPU part")
    ap.add_argument("--gpu", action=argparse.BooleanOptionalAction, default=True, help="run the GPU part if CUDA")
    ap.add_argument("--pt2", action=argparse.BooleanOptionalAction, default=True, help="include the .pt2 GPU row")
    ap.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                    help="include the torch.compile GPU row")
    ap.add_argument("--gpu-device", default="cuda", help="device of the GPU part (cpu rehearses it with --gpu)")
    ap.add_argument("--gpu-model", default="deeplabv2_resnet101")
    ap.add_argument("--gpu-imgsz", type=int, nargs=2, default=(1024, 2048))
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    rows = []
    if args.cpu:
        rows += cpu_part(args.warmup, args.iters)
    if args.gpu and (torch.cuda.is_available() or not args.gpu_device.startswith("cuda")):
        rows += gpu_part(args.warmup, args.iters, args.pt2, args.compile, args.gpu_device, args.gpu_model,
                         tuple(args.gpu_imgsz))
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} CPU threads\n")
    print(markdown(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
