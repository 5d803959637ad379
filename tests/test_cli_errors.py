"""Errors: a DigaError is one clean line and exit 1; anything else is a bug and keeps its traceback;
--debug / DIGA_DEBUG=1 show the traceback of every error."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from diga.errors import ConfigError, DigaError


def test_user_facing_errors_share_the_base_and_keep_their_builtin():
    from diga.checkpoint import CheckpointError
    from diga.data.errors import DatasetError
    from diga.demo.app import PortInUseError
    from diga.demo.discovery import NoModelError
    from diga.demo.inputs import DemoInputError
    from diga.engine.trainer import NonFiniteLossError, RunExistsError
    from diga.export.errors import ExportError, PredictorError
    from diga.io import DiskFullError

    expected = {DatasetError: ValueError, CheckpointError: ValueError, ExportError: ValueError,
                PredictorError: ValueError, ConfigError: ValueError, RunExistsError: RuntimeError,
                NonFiniteLossError: RuntimeError, DiskFullError: OSError, DemoInputError: ValueError,
                PortInUseError: ValueError, NoModelError: FileNotFoundError}
    for cls, builtin in expected.items():
        assert issubclass(cls, DigaError) and issubclass(cls, builtin), cls
    assert str(DiskFullError(28, "disk full while writing x")).endswith("disk full while writing x")


def _failing_train(monkeypatch, error: BaseException) -> None:
    from diga.engine import supervised

    def fail(self, *args, **kwargs):
        raise error

    monkeypatch.setattr(supervised.SupervisedTrainer, "__init__", fail)


def _train(cli, tmp_path, *before):
    return cli(*before, "train", "--data", "gta5:/nowhere", "--preset", "cpu", "--project", tmp_path)


def test_a_diga_error_is_one_clean_line(cli, tmp_path, monkeypatch):
    monkeypatch.delenv("DIGA_DEBUG", raising=False)
    _failing_train(monkeypatch, ConfigError("settings [a, b] cannot work here"))
    r = _train(cli, tmp_path)
    assert r.exit_code == 1
    assert "error: settings [a, b] cannot work here" in r.text  # brackets are text, not markup
    assert "Traceback" not in r.output and isinstance(r.exception, SystemExit)


def test_a_bug_is_not_disguised_as_a_user_error(cli, tmp_path, monkeypatch):
    monkeypatch.delenv("DIGA_DEBUG", raising=False)
    _failing_train(monkeypatch, RuntimeError("a bug deep inside"))
    r = _train(cli, tmp_path)
    assert r.exit_code != 0 and "error:" not in r.output
    assert isinstance(r.exception, RuntimeError) and str(r.exception) == "a bug deep inside"


@pytest.mark.parametrize("how", ["--debug", "DIGA_DEBUG=1"])
def test_debug_shows_the_traceback_of_a_diga_error(cli, tmp_path, monkeypatch, how):
    monkeypatch.delenv("DIGA_DEBUG", raising=False)
    _failing_train(monkeypatch, ConfigError("a clean message"))
    if how == "--debug":
        r = _train(cli, tmp_path, "--debug")
    else:
        monkeypatch.setenv("DIGA_DEBUG", "1")
        r = _train(cli, tmp_path)
    assert r.exit_code != 0 and isinstance(r.exception, ConfigError)  # propagated: Python prints the traceback
    monkeypatch.delenv("DIGA_DEBUG", raising=False)
    assert _train(cli, tmp_path).exit_code == 1  # the next command is back to clean messages


SCRIPT = """
import sys
from diga.engine import supervised

def fail(self, *args, **kwargs):
    raise {error}

supervised.SupervisedTrainer.__init__ = fail
from diga.cli.main import main
main()
"""


@pytest.mark.parametrize("error,args,traceback", [
    ("RuntimeError('a bug deep inside')", [], True),
    ("ConfigError('a clean message')", [], False),
    ("ConfigError('a clean message')", ["--debug"], True),
])
def test_the_terminal_sees_a_traceback_exactly_for_bugs_and_debug(tmp_path, error, args, traceback):
    script = SCRIPT.format(error=error).replace("import sys", "import sys\nfrom diga.errors import ConfigError")
    env = {k: v for k, v in os.environ.items() if k != "DIGA_DEBUG"}
    run = subprocess.run([sys.executable, "-c", script, *args, "train", "--data", "gta5:/nowhere", "--preset", "cpu",
                          "--project", str(tmp_path)], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 1
    assert ("Traceback (most recent call last)" in run.stderr) == traceback, run.stderr
    message = "a bug deep inside" if "Runtime" in error else "a clean message"
    assert message in run.stderr
