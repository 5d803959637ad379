"""The metric tables the commands print: per class for one dataset, one row per dataset for several."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table


def print_class_table(console: Console, metrics: Mapping[str, Any], title: str) -> None:
    """IoU per class, then mIoU (and any extra means) and pixel accuracy, of one evaluation result."""
    table = Table(title=title)
    table.add_column("class")
    table.add_column("IoU", justify="right")
    for cls, iou in metrics["iou"].items():
        table.add_row(cls, "—" if iou is None else f"{iou:.2f}")
    table.add_row("[bold]mIoU[/]", f"[bold]{metrics['miou']:.2f}[/]")
    for key, value in metrics.get("extra_miou", {}).items():
        table.add_row(f"[bold]{key}[/]", f"[bold]{value:.2f}[/]")
    table.add_row("pixel accuracy", f"{metrics['pixel_accuracy']:.2f}")
    console.print(table)


def print_dataset_table(console: Console, rows: Sequence[Mapping[str, Any]], title: str) -> None:
    """One row per dataset (``rows`` as :func:`diga.engine.evaluation.evaluate_datasets` returns
    them): mIoU, any extra means (SYNTHIA's 13-class mIoU), pixel accuracy and images; below
    several rows, their mean mIoU and pixel accuracy and the images in all."""
    extras = list(dict.fromkeys(key for row in rows for key in row.get("extra_miou", {})))
    table = Table(title=title)
    table.add_column("dataset", overflow="fold")
    table.add_column("mIoU", justify="right")
    for key in extras:
        table.add_column(key, justify="right")
    table.add_column("pixel accuracy", justify="right")
    table.add_column("images", justify="right")
    for row in rows:
        extra = row.get("extra_miou", {})
        table.add_row(escape(str(row["data"])), f"{row['miou']:.2f}",
                      *(f"{extra[key]:.2f}" if key in extra else "—" for key in extras),
                      f"{row['pixel_accuracy']:.2f}", str(row["images"]))
    if len(rows) > 1:
        table.add_section()
        table.add_row("[bold]mean[/]", f"[bold]{_mean(row['miou'] for row in rows):.2f}[/]",
                      *("" for _ in extras), f"{_mean(row['pixel_accuracy'] for row in rows):.2f}",
                      str(sum(int(row["images"]) for row in rows)))
    console.print(table)


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)
