"""Time the DiGA training steps and the evaluation, fp32 eager vs the fast configuration.

Runs the library's own WarmupTrainer / SelfTrainer steps (augmentation, translation, mixing,
selection, centroid update, losses, backward, SGD and EMA included) with random tensors already
on the device instead of file loading, as the reference numbers of the authors' code were taken.
The paper preset translates with the authors' learned translator (randomly initialised here: its
cost does not depend on its weights); ``--translator fda`` times the training-free one instead.

    python benchmarks/train_step.py                      # paper setting on a CUDA GPU
    python benchmarks/train_step.py --device cpu --model deeplabv2_light --crop 64 128 --eval-size 128 256 --batch 2

Prints a markdown table (median of --iters after --warmup steps, peak memory).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from itertools import repeat
from pathlib import Path

import torch

from diga.data.transforms import normalize
from diga.engine.benchmark import synthetic_benchmark
from diga.engine.config import preset
from diga.engine.pseudolabels import combine
from diga.engine.selftrain import SelfTrainer
from diga.engine.warmup import WarmupTrainer
from diga.evaluate import fused_logits
from diga.export.bench import time_fn


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, warmup: int, iters: int) -> tuple[float, float]:
    """(median ms, peak GiB) of fn() after warm-up calls."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = time_fn(fn, lambda: sync(device), warmup, iters)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    return statistics.median(times), peak


def random_batches(device, batch, crop, num_classes, combined=False):
    g = torch.Generator(device="cpu").manual_seed(0)
    images = torch.randint(0, 256, (batch, 3, *crop), generator=g, dtype=torch.uint8).to(device)
    labels = torch.randint(0, num_classes, (batch, *crop), generator=g).to(device)
    if combined:
        labels = combine(labels, labels)
    return repeat((images, labels))


def trainers(cfg, bench, tmp: Path):
    """A warm-up and a self-training trainer whose data iterators yield device-resident tensors."""
    from safetensors.torch import save_file

    from diga.checkpoint import model_metadata, save_weights
    from diga.models import create

    if cfg.translator == "learned" and not cfg.translator_weights:
        from diga.models.translator import ImageTranslator, save_translator, translator_metadata

        net = ImageTranslator()
        cfg = cfg.replace(translator_weights=str(save_translator(tmp / "translator.safetensors", net,
                                                                 translator_metadata(net))))
    warm = WarmupTrainer(cfg, tmp / "warmup")
    init = tmp / "init.safetensors"
    # The self-training start: the warm-up's network (layout, head) and input normalisation, as a
    # checkpoint of the warm-up would record them.
    model = create(cfg.model, 19, pretrained=None, **warm.model_kwargs())
    save_weights(init, model.state_dict(), model_metadata(cfg.model, "cityscapes19", input_norm=cfg.input_norm,
                                                          model_kwargs=warm.model_kwargs()))
    cents = tmp / "centroids.safetensors"
    save_file({"centroids": torch.randn(19, model.feature_dim), "valid": torch.ones(19, dtype=torch.bool)}, str(cents))
    manifest = tmp / "pseudo" / "manifest.json"
    from diga.engine.pseudolabels import generate_pseudo_labels

    generate_pseudo_labels(init, cfg.target, manifest.parent, cfg.replace(eval_scales=(1.0,)))
    st = SelfTrainer(cfg.replace(init=str(init), pseudo_labels=str(manifest), centroids=str(cents),
                                 distil_weight=0.25, blend_beta=0.3), tmp / "selftrain")
    micro = cfg.batch_size // cfg.accumulate
    for t in (warm, st):
        t.source = random_batches(t.device, micro, cfg.crop, 19)
        t.target = random_batches(t.device, micro, cfg.crop, 19)
    st.pseudo_batches = random_batches(st.device, micro, cfg.crop, 19, combined=True)
    return warm, st


def run(args, fast: bool, compile: bool = False) -> dict:
    cfg = preset("paper").replace(
        model=args.model, pretrained=None, crop=tuple(args.crop), batch_size=args.batch, device=args.device,
        accumulate=args.accumulate, translator=args.translator,
        amp="auto" if fast else "fp32", channels_last=fast, compile=fast and compile, workers=0,
        base_size=None, source_base_sizes=None, target_base_sizes=None, selftrain_source_base_sizes=None,
        selftrain_target_base_sizes=None,
        log_every=10**9, eval_every=0, ckpt_every=0, vis_every=0, steps=10**6,
    )
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = fast
        torch.backends.cuda.matmul.allow_tf32 = True  # the authors' reference ran with TF32 convs
        torch.backends.cudnn.allow_tf32 = True
    bench = synthetic_benchmark(n_train=4, n_val=2, size=tuple(max(c, s) for c, s in zip(args.crop, (64, 128))),
                                seed=0, root=Path(args.data))
    cfg = cfg.replace(source=bench["source"], target=bench["target"])
    out = {"config": "fast (autocast, channels_last, cudnn.benchmark, fused SGD)" if fast else "fp32 eager"}
    if args.accumulate > 1:
        out["config"] += f", {args.accumulate} micro-batches"
    if fast and compile:
        out["config"] += " + torch.compile"
    with tempfile.TemporaryDirectory() as tmp:
        warm, st = trainers(cfg, bench, Path(tmp))
        for name, trainer in (("warmup", warm), ("selftrain", st)):
            step = iter(range(10**9))

            def one():
                trainer.optimization_step(next(step))

            out[f"{name}_ms"], out[f"{name}_peak_gib"] = timed(one, device, args.warmup, args.iters)
        model = warm.teacher.module if warm.teacher else warm.model
        x = torch.rand(1, 3, *args.eval_size, device=device)
        if fast:
            x = x.contiguous(memory_format=torch.channels_last)

        @torch.inference_mode()
        def evaluate():
            with torch.autocast(device.type, dtype=warm.amp or torch.float32, enabled=warm.amp is not None):
                fused_logits(model, normalize(x, *warm.norm), (1.0, 0.5)).argmax(1)

        out["eval_ms"], out["eval_peak_gib"] = timed(evaluate, device, args.warmup, args.iters)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="deeplabv2_resnet101")
    p.add_argument("--crop", type=int, nargs=2, default=(512, 896))
    p.add_argument("--batch", type=int, default=3)
    p.add_argument("--translator", default="learned", help="learned (the paper preset's) or fda, color, none")
    p.add_argument("--accumulate", type=int, default=1, help="micro-batches per step (gradient accumulation)")
    p.add_argument("--eval-size", type=int, nargs=2, default=(1024, 2048))
    p.add_argument("--device", default="auto")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--compile", action="store_true", help="add a row: the fast configuration under torch.compile")
    p.add_argument("--data", default=str(Path(tempfile.gettempdir()) / "diga-bench-data"))
    p.add_argument("--json", type=Path, help="write the results here")
    args = p.parse_args()
    rows = [run(args, fast=False), run(args, fast=True)]
    if args.compile:
        rows.append(run(args, fast=True, compile=True))
    dev = torch.cuda.get_device_name() if torch.cuda.is_available() and args.device != "cpu" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"\n{args.model}, crop {args.crop[0]}x{args.crop[1]}, batch {args.batch}+{args.batch}, eval {args.eval_size[0]}x{args.eval_size[1]} full+half, {dev}\n")
    print("| configuration | warm-up step | self-training step | evaluation / image | peak memory (warm-up / self-training / eval) |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['config']} | {r['warmup_ms']:.1f} ms | {r['selftrain_ms']:.1f} ms | {r['eval_ms']:.1f} ms | "
              f"{r['warmup_peak_gib']:.1f} / {r['selftrain_peak_gib']:.1f} / {r['eval_peak_gib']:.1f} GiB |")
    if args.json:
        args.json.write_text(json.dumps({"device": dev, "args": vars(args) | {"json": str(args.json)}, "rows": rows}, indent=2, default=str))


if __name__ == "__main__":
    main()
