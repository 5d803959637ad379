"""The base of every error a user can fix from its message alone.

The CLI prints a ``DigaError`` as one line and exits 1; any other exception is a bug and keeps its
traceback. Subclasses may also derive from the built-in they stand for (``ValueError``,
``OSError``...), so that callers catching those keep working.
"""

from __future__ import annotations


class DigaError(Exception):
    """Bad input, a bad setting or a state of the run directory that the message explains."""


class ConfigError(DigaError, ValueError):
    """A setting is unknown, has the wrong type or value, or differs from the run being resumed."""


__all__ = ["DigaError", "ConfigError"]
