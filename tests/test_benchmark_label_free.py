"""benchmarks/label_free.py: Spearman correlation of the label-free signals with mIoU."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest
from conftest import repo_root


def _load():
    spec = importlib.util.spec_from_file_location("label_free_bench", repo_root() / "benchmarks/label_free.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_spearman_by_hand():
    lf = _load()
    assert lf.ranks([10.0, 30.0, 20.0, 20.0]) == [1.0, 4.0, 2.5, 2.5]
    assert lf.spearman([1, 2, 3, 4], [10, 20, 25, 100]) == pytest.approx(1.0)
    assert lf.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # d = (0, 0, 1, -1): rho = 1 - 6 * 2 / (4 * 15) = 0.8
    assert lf.spearman([1, 2, 3, 4], [1, 2, 4, 3]) == pytest.approx(0.8)
    assert lf.spearman([1, 2], [2, 1]) is None and lf.spearman([1, 1, 1], [1, 2, 3]) is None


def test_reads_run_folders_and_reports_sample_sizes(tmp_path):
    stage = tmp_path / "run/warmup"
    stage.mkdir(parents=True)
    rows = [{"step": 1, "loss": 2.0}]
    rows += [{"step": s, "val_miou": m, "label_free_entropy": e, "label_free_class_drift": 0.1}
             for s, m, e in ((2, 10.0, 0.9), (3, 20.0, 0.5), (4, 30.0, 0.4), (5, 25.0, 0.45))]
    (stage / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "table.json"
    r = subprocess.run([sys.executable, str(repo_root() / "benchmarks/label_free.py"), str(tmp_path / "run"),
                        "--json", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    table = json.loads(out.read_text())["spearman"]
    assert table["all"]["entropy"] == {"rho": pytest.approx(-1.0), "n": 4}
    assert table["all"]["class_drift"] == {"rho": None, "n": 4}  # no spread: no correlation
    assert table["warmup"]["teacher_agreement"] == {"rho": None, "n": 0}
    assert "4 evaluation points" in r.stdout


def test_refuses_folders_without_signals(tmp_path):
    r = subprocess.run([sys.executable, str(repo_root() / "benchmarks/label_free.py"), str(tmp_path)],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "no evaluation records with label-free signals" in r.stderr
