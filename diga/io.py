"""Atomic file writing: a crash or a full disk never leaves a half-written file behind."""

from __future__ import annotations

import errno
import glob
import os
import secrets
import stat
from collections.abc import Callable, Iterable
from pathlib import Path

from .errors import DigaError


class DiskFullError(DigaError, OSError):
    """Raised instead of a bare ENOSPC so that callers can say which file could not be written."""


class OutputPathError(DigaError, OSError):
    """An output cannot go where it was asked to: a file stands where a folder is needed (or the
    other way round), or the folder is read-only."""


# errno values that mean "this path cannot be written as asked", explained by check_output_file
_PATH_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR, errno.EEXIST})


def cache_dir() -> Path:
    """Where diga keeps what it generates once: ``$DIGA_CACHE``, default ``~/.cache/diga``."""
    return Path(os.environ.get("DIGA_CACHE", "~/.cache/diga")).expanduser()


def atomic_write(path: str | Path, write: Callable[[Path], None], durable: bool = True) -> Path:
    """Call ``write(tmp)`` on a temp file beside ``path``, fsync it, then rename over ``path``.

    The previous ``path`` stays intact until the new one is complete. ``durable=False`` skips the
    fsyncs, for the many files of a set whose completion is recorded by a marker file written last
    (the synthetic benchmark: fsync per PNG made its generation ~1.5x slower on 2 cores).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _create_temp_beside(path)
    except OSError as e:
        if e.errno in _PATH_ERRNOS:
            check_output_file(path)  # raises the explanation
        raise
    mode = stat.S_IMODE(tmp.stat().st_mode)
    try:
        write(tmp)
        if stat.S_IMODE(tmp.stat().st_mode) != mode:  # a writer that replaced the temp file (safetensors: 0600)
            os.chmod(tmp, mode)
        if durable:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
        if durable:
            _fsync_dir(path.parent)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if e.errno == errno.ENOSPC:
            raise DiskFullError(
                e.errno, f"disk full while writing {path}; the previous version is intact"
            ) from e
        if e.errno in _PATH_ERRNOS:
            check_output_file(path)
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _create_temp_beside(path: Path) -> Path:
    """An empty, uniquely named temp file beside ``path`` with the permissions a plain write gives.

    (``tempfile.mkstemp`` creates files as 0600, which would make every checkpoint unreadable to
    the rest of a team: here the umask applies, and an overwritten file keeps its own mode.)
    """
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        if path.exists():
            os.chmod(tmp, stat.S_IMODE(path.stat().st_mode))
        return tmp
    raise FileExistsError(f"could not create a temporary file beside {path}")


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def remove_stale_temps(directory: str | Path, of: Iterable[str | Path] | None = None) -> int:
    """Delete temp files left by writes that a kill interrupted; returns how many.

    ``of``: only the temps of these files of ``directory`` (``.NAME.*.tmp``, and ``.NAME.*.tmp.*``
    for writers that need their own suffix), so that the writer of another file in a shared folder
    keeps its temp; by default every temp of the folder (a run directory owned by one process).
    """
    directory = Path(directory)
    if not directory.is_dir():
        return 0
    if of is None:
        patterns = [".*.tmp"]
    else:
        names = [glob.escape(Path(name).name) for name in of]
        patterns = [p for n in names for p in (f".{n}.*.tmp", f".{n}.*.tmp.*")]
    stale = {p for pattern in patterns for p in directory.glob(pattern) if p.is_file()}
    for p in stale:
        p.unlink(missing_ok=True)
    return len(stale)


def temp_beside(path: str | Path, suffix: str = "") -> Path:
    """A temp name for a writer that creates ``path`` itself (not through :func:`atomic_write`),
    ending in ``suffix``; :func:`remove_stale_temps` ``(of=[path])`` finds it after a kill."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(2)}.tmp{suffix}")


def ensure_output_dir(path: str | Path, what: str = "output folder") -> Path:
    """Create the folder ``path`` (with its parents) unless it exists. An :class:`OutputPathError`
    names ``what``, the path and the obstacle: a file in its place or above it, a read-only place."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"{what} {path} is a file; expected a folder")
    blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise OutputPathError(f"{what} {path}: {blocker} is a file, so no folder can be created inside it")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputPathError(f"{what} {path}: the folder cannot be created ({e.strerror})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise OutputPathError(f"{what} {path} is not writable (a read-only folder or file system)")
    return path


def check_output_file(path: str | Path, what: str = "output file") -> Path:
    """Make sure a file can be written at ``path`` (creating its folder); an :class:`OutputPathError`
    names ``what``, the path and what was expected otherwise."""
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"{what} {path} is a folder; expected a file name")
    ensure_output_dir(path.parent, f"{what} {path}: its folder")
    return path


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
