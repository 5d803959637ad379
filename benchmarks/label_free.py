"""Do the label-free signals track target-val mIoU? Spearman rank correlation per signal.

Reads every ``metrics.jsonl`` under the given run folders (``diga adapt`` writes one per stage),
pairs each evaluation record's ``val_miou`` with its ``label_free_*`` signals, and prints, per
signal, the rank correlation with mIoU over all evaluation points (and within each stage kind),
with the number of points it rests on.

Pooled over runs, a correlation also measures how the signals differ between target domains
(a hard shift has both low mIoU and high entropy). What ``--select label-free`` would do is pick a
checkpoint *within* one stage, so the second table scores exactly that: in every stage run with
at least 3 evaluation points, the point each signal ranks best (lowest entropy or class drift,
highest agreement) against the stage's last point, which the pipeline hands on today.

With ``--guard LIMIT...`` it also scores the drift guard of `diga adapt` (``drift_guard``) on every
finished adapt run found: which stage each limit would have handed on, and its mIoU against the last.

    python benchmarks/label_free.py runs/adapt/a runs/adapt/b [--guard 0.2 0.3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path

from diga.engine.config import StageConfig
from diga.engine.labelfree import PREFIX, SIGNALS
from diga.engine.pipeline import guard_rejects
from diga.engine.metrics_log import read_metrics


def ranks(values: list[float]) -> list[float]:
    """Ranks from 1, ties sharing their mean rank."""
    order = sorted(range(len(values)), key=values.__getitem__)
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


def pearson(x: list[float], y: list[float]) -> float | None:
    n = len(x)
    mx, my = sum(x) / n, sum(y) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    sxx, syy = sum((a - mx) ** 2 for a in x), sum((b - my) ** 2 for b in y)
    return None if sxx == 0 or syy == 0 else sxy / math.sqrt(sxx * syy)


def spearman(x: list[float], y: list[float]) -> float | None:
    """Spearman's rho = Pearson correlation of the ranks (None under 3 points or without spread)."""
    return pearson(ranks(x), ranks(y)) if len(x) >= 3 else None


def evaluation_points(roots: list[Path]) -> list[dict]:
    """Every record with val_miou and label-free signals, tagged with its stage folder."""
    points = []
    for root in roots:
        for path in sorted(Path(root).rglob("metrics.jsonl")):
            for record in read_metrics(path.parent):
                if record.get("val_miou") is not None and any(k.startswith(PREFIX) for k in record):
                    points.append({"stage": path.parent.name, "run": str(path.parent), **record})
    return points


def correlations(points: list[dict]) -> dict[str, dict[str, dict]]:
    """{group: {signal: {"rho": ..., "n": ...}}} for all points and per stage kind."""
    groups = {"all": points}
    for p in points:
        groups.setdefault(p["stage"], []).append(p)
    table: dict[str, dict[str, dict]] = {}
    for group, members in groups.items():
        for signal in SIGNALS:
            pairs = [(p[PREFIX + signal], p["val_miou"]) for p in members if PREFIX + signal in p]
            rho = spearman([a for a, _ in pairs], [b for _, b in pairs]) if pairs else None
            table.setdefault(group, {})[signal] = {"rho": rho, "n": len(pairs)}
    return table


# Which way is better for each signal: +1 higher, -1 lower.
BETTER = {"entropy": -1, "teacher_agreement": +1, "prototype_agreement": +1, "class_drift": -1}


def selection(points: list[dict]) -> dict[str, dict]:
    """Per signal, over the stage runs with >= 3 points: mean mIoU of the point the signal picks
    minus that of the last point, how often it picks better / the same / worse, and the mean
    shortfall of the last point from the best one (what a perfect selector could gain)."""
    runs: dict[str, list[dict]] = {}
    for p in points:
        runs.setdefault(p["run"], []).append(p)
    runs = {run: sorted(ps, key=lambda p: p["step"]) for run, ps in runs.items() if len(ps) >= 3}
    out = {}
    for signal, sign in BETTER.items():
        deltas, best_gaps = [], []
        for ps in runs.values():
            scored = [p for p in ps if PREFIX + signal in p]
            if len(scored) < 3:
                continue
            picked = max(scored, key=lambda p: sign * p[PREFIX + signal])
            deltas.append(picked["val_miou"] - scored[-1]["val_miou"])
            best_gaps.append(max(p["val_miou"] for p in scored) - scored[-1]["val_miou"])
        out[signal] = {"runs": len(deltas), "mean_gain_vs_last": sum(deltas) / len(deltas) if deltas else None,
                       "better": sum(d > 0 for d in deltas), "same": sum(d == 0 for d in deltas),
                       "worse": sum(d < 0 for d in deltas),
                       "mean_best_minus_last": sum(best_gaps) / len(best_gaps) if best_gaps else None}
    return out


def pipeline_runs(roots: list[Path]) -> list[tuple[Path, list[dict]]]:
    """(run folder, its stage rows with label-free signals) of every finished `diga adapt` run found."""
    runs = []
    for root in roots:
        for path in sorted(Path(root).rglob("results.json")):
            rows = [r for r in json.loads(path.read_text()).get("rows", []) if r.get("label_free")]
            if len(rows) >= 2:
                runs.append((path.parent, rows))
    return runs


def guard_outcome(rows: list[dict], limit: float) -> int:
    """Index of the stage row the drift guard at ``limit`` would hand on (the rule `diga adapt` applies:
    the rounds stop at the first one it rejects). Exact for a run made without the guard: the rounds
    before the rejected one are the same computation."""
    cfg = StageConfig().replace(drift_guard=limit)
    for i in range(1, len(rows)):
        if guard_rejects(cfg, i, rows[i - 1]["label_free"], rows[i]["label_free"]):
            return i - 1
    return len(rows) - 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (searched for metrics.jsonl)")
    parser.add_argument("--json", type=Path, help="also write the table as JSON here")
    parser.add_argument("--guard", type=float, nargs="*", default=[], metavar="LIMIT",
                        help="also score the drift guard at these limits on every finished adapt run found")
    args = parser.parse_args()
    missing = [str(r) for r in args.runs if not r.is_dir()]
    if missing:
        parser.error(f"not a folder: {', '.join(missing)}")
    points = evaluation_points(args.runs)
    if not points:
        parser.error("no evaluation records with label-free signals under " + ", ".join(map(str, args.runs)))
    table = correlations(points)
    print(f"{len(points)} evaluation points from {len({p['run'] for p in points})} stage runs\n")
    print("| points | " + " | ".join(s.replace("_", " ") for s in SIGNALS) + " |")
    print("|---|" + "---|" * len(SIGNALS))
    for group, row in table.items():
        cells = [("—" if c["rho"] is None else f"{c['rho']:+.2f}") + f" (n={c['n']})" for c in row.values()]
        print(f"| {group} | " + " | ".join(cells) + " |")
    picks = selection(points)
    print("\nChoosing a checkpoint within each stage run by the signal, against handing on the last one:\n")
    print("| signal | stage runs | mIoU gain vs last (mean) | better / same / worse | best − last (mean) |")
    print("|---|---|---|---|---|")
    for signal, row in picks.items():
        gain = "—" if row["mean_gain_vs_last"] is None else f"{row['mean_gain_vs_last']:+.2f}"
        best = "—" if row["mean_best_minus_last"] is None else f"{row['mean_best_minus_last']:+.2f}"
        print(f"| {signal.replace('_', ' ')} | {row['runs']} | {gain} | {row['better']} / {row['same']} / "
              f"{row['worse']} | {best} |")
    guards = score_guards(pipeline_runs(args.runs), args.guard) if args.guard else {}
    if args.json:
        args.json.write_text(json.dumps({"points": len(points), "spearman": table, "selection": picks,
                                         "guard": guards}, indent=2) + "\n")


def score_guards(runs: list[tuple[Path, list[dict]]], limits: list[float]) -> dict[str, list[dict]]:
    """Print, per run, its stages' mIoU and class drift and what each guard limit hands on; return it."""
    print("\nThe drift guard on every finished adapt run (mIoU / class drift per stage; the model each limit "
          "hands on, and its mIoU minus the last stage's):\n")
    print("| run | stages: mIoU (drift) | " + " | ".join(f"guard {x:g}" for x in limits) + " |")
    print("|---|---|" + "---|" * len(limits))
    out: dict[str, list[dict]] = {}
    common = Path(os.path.commonpath([str(run) for run, _ in runs])) if len(runs) > 1 else None
    for run, rows in runs:
        stages = " → ".join(f"{r['target_val_miou']:.2f} ({r['label_free']['class_drift']:.2f})" for r in rows)
        cells = []
        for limit in limits:
            kept = guard_outcome(rows, limit)
            delta = rows[kept]["target_val_miou"] - rows[-1]["target_val_miou"]
            cells.append("last" if kept == len(rows) - 1 else f"{rows[kept]['stage'].split(' (')[0]} ({delta:+.2f})")
            out.setdefault(f"{limit:g}", []).append({"run": str(run), "handed_on": rows[kept]["stage"],
                                                     "miou_minus_last": delta})
        print(f"| {run.relative_to(common) if common else run.name} | {stages} | " + " | ".join(cells) + " |")
    return out


if __name__ == "__main__":
    main()
