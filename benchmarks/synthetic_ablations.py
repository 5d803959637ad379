"""The synthetic-benchmark ablations of docs/BENCHMARKS.md, CPU preset, same seed and steps.

Run `diga adapt` first (it trains the source-only/oracle references and the full pipeline into
runs/adapt/synthetic); this script then trains, on the same benchmark and settings, one of two row
sets (``--rows``):

method (default)
  warm-up rows: distillation only, mixture only, full warm-up with the colour translator, full
  warm-up with the paper's EMA cap (0.999); self-training round 1 from the same warm-up and
  pseudo-labels with --selection threshold / none
switches
  each setting where the authors' code and the cpu preset differ (diga.engine.config.EARLIER_CHOICES)
  set to the authors' choice, one at a time: in the warm-up (the settings the warm-up uses), in
  self-training round 1 from the run's own warm-up, pseudo-labels and centroids (the settings only
  self-training or its sparse pseudo-labels exercise; centroids computed again where the row
  changes how), or in round 2 from the run's round-1 model and pseudo-labels; each row beside the
  same stage with the preset's choice, trained here the same way

and prints every row as markdown. ``--run`` may be given once per seed (a `diga adapt --seed S` run
each); every row is trained for each, every seed of a row before the next row. Jobs run ``--jobs``
at a time with one thread each (two small processes use 2 cores better than one process with two
threads).

    diga adapt && python benchmarks/synthetic_ablations.py
    python benchmarks/synthetic_ablations.py --rows switches --run runs/adapt/synthetic --run runs/adapt/seed1
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
from diga.engine.pipeline import kept_centroids, run_stage, selftrain_config, selected_miou, warmup_config
from diga.engine.pseudolabels import compute_centroids
from diga.engine.warmup import WarmupTrainer
from diga.engine.selftrain import SelfTrainer
kind, cfg_path, out, extra = sys.argv[1], sys.argv[2], Path(sys.argv[3]), json.loads(sys.argv[4])
cfg = StageConfig.load(cfg_path)
t0 = time.time()
if kind == "warmup":
    res = run_stage(WarmupTrainer, warmup_config(cfg).replace(**extra), out)
else:
    run, r = Path(extra.pop("run")), extra.pop("round", 1)
    # the round's starting model as `diga adapt` handed it on (summaries name it relative to where it ran)
    stage = run / ("warmup" if r == 1 else f"round{r - 1}/selftrain")
    init = stage / "weights" / Path(json.loads((stage / "summary.json").read_text())["weights"]).name
    manifest = run / f"round{r}/pseudo/manifest.json"
    row = cfg.replace(**extra)
    centroids = kept_centroids(row, r, run) or run / f"round{r}/centroids.safetensors"
    if row.centroid_labels != cfg.centroid_labels or row.centroid_mean != cfg.centroid_mean:
        out.mkdir(parents=True, exist_ok=True)  # this row's own centroids, from the round's starting model
        centroids = compute_centroids(init, manifest, out / "centroids.safetensors", row)
    st = selftrain_config(cfg, init, manifest, centroids)
    res = run_stage(SelfTrainer, st.replace(**extra), out)
print(json.dumps({"miou": selected_miou(res.metrics), "seconds": round(time.time() - t0, 1)}))
"""


METHOD_ROWS = {
    "warm-up, distillation only (no mixture)": ("warmup", {"mix": False}),
    "warm-up, mixture only (no distillation)": ("warmup", {"distil": False}),
    "warm-up, full, colour translator": ("warmup", {"translator": "color"}),
    "warm-up, full, EMA cap 0.999 (the paper's, for 80k-step runs)": ("warmup", {"ema_max": 0.999}),
    "self-training round 1, threshold 0.9": ("selftrain", {"selection": "threshold"}),
    "self-training round 1, no selection": ("selftrain", {"selection": "none"}),
}
# The authors' choice of each setting the cpu preset changes, in the stage that exercises it, the
# most recently added first (a stopped sweep has the rows nobody measured yet). The geometry
# settings (base_resize, crop_fill, pseudo_size) do nothing on the built-in benchmark: its images are
# 2:1 like its crops, it has no base size, and its smallest scale still covers the crop. The target
# BatchNorm pass (warmup_target_bn) is the cpu preset's own choice since it measured better here.
SWITCH_ROWS = {
    "warm-up, logits upsampled with align_corners=True before the CE (logits_align_corners true)":
        ("warmup", {"logits_align_corners": True}),
    "self-training round 1, labelled crops not rescaled (selftrain_source_scale 1-1)":
        ("selftrain", {"selftrain_source_scale": (1.0, 1.0)}),
    "warm-up, kornia 0.5.8's photometric ops (augment_ops kornia)": ("warmup", {"augment_ops": "kornia"}),
    "self-training round 1, kornia 0.5.8's photometric ops (augment_ops kornia)":
        ("selftrain", {"augment_ops": "kornia"}),
    "warm-up, teacher in train mode (teacher_mode train)": ("warmup", {"teacher_mode": "train"}),
    "warm-up, the authors' blend value range (blend_space authors)": ("warmup", {"blend_space": "authors"}),
    "self-training round 1, separate student forwards (student_forward separate)":
        ("selftrain", {"student_forward": "separate"}),
    "self-training round 1, target cross-mix pastes the source's ignore pixels (target_mix_ignore paste)":
        ("selftrain", {"target_mix_ignore": "paste"}),
    "self-training round 1, prototype labels upsampled bilinearly (select_upsample bilinear)":
        ("selftrain", {"select_upsample": "bilinear"}),
    "self-training round 1, centroids over the model's own argmax (centroid_labels argmax)":
        ("selftrain", {"centroid_labels": "argmax"}),
    "self-training round 2, the warm-up's centroids kept (centroids_per_round keep)":
        ("selftrain", {"round": 2, "centroids_per_round": "keep"}),
    "warm-up, target crops not rescaled (warmup_target_scale 1-1)": ("warmup", {"warmup_target_scale": (1.0, 1.0)}),
    "warm-up, per-axis random scale 0.7-1 (scale_mode axis)": ("warmup", {"scale_mode": "axis", "scale": (0.7, 1.0)}),
    "warm-up, the authors' class count in the mixture (mix_count authors)": ("warmup", {"mix_count": "authors"}),
    "warm-up, source crops redrawn up to 5 times (crop_retry 5)": ("warmup", {"crop_retry": 5}),
    "warm-up, GroupNorm head (head_norm gn)": ("warmup", {"head_norm": "gn"}),
    "warm-up, distillation at the crop resolution": ("warmup", {"distil_resolution": "crop"}),
    "warm-up, backbone BatchNorm affine frozen": ("warmup", {"backbone_bn_affine": "frozen"}),
    "self-training round 1, centroid update per image": ("selftrain", {"centroid_update": "image"}),
    "self-training round 1, CE over all pixels (loss_norm all)": ("selftrain", {"loss_norm": "all"}),
    "warm-up, cpu preset's choices": ("warmup", {}),
    "self-training round 1, cpu preset's choices": ("selftrain", {}),
    "self-training round 2, cpu preset's choices": ("selftrain", {"round": 2}),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, action="append",
                   help="a finished diga adapt run, once per seed (default runs/adapt/synthetic)")
    p.add_argument("--rows", choices=("method", "switches"), default="method")
    p.add_argument("--jobs", type=int, default=2, help="jobs at a time, one thread each")
    p.add_argument("--skip", nargs="*", default=[], help="leave out the rows whose name contains one of these")
    p.add_argument("--only", nargs="*", default=[], help="run only the rows whose name contains one of these")
    p.add_argument("--out", type=Path, default=Path("runs/ablations"))
    args = p.parse_args()
    runs = [r.resolve() for r in (args.run or [Path("runs/adapt/synthetic")])]
    for run in runs:
        if not (run / "results.json").exists():
            sys.exit(f"{run} has no finished `diga adapt` run; run `diga adapt` first")
    rows = METHOD_ROWS if args.rows == "method" else SWITCH_ROWS
    rows = {name: row for name, row in rows.items() if not any(part in name for part in args.skip)
            and (not args.only or any(part in name for part in args.only))}
    # Every seed of a row before the next row, so that a stopped sweep has whole rows (a row is
    # compared over seeds).
    jobs = {(name, run): (kind, {**extra, "run": str(run)} if kind == "selftrain" else extra)
            for name, (kind, extra) in rows.items() for run in runs}
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    pending, running, results = list(jobs.items()), [], {}
    while pending or running:
        while pending and len(running) < args.jobs:
            (name, run), (kind, extra) = pending.pop(0)
            out = args.out / run.name / name.split(",")[0].replace(" ", "_") / (
                "_".join(f"{k}-{v}" for k, v in extra.items() if k != "run") or "preset")
            cfg_path = run / "config.yaml"
            out.mkdir(parents=True, exist_ok=True)
            with open(out / "stderr.log", "w") as err:  # the job's traceback, if it fails
                proc = subprocess.Popen([sys.executable, "-c", JOB, kind, str(cfg_path), str(out), json.dumps(extra)],
                                        env=env, stdout=subprocess.PIPE, stderr=err, text=True)
            running.append(((name, run), proc))
        time.sleep(2)
        for key, proc in list(running):
            if proc.poll() is not None:
                running.remove((key, proc))
                lines = proc.stdout.read().strip().splitlines()
                results[key] = json.loads(lines[-1]) if proc.returncode == 0 and lines else {"miou": None, "error": proc.returncode}
                print(f"{key[0]} [{key[1].name}]: {results[key]}", flush=True)
    print("\n| row | " + " | ".join(run.name for run in runs) + " |\n|---|" + "---|" * len(runs))
    for run in runs:
        base = json.loads((run / "results.json").read_text())
        print(f"| {run.name}: " + "; ".join(f"{row['stage']} {row['target_val_miou']}" for row in base["rows"]) + " |")
    for name in rows:
        print(f"| {name} | " + " | ".join(str(results.get((name, run), {}).get("miou")) for run in runs) + " |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"results-{args.rows}.json").write_text(json.dumps(
        [{"row": name, "run": str(run), **r} for (name, run), r in results.items()], indent=2))


if __name__ == "__main__":
    main()
