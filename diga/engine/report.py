"""``runs/adapt/NAME/report.md`` with PNG figures: what the adaptation did, in one look."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from ..classes import LabelSpace, get_label_space  # noqa: E402
from ..io import atomic_write_text  # noqa: E402
from .config import StageConfig  # noqa: E402
from .evaluation import evaluate_checkpoint  # noqa: E402
from .labelfree import PREFIX, SIGNALS, SUBSET_SIZE, describe, handed_on_step  # noqa: E402
from .metrics_log import read_metrics  # noqa: E402
from .references import describe_gap  # noqa: E402
from .trainer import completed_summary  # noqa: E402
from .visualize import save_grid  # noqa: E402


def _stage_dirs(run_dir: Path) -> list[tuple[str, Path]]:
    dirs = [("warm-up", run_dir / "warmup")]
    dirs += [(f"round {p.parent.name[5:]}", p) for p in sorted(run_dir.glob("round*/selftrain"))]
    return [(n, d) for n, d in dirs if d.exists()]


def _curves(run_dir: Path, out: Path) -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
    offset = 0
    for name, d in _stage_dirs(run_dir):
        rows = [r for r in read_metrics(d) if "loss" in r]
        if rows:
            axes[0].plot([offset + r["step"] for r in rows], [r["loss"] for r in rows], label=name)
            kept = [r for r in rows if "kept_fraction" in r]
            if kept:
                axes[1].plot([offset + r["step"] for r in kept], [r["kept_fraction"] for r in kept], label=f"{name} kept")
                acc = [r for r in kept if "kept_accuracy" in r]
                if acc:
                    axes[1].plot([offset + r["step"] for r in acc], [r["kept_accuracy"] for r in acc], "--",
                                 label=f"{name} accuracy of kept")
            offset += rows[-1]["step"]
    axes[0].set(title="training loss", xlabel="step (stages concatenated)")
    axes[1].set(title="pseudo-labels kept by the selection", xlabel="step", ylim=(0, 1.02))
    for ax in axes:
        if ax.lines:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _evaluate_pair(before: Path, after: Path, val: str, cfg: StageConfig, n_show: int = 4,
                   ) -> tuple[dict[str, dict], LabelSpace, dict[str, list[torch.Tensor]]]:
    """Both models scored on target-val as ``diga evaluate`` scores them, and the grid's columns.

    Same function, device choice and scales as the evaluation of a checkpoint, in the run's precision
    (its ``amp``, as its evaluations during training); the whole dataset is scored here (the report is
    written on one rank). The grid shows the first ``n_show`` images with the very predictions that
    were scored.
    """
    shown: dict[str, list[torch.Tensor]] = {"target image": [], "before": [], "after": [], "ground truth": []}
    metrics = {}
    for key, weights in (("before", before), ("after", after)):
        def keep(images: torch.Tensor, pred: torch.Tensor, labels: torch.Tensor, key: str = key) -> None:
            for image, p, label in zip(images, pred, labels):
                if len(shown[key]) == n_show:
                    return
                shown[key].append(p.cpu())
                if key == "before":
                    shown["target image"].append(image.float().div(255))
                    shown["ground truth"].append(label.cpu())

        metrics[key] = evaluate_checkpoint(weights, val, split="val", scales=cfg.eval_scales, device=cfg.device,
                                           eval_size=cfg.eval_size, workers=min(cfg.workers, 2), shard=False,
                                           on_prediction=keep, amp=cfg.amp)
    return metrics, get_label_space(metrics["after"]["label_space"]), shown


def _iou_bars(metrics, space, out: Path) -> Path:
    fig, ax = plt.subplots(figsize=(11, 3.5))
    names = list(space.classes)
    w = 0.4
    for j, (k, color) in enumerate((("before", "#999999"), ("after", "#1f77b4"))):
        vals = [metrics[k]["iou"].get(c) or 0.0 for c in names]
        ax.bar([i + (j - 0.5) * w for i in range(len(names))], vals, w, label=f"{k} (mIoU {metrics[k]['miou']:.1f})",
               color=color)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    ax.set(ylabel="IoU (%)", title="per-class IoU on target-val, before vs after adaptation", ylim=(0, 100))
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _label_free_section(run_dir: Path) -> list[str]:
    """Every evaluation point of every stage: val mIoU beside the label-free signals, and which
    point's model the stage handed on (its last, or the one --select chose)."""
    lines = ["## Label-free signals", "",
             f"On the same {SUBSET_SIZE} unlabelled target training images at every evaluation point "
             "(docs/BENCHMARKS.md, \"Label-free signals\", says how far they track mIoU).", ""]
    header = ("| stage | step | handed on | target-val mIoU | " + " | ".join(s.replace("_", " ") for s in SIGNALS)
              + " |")
    body = []
    for name, d in _stage_dirs(run_dir):
        summary = completed_summary(d)
        chosen = handed_on_step(summary) if summary else None
        for r in read_metrics(d):
            if any(k.startswith(PREFIX) for k in r):
                cells = [f"{r[PREFIX + s]:.3f}" if PREFIX + s in r else "—" for s in SIGNALS]
                miou = "—" if r.get("val_miou") is None else f"{r['val_miou']:.2f}"
                mark = "yes" if r["step"] == chosen else ""
                body.append(f"| {name} | {r['step']} | {mark} | {miou} | " + " | ".join(cells) + " |")
    if not body:
        return []
    return lines + [header, "|" + "---|" * (4 + len(SIGNALS))] + body + [""]


def write_report(run_dir: Path, table: list[tuple[str, float | None]], cfg: StageConfig, before: Path,
                 signals: dict[str, dict[str, float]] | None = None, gap: dict | None = None,
                 notes: list[str] = ()) -> Path:
    run_dir = Path(run_dir)
    fig_dir = run_dir / "figures"
    fig_dir.mkdir(exist_ok=True)
    signals = signals or {}
    lines = ["# DiGA adaptation report", "", f"source `{cfg.source}` → target `{cfg.target}`; "
             f"model `{cfg.model}`, preset settings in `config.yaml`.", "",
             "| stage | target-val mIoU | label-free |", "|---|---|---|"]
    lines += [f"| {k} | {'—' if v is None else f'{v:.2f}'} | {describe(signals.get(k, {}))} |" for k, v in table]
    gap_line = describe_gap(gap)
    if gap_line:
        lines += ["", gap_line[0].upper() + gap_line[1:] + "."]
    lines += [line for note in notes for line in ("", note[0].upper() + note[1:] + ".")]
    lines += ["", "## Training", "", f"![curves]({_curves(run_dir, fig_dir / 'curves.png').relative_to(run_dir)})", ""]
    lines += _label_free_section(run_dir)
    final = run_dir / "final.safetensors"
    if cfg.val and before.exists() and final.exists():
        metrics, space, shown = _evaluate_pair(before, final, cfg.val, cfg)
        save_grid(fig_dir / "predictions.png", {k: torch.stack(v) for k, v in shown.items()}, space)
        _iou_bars(metrics, space, fig_dir / "iou.png")
        lines += ["## Before vs after adaptation", "",
                  f"Before = `{before.name}` (mIoU {metrics['before']['miou']:.2f}), after = `final.safetensors` "
                  f"(mIoU {metrics['after']['miou']:.2f}).", "", "![per-class IoU](figures/iou.png)", "",
                  "Target-val images: before, after, ground truth.", "", "![predictions](figures/predictions.png)", ""]
    out = run_dir / "report.md"
    atomic_write_text(out, "\n".join(lines) + "\n")
    return out
