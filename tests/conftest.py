"""Shared fixtures: a tiny synthetic two-domain benchmark, generated once per test session."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Keep the benchmark/reference cache of the tests away from the user's ~/.cache."""
    old = os.environ.get("DIGA_CACHE")
    os.environ["DIGA_CACHE"] = str(tmp_path_factory.mktemp("diga_cache"))
    yield
    if old is None:
        os.environ.pop("DIGA_CACHE", None)
    else:
        os.environ["DIGA_CACHE"] = old


@pytest.fixture(scope="session")
def tiny_bench(tmp_path_factory) -> dict[str, str]:
    """8 train + 4 val images per domain at 64x128, in the GTA5 and Cityscapes layouts."""
    from diga.engine.benchmark import synthetic_benchmark

    root = tmp_path_factory.mktemp("bench") / "synth"
    return synthetic_benchmark(n_train=8, n_val=4, size=(64, 128), seed=0, root=root)


@pytest.fixture(autouse=True)
def _cpu_preset_in_fp32(monkeypatch):
    """The cpu preset trains in bf16 only on CPUs with bf16 units: tests take it in fp32 on every
    machine, so that their exact comparisons hold everywhere (tests/test_cpu_precision.py covers the
    bf16 choice and a bf16 training step)."""
    from diga.engine import runtime

    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: False)


@pytest.fixture()
def tiny_cfg(tiny_bench):
    """The CPU preset shrunk to seconds: a few steps on 48x96 crops, no worker processes."""
    from diga.engine.config import preset

    return preset("cpu").replace(
        source=tiny_bench["source"], target=tiny_bench["target"], val=tiny_bench["val"],
        crop=(48, 96), batch_size=2, workers=0, steps=4, log_every=2, eval_every=2, ckpt_every=2,
        vis_every=2, rounds=1, selftrain_steps=3,
        # A few steps from scratch move the class drift at random: the guard (tested on its own in
        # test_engine_drift_guard.py) would end the rounds of some tests and not others.
        drift_guard=0.0,
    )


def run_cli(*args: str):
    """Invoke the real Typer app in-process; returns the click Result."""
    from typer.testing import CliRunner

    from diga.cli.main import app

    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "240", "TERMINAL_WIDTH": "240"})
    # Rich draws errors in boxes and wraps long lines: give tests the text as one spaced line.
    result.text = re.sub(r"[\s│╭╮╰╯─]+", " ", result.output)
    return result


@pytest.fixture()
def cli():
    return run_cli


def stage_configs(command: str, bench: dict[str, str], tmp_path: Path, monkeypatch, *options) -> list:
    """The StageConfigs `diga COMMAND ... OPTIONS` hands to the engine (which is stopped before it
    trains anything): how a test checks that a stage command passes a setting on."""
    from diga.engine import pipeline
    from diga.engine.config import StageConfig

    seen = []

    def stop(*args, **kwargs):
        seen.extend(a for a in (*args, *kwargs.values()) if isinstance(a, StageConfig))
        raise SystemExit(0)

    for engine in ("train_stage", "self_train", "adapt"):
        monkeypatch.setattr(pipeline, engine, stop)
    args = [command, "--source", bench["source"], "--target", bench["target"], "--preset", "cpu",
            "--project", tmp_path, *options]
    if command == "selftrain":
        args += ["--init", make_checkpoint(tmp_path / "warm.safetensors")]
    if command == "adapt":
        args += ["--no-references"]
    r = run_cli(*args)
    assert r.exit_code == 0, r.output
    return seen


def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


def make_checkpoint(path: Path, seed: int = 0, arch: str = "deeplabv2_light", input_size=(64, 128), **meta) -> Path:
    """A random-weight diga checkpoint (safetensors + metadata) for tests that need a model file."""
    import torch

    from diga.checkpoint import model_metadata, save_weights
    from diga.models import create

    torch.manual_seed(seed)
    model = create(arch, 19)
    return save_weights(path, model.state_dict(), model_metadata(arch, "cityscapes19", input_size=input_size, **meta))


def record_resizes(monkeypatch) -> list[tuple[int, int]]:
    """The (height, width) of every image resize the data transforms make from now on, in order."""
    from diga.data import transforms

    sizes: list[tuple[int, int]] = []
    real = transforms._resize_pair
    monkeypatch.setattr(transforms, "_resize_pair",
                        lambda img, mask, size: sizes.append(tuple(size)) or real(img, mask, size))
    return sizes
