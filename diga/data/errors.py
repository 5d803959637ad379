"""The one exception the dataset layer raises for bad input, and helpers to word its messages."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ..errors import DigaError


class DatasetError(DigaError, ValueError):
    """A dataset root, list file, image or label is missing, malformed or inconsistent.

    The message always names the offending path(s) and says what was expected.
    """


def list_names(names: Iterable[str | Path], limit: int = 10) -> str:
    """``"3 files: a.png, b.png, c.png"`` -- the first ``limit`` names and the total count."""
    names = [str(n) for n in names]
    shown = ", ".join(names[:limit])
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    noun = "file" if len(names) == 1 else "files"
    return f"{len(names)} {noun}: {shown}{more}"
