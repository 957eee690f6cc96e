"""User-facing errors.

Every error that a user can cause or fix is an :class:`NstError`: its message is one line that
says what went wrong and, where possible, what to do. Front ends print ``str(error)`` and exit
with ``error.exit_code``; anything else escaping the engine is a bug.
"""

from __future__ import annotations


class NstError(Exception):
    """Base class of the errors nst-core reports to users (one-line message)."""

    #: Process exit code a command-line front end should use.
    exit_code = 1


class InputError(NstError):
    """Bad input: a missing, unreadable, corrupt or oversized file, a wrong image mode."""

    exit_code = 2


class ConfigError(InputError):
    """An invalid setting: unknown layer name, out-of-range weight, unknown method."""


class WeightsError(InputError):
    """Network weights that are missing, corrupt, truncated or of the wrong architecture."""


class PluginError(NstError):
    """A plugin that registers something invalid (duplicate name, wrong type)."""


class OptimizationError(NstError):
    """The optimization failed at run time (for example the loss became NaN or infinite)."""
