"""The synthetic-benchmark ablations of docs/BENCHMARKS.md, CPU preset, same seed and steps.

Run `diga adapt` first (it trains the source-only/oracle references and the full pipeline into
runs/adapt/synthetic); this script then trains, on the same benchmark and settings:
  warm-up rows: distillation only, mixture only, full warm-up with the colour translator, full
  warm-up with the paper's EMA cap (0.999)
  self-training round 1 from the same warm-up and pseudo-labels with --selection threshold / none
and prints every row as markdown. Jobs run two at a time with one thread each (two small
processes use 2 cores better than one process with two threads).

    diga adapt && python benchmarks/synthetic_ablations.py
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

JOB = r"""
import json, sys, time, torch
torch.set_num_threads(1)
from pathlib import Path
from diga.engine.config import StageConfig
from diga.engine.pipeline import run_stage, selftrain_config, selected_miou, warmup_config
from diga.engine.warmup import WarmupTrainer
from diga.engine.selftrain import SelfTrainer
kind, cfg_path, out, extra = sys.argv[1], sys.argv[2], Path(sys.argv[3]), json.loads(sys.argv[4])
cfg = StageConfig.load(cfg_path)
t0 = time.time()
if kind == "warmup":
    res = run_stage(WarmupTrainer, warmup_config(cfg).replace(**extra), out)
else:
    run = Path(extra.pop("run"))
    init = Path(json.loads((run / "warmup/summary.json").read_text())["weights"])
    st = selftrain_config(cfg, init, run / "round1/pseudo/manifest.json", run / "round1/centroids.safetensors")
    res = run_stage(SelfTrainer, st.replace(**extra), out)
print(json.dumps({"miou": selected_miou(res.metrics), "seconds": round(time.time() - t0, 1)}))
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, default=Path("runs/adapt/synthetic"), help="the diga adapt run")
    p.add_argument("--out", type=Path, default=Path("runs/ablations"))
    args = p.parse_args()
    run = args.run.resolve()
    cfg_path = run / "config.yaml"
    if not (run / "results.json").exists():
        sys.exit(f"{run} has no finished `diga adapt` run; run `diga adapt` first")
    jobs = {
        "warm-up, distillation only (no mixture)": ("warmup", {"mix": False}),
        "warm-up, mixture only (no distillation)": ("warmup", {"distil": False}),
        "warm-up, full, colour translator": ("warmup", {"translator": "color"}),
        "warm-up, full, EMA cap 0.999 (the paper's, for 80k-step runs)": ("warmup", {"ema_max": 0.999}),
        "self-training round 1, threshold 0.9": ("selftrain", {"run": str(run), "selection": "threshold"}),
        "self-training round 1, no selection": ("selftrain", {"run": str(run), "selection": "none"}),
    }
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    pending, running, results = list(jobs.items()), [], {}
    while pending or running:
        while pending and len(running) < 2:
            name, (kind, extra) = pending.pop(0)
            out = args.out / name.split(",")[0].replace(" ", "_") / "_".join(f"{k}-{v}" for k, v in extra.items() if k != "run")
            proc = subprocess.Popen([sys.executable, "-c", JOB, kind, str(cfg_path), str(out), json.dumps(extra)],
                                    env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            running.append((name, proc))
        time.sleep(2)
        for name, proc in list(running):
            if proc.poll() is not None:
                running.remove((name, proc))
                lines = proc.stdout.read().strip().splitlines()
                results[name] = json.loads(lines[-1]) if proc.returncode == 0 and lines else {"miou": None, "error": proc.returncode}
                print(f"{name}: {results[name]}", flush=True)
    base = json.loads((run / "results.json").read_text())
    print("\n| row | target-val mIoU |\n|---|---|")
    for row in base["rows"]:
        print(f"| {row['stage']} | {row['target_val_miou']} |")
    for name, r in results.items():
        print(f"| {name} | {r['miou']} |")
    (args.out / "results.json").parent.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps({"base": base, "ablations": results}, indent=2))


if __name__ == "__main__":
    main()
