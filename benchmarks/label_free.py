"""Do the label-free signals track target-val mIoU? Spearman rank correlation per signal.

Reads every ``metrics.jsonl`` under the given run folders (``diga adapt`` writes one per stage),
pairs each evaluation record's ``val_miou`` with its ``label_free_*`` signals, and prints, per
signal, the rank correlation with mIoU over all evaluation points (and within each stage kind),
with the number of points it rests on.

    python benchmarks/label_free.py runs/adapt/a runs/adapt/b [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from diga.engine.labelfree import PREFIX, SIGNALS


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
            for line in path.read_text().splitlines():
                record = json.loads(line) if line.strip() else {}
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (searched for metrics.jsonl)")
    parser.add_argument("--json", type=Path, help="also write the table as JSON here")
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
    if args.json:
        args.json.write_text(json.dumps({"points": len(points), "spearman": table}, indent=2) + "\n")


if __name__ == "__main__":
    main()
