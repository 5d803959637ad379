"""benchmarks/inference_modes.py runs on a tiny benchmark and reports every factor x mode."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from tests.conftest import make_checkpoint, repo_root


def load_script():
    spec = importlib.util.spec_from_file_location("inference_modes", repo_root() / "benchmarks" / "inference_modes.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rows_for_every_factor_and_mode(tiny_bench, tmp_path, capsys):
    script = load_script()
    ckpt = make_checkpoint(tmp_path / "m.safetensors", train_size=[64, 128], crop=[32, 64])
    out = tmp_path / "rows.json"
    assert script.main(["--weights", str(ckpt), "--data", str(Path(tiny_bench["root"]) / "target"),
                        "--factors", "1", "2", "--max-images", "2", "--threads", "1", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [(r["factor"], r["mode"]) for r in rows] == [(f, m) for f in (1.0, 2.0) for m in ("whole", "resize", "slide")]
    assert [r["size"] for r in rows[::3]] == [[64, 128], [128, 256]]
    auto = {r["factor"]: r["mode"] for r in rows if r["auto"]}
    assert auto == {1.0: "whole", 2.0: "resize"}
    by = {(r["factor"], r["mode"]): r for r in rows}
    assert by[(2.0, "whole")]["network_pixels"] == 128 * 256 and by[(2.0, "resize")]["network_pixels"] == 64 * 128
    assert by[(1.0, "slide")]["network_pixels"] == 9 * 32 * 64  # 3x3 windows of 32x64, stride 22x43
    # at the training scale whole and resize are the same computation
    assert by[(1.0, "whole")]["miou"] == by[(1.0, "resize")]["miou"]
    table = capsys.readouterr().out
    assert "| x2 | 128x256 | **resize** (auto) |" in table and "network Mpx" in table
