"""The demo under 20 concurrent clients on loopback: every request answered, memory stable."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

spec = importlib.util.spec_from_file_location("demo_load", Path(__file__).parents[1] / "benchmarks" / "demo_load.py")
demo_load = importlib.util.module_from_spec(spec)
spec.loader.exec_module(demo_load)


@pytest.mark.slow
def test_twenty_concurrent_clients(tmp_path):
    result = demo_load.run_load(clients=20, requests=2, work=tmp_path)
    assert result["errors"] == []
    assert result["answered"] == 40
    rss = result["rss_mib"]
    # Memory is stable: the server does not grow by more than a quarter over the run.
    assert rss[-1] < rss[0] * 1.25, rss
