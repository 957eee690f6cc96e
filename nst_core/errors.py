"""User-facing errors.

Every error that a user can cause or fix is an :class:`NstError`: its message is one line that
says what went wrong and, where possible, what to do. Front ends print ``str(error)`` and exit
with ``error.exit_code``; anything else escaping the engine is a bug.

Advice names settings, not command-line flags: a message is made with :func:`setting`, e.g.
``f"raise {setting('max_memory')} or lower {setting('size')}"``. ``str(error)`` shows the
:class:`~nst_core.config.Config` field names (``raise max_memory or lower size``), which is what
a Python or GIMP user can act on; a front end shows its own spelling with
:meth:`NstError.render` (the command line: ``raise --max-memory or lower --size``).
"""

from __future__ import annotations

import re
from collections.abc import Callable

#: A setting's name inside a message, until it is rendered (two unprintable delimiters).
_MARK = "\x1e{}\x1f"
_MARKED = re.compile("\x1e([A-Za-z_][A-Za-z0-9_]*)\x1f")


def setting(name: str) -> str:
    """``name`` (a :class:`~nst_core.config.Config` field) marked for :meth:`NstError.render`."""
    return _MARK.format(name)


def render_settings(text: str, spell: Callable[[str], str] = str) -> str:
    """``text`` with every :func:`setting` mark replaced by ``spell(name)``."""
    return _MARKED.sub(lambda match: spell(match.group(1)), text)


class NstError(Exception):
    """Base class of the errors nst-core reports to users (one-line message)."""

    #: Process exit code a command-line front end should use.
    exit_code = 1

    def __str__(self) -> str:
        return self.render()

    def render(self, spell: Callable[[str], str] = str) -> str:
        """The message with each setting it names spelled by ``spell`` (default: the field name)."""
        return render_settings(super().__str__(), spell)


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
