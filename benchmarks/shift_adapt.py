"""`diga adapt` on shifted target domains and several seeds: the evidence for "it adapts to shifts
nobody tuned for".

For each target condition (``none`` = the built-in benchmark's plain target) and each seed it runs
the whole pipeline exactly as a user would, with the CPU preset and nothing tuned:

    diga adapt --source gta5:R/source --target cityscapes:R/target --val cityscapes:R/target \
               --preset cpu --references --seed S

on a benchmark drawn with the built-in benchmark's parameters (400 + 100 images a domain at
128x256, data seed 0, target style at gap 0.5) plus the condition at strength 1. The references
(source-only and the oracle on target labels) are trained per seed, with as many steps as the
whole pipeline (``--reference-steps``, default ``same``, as ``diga adapt``). It prints, as the
markdown tables of docs/BENCHMARKS.md, every run's rows and gap closed, then mean ± std over the
seeds of each condition. Runs already finished are read, not repeated (``diga adapt`` skips finished stages),
so the script can be re-run to add seeds or conditions. A variant of the defaults goes into its own
project directory:

    python benchmarks/shift_adapt.py --project runs/shift_adapt_tbn --adapt-arg=--warmup-target-bn

    python benchmarks/shift_adapt.py --conditions texture rain night --seeds 0 1 2 --jobs 2

``--jobs N`` runs N pipelines at once with ``--threads`` threads each (default 1): on a 2-core
machine two one-thread jobs finish sooner than two two-thread jobs in a row. Thread count changes
the order of floating-point sums, so a seed run with 1 thread and with 2 threads can differ by
about as much as two seeds do; the table says how each run was made.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from diga.data.synth import CONDITIONS, generate_benchmark
from diga.engine.benchmark import BENCHMARK_DEFAULTS
from diga.io import cache_dir

STAGES = ("source-only", "warm-up", "round 1", "round 2", "oracle")


def benchmark_root(condition: str) -> Path:
    """The benchmark for ``condition`` (generated once, beside the built-in one in the cache)."""
    p = BENCHMARK_DEFAULTS
    name = f"synth-v2-{p['size'][0]}x{p['size'][1]}-n{p['n_train']}-{p['n_val']}-g{p['gap']}-s{p['seed']}"
    if condition == "none":
        root = cache_dir() / name
        generate_benchmark(root, n_train=p["n_train"], n_val=p["n_val"], size=p["size"], seed=p["seed"],
                           gap=p["gap"], progress=False)
        return root
    root = cache_dir() / f"{name}-{condition}"
    return generate_benchmark(root, n_train=p["n_train"], n_val=p["n_val"], size=p["size"], seed=p["seed"],
                              gap=p["gap"], conditions=(condition,), progress=False)


def run_one(condition: str, seed: int, project: Path, threads: int, reference_steps: str,
            adapt_args: list[str]) -> Path:
    """One whole `diga adapt` (resumed if interrupted); its run directory."""
    root = benchmark_root(condition)
    name = f"{condition}-s{seed}-t{threads}"
    cmd = ["diga", "adapt", "--source", f"gta5:{root / 'source'}", "--target", f"cityscapes:{root / 'target'}",
           "--val", f"cityscapes:{root / 'target'}", "--preset", "cpu", "--references",
           "--reference-steps", reference_steps, "--seed", str(seed), "--name", name, "--project", str(project),
           "--eval-every", "400",  # twice the preset's evaluation points: more checkpoints for the label-free signals
           *adapt_args]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    log = project / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    with open(log, "a") as f:
        done = subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT)
    print(f"{name}: exit {done.returncode} after {time.time() - t0:.0f} s (log {log})", file=sys.stderr)
    return project / "adapt" / name


def stage_key(stage: str) -> str:
    """A results.json stage name as a column of STAGES (``self-training round 1 (dynamic)`` -> ``round 1``)."""
    return ("source-only" if stage.startswith("source-only") else "oracle" if stage.startswith("oracle")
            else "warm-up" if stage == "warm-up" else f"round {stage.split('round ')[1][0]}")


def read_rows(run_dir: Path) -> dict[str, float | None] | None:
    """{stage: target-val mIoU, 'gap': fraction} from a finished run's results.json (None if unfinished)."""
    path = run_dir / "results.json"
    if not path.is_file():
        return None
    results = json.loads(path.read_text())
    rows: dict[str, float | None] = {}
    for row in results["rows"]:
        rows[stage_key(row["stage"])] = row["target_val_miou"]
    rows["gap"] = (results.get("gap_closed") or {}).get("value")
    final = results.get("final_stage")  # the drift guard may hand on an earlier stage than the last
    rows["final"] = stage_key(final) if final else "last"
    return rows


def mean_std(values: list[float]) -> str:
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--conditions", nargs="+", default=[n for n, c in CONDITIONS.items() if c.held_out],
                   help="condition names, or none for the plain target (default: the held-out ones)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--project", type=Path, default=Path("runs/shift_adapt"))
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reference-steps", default="same")
    p.add_argument("--adapt-arg", action="append", default=[], metavar="ARG",
                   help="one more `diga adapt` argument, e.g. --adapt-arg=--warmup-target-bn (repeatable); "
                        "give each variant its own --project")
    p.add_argument("--table-only", action="store_true", help="only read finished runs and print the tables")
    args = p.parse_args()
    unknown = [c for c in args.conditions if c != "none" and c not in CONDITIONS]
    if unknown:
        sys.exit(f"--conditions: unknown {unknown}; expected none or one of {', '.join(CONDITIONS)}")

    jobs = [(c, s) for s in args.seeds for c in args.conditions]
    if not args.table_only:
        for condition in args.conditions:  # generate once, before the workers race for it
            benchmark_root(condition)
        with ThreadPoolExecutor(args.jobs) as pool:
            list(pool.map(lambda job: run_one(*job, args.project, args.threads, args.reference_steps, args.adapt_arg), jobs))

    print("| condition | seed | threads | " + " | ".join(STAGES) + " | handed on | gap closed |")
    print("|---" * (len(STAGES) + 5) + "|")
    runs: dict[str, list[dict]] = {}
    for run_dir in sorted((args.project / "adapt").glob("*-s*-t*")):
        condition, seed, threads = run_dir.name.rsplit("-", 2)
        rows = read_rows(run_dir)
        if rows is None or condition not in args.conditions:
            continue
        runs.setdefault(condition, []).append(rows)
        cells = [f"{rows[k]:.2f}" if rows.get(k) is not None else "—" for k in STAGES]
        gap = f"{100 * rows['gap']:.0f} %" if rows.get("gap") is not None else "—"
        print(f"| {condition} | {seed[1:]} | {threads[1:]} | " + " | ".join(cells) + f" | {rows['final']} | {gap} |")
    print()
    print("| condition | runs | " + " | ".join(STAGES) + " | gap closed |")
    print("|---" * (len(STAGES) + 3) + "|")
    for condition, rows in runs.items():
        cells = [mean_std([r[k] for r in rows if r.get(k) is not None]) for k in STAGES]
        gaps = [100 * r["gap"] for r in rows if r.get("gap") is not None]
        print(f"| {condition} | {len(rows)} | " + " | ".join(cells) + f" | {mean_std(gaps)} % |")


if __name__ == "__main__":
    main()
