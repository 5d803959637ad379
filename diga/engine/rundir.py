"""One run directory, one run: a lock file that a second run with the same --name is refused by.

The lock is ``RUN_DIR/.lock``, held with ``fcntl.flock`` for the life of the run, and records the
holder's pid and host for the message a second run prints. The kernel releases a flock when its
process dies, so the file of a killed run is recognised as stale and taken over with a notice. On a
file system without flock, the recorded pid is checked instead (alive on this host: refused).
Under DDP only rank 0 takes the lock: the other ranks of the same job write nothing of their own.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console

from ..errors import ConfigError, DigaError
from . import runtime

LOCK_NAME = ".lock"
_held: dict[Path, int] = {}  # run directories this process holds, with their nesting depth


class RunLockedError(DigaError, RuntimeError):
    """Another live run writes into this run directory."""


class RunDirError(DigaError, OSError):
    """The run directory cannot be created or written."""


def check_run_name(name: str) -> str:
    """A run name is one folder (``runs/STAGE/NAME``): no separators, not ``.`` or ``..``, not empty."""
    if not name or name in (".", "..") or "/" in name or os.sep in name or "\0" in name:
        raise ConfigError(f"--name {name!r} is not a run name: expected one folder name such as exp or "
                          "gta5-to-city (no '/', not '.' or '..', not empty)")
    return name


@contextmanager
def run_lock(run_dir: str | Path, console: Console | None = None, wait: bool = False) -> Iterator[None]:
    """Hold ``run_dir`` for this process; a second holder is refused (or, with ``wait``, waits).

    Re-entrant within a process (``diga adapt`` holds its run while a stage takes its own).
    """
    run_dir = Path(run_dir)
    if not runtime.is_main():
        yield
        return
    key = run_dir.resolve()
    if key in _held:
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    fd = _acquire(run_dir, console or Console(stderr=True), wait)
    _held[key] = 1
    try:
        yield
    finally:
        del _held[key]
        _release(run_dir / LOCK_NAME, fd)


def _acquire(run_dir: Path, console: Console, wait: bool) -> int:
    path = run_dir / LOCK_NAME
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _unwritable(run_dir, e) from None
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise _unwritable(run_dir, e) from None
        try:
            previous = _read_holder(fd)
            if not _lock(fd, path, previous, wait, console):
                os.close(fd)
                continue
            if os.fstat(fd).st_ino != _inode(path):
                os.close(fd)  # the holder removed the file as we opened it: lock the new one
                continue
            if previous and previous.get("pid") != os.getpid():
                console.print(f"[yellow]{run_dir}: the run that held it ({_describe(previous)}) is no longer "
                              "running (killed or crashed); taking it over[/]")
            _write_holder(fd)
            return fd
        except BaseException:
            os.close(fd)
            raise


def _lock(fd: int, path: Path, holder: dict | None, wait: bool, console: Console) -> bool:
    """Take the flock; False if the caller should open the file again."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        pass
    except OSError as e:
        if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            raise
        if holder and _alive_here(holder):
            raise RunLockedError(_locked_message(path, holder)) from None
        return True  # no flock on this file system: the recorded holder is gone
    if not wait:
        raise RunLockedError(_locked_message(path, holder))
    console.print(f"[yellow]waiting for {_describe(holder)}, which is writing {path.parent}[/]")
    fcntl.flock(fd, fcntl.LOCK_EX)
    return True


def _release(path: Path, fd: int) -> None:
    try:
        path.unlink(missing_ok=True)  # unlinked while still locked, so no one locks a dying file
    finally:
        os.close(fd)


def _unwritable(run_dir: Path, error: OSError) -> RunDirError:
    reason = error.strerror or str(error)
    if isinstance(error, (FileExistsError, NotADirectoryError)):
        reason = "a file of that name (or of a folder above it) is in the way"
    return RunDirError(f"cannot write the run directory {run_dir}: {reason}; choose a writable --project "
                       "(or another --name)")


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return None


def _read_holder(fd: int) -> dict | None:
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"null")
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _write_holder(fd: int) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode(), 0)


def _alive_here(holder: dict) -> bool:
    if holder.get("host") != socket.gethostname():
        return True  # another machine's process cannot be checked from here: assume it runs
    try:
        os.kill(int(holder.get("pid", 0)), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, TypeError):
        return True
    return True


def _describe(holder: dict | None) -> str:
    if not holder:
        return "another process"
    return f"pid {holder.get('pid')} on host {holder.get('host')}"


def _locked_message(path: Path, holder: dict | None) -> str:
    return (f"{path.parent} is in use by another run ({_describe(holder)}): two runs in one directory would "
            "mix their checkpoints. Wait for it to finish (or stop it), or choose another --name; if that "
            f"process is certainly gone (another host crashed), delete {path} and re-run")


__all__ = ["RunLockedError", "RunDirError", "LOCK_NAME", "check_run_name", "run_lock"]
