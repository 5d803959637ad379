"""`.ci/run` refuses a machine without the disk the venv needs before it installs anything."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _fake(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash to run .ci/run")
def test_ci_refuses_a_disk_without_room_for_the_venv(tmp_path):
    (tmp_path / ".ci").mkdir()
    shutil.copy(REPO / ".ci" / "run", tmp_path / ".ci" / "run")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _fake(bin_dir, "chromium", "exit 0")  # present: no apt-get
    # 2 GiB free, in df -Pk's layout
    _fake(bin_dir, "df", 'echo "Filesystem 1024-blocks Used Available Capacity Mounted on"; '
                         'echo "/dev/x 10000000 7902848 2097152 80% /"')
    _fake(bin_dir, "python3", "echo python3 must not run >&2; exit 3")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    done = subprocess.run(["bash", str(tmp_path / ".ci" / "run")], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1, done.stderr
    assert "free disk: 2 GiB" in done.stdout
    assert "CI needs about 7 GiB free for the venv" in done.stderr and "only 2048 MiB free" in done.stderr
    assert not (tmp_path / ".venv").exists()
