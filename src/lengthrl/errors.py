"""Errors that name the field at fault and the fix, instead of a traceback from deep inside."""

from __future__ import annotations


class LengthRLError(Exception):
    """Base class of every error lengthrl raises on purpose."""


class ConfigError(LengthRLError, ValueError):
    """A bad argument, hyperparameter or config key. The message names the field and the fix."""


class UnknownNameError(ConfigError, KeyError):
    """A name that is not in a registry. The message lists the valid names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DataError(LengthRLError, ValueError):
    """A malformed data file or row. The message names the file, line and field."""
