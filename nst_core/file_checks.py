"""Checks on paths before a file is opened or written: input files, output paths, same-file tests.

Inputs (images, weights, model files) must be regular files: opening a named pipe blocks until
something writes into it (a run would hang, deaf to SIGTERM), and a device such as ``/dev/zero``
never ends. :func:`not_regular_reason` says what such a path is, from ``os.stat`` alone, so that
callers refuse it before opening anything; :func:`read_head` reads the first bytes of a file
that passes, opened without blocking.

Outputs are checked before a run does any work: :func:`name_problem` (a name longer than the file
system allows) and :func:`folder_problem` (a missing or unwritable folder, a folder in the way).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from .message_text import first_line, quote_path

__all__ = [
    "FileProblem",
    "folder_problem",
    "is_protected",
    "name_problem",
    "not_regular",
    "not_regular_reason",
    "read_head",
    "same_file",
]

#: The longest file name, in bytes, assumed where the file system cannot be asked.
DEFAULT_NAME_MAX = 255

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def not_regular_reason(path: str | os.PathLike[str]) -> str | None:
    """``None`` for a regular file (or a link to one), else e.g. ``it is a named pipe (FIFO), not a regular file``.

    Only ``os.stat`` is used, which never blocks. Raises :class:`OSError` (a missing file, no
    permission to look) for the caller to word.
    """
    return not_regular(os.stat(path).st_mode)


def not_regular(mode: int) -> str | None:
    """:func:`not_regular_reason` for a ``st_mode`` already at hand."""
    if stat.S_ISREG(mode):
        return None
    kind = next((name for test, name in _KINDS if test(mode)), "a special file")
    return f"it is {kind}, not a regular file"


class FileProblem(Exception):
    """Why a path cannot be read as a file, in words for a message: ``no such file``, ``it is a directory`` …"""


def read_head(path: str | os.PathLike[str], size: int) -> bytes:
    """The first ``size`` bytes of a regular file.

    :raises FileProblem: no such file, a directory, a named pipe, socket or device (from
        ``os.stat``, before opening: nothing blocks), no permission, or the system's reason.
    """
    try:
        mode = os.stat(path).st_mode
        if stat.S_ISDIR(mode):
            raise FileProblem("it is a directory")
        if (irregular := not_regular(mode)) is not None:
            raise FileProblem(irregular)
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
        with open(descriptor, "rb") as handle:  # should it have become a pipe since: no writer, no wait
            return handle.read(size)
    except FileNotFoundError:
        raise FileProblem("no such file") from None
    except PermissionError:
        raise FileProblem("permission denied") from None
    except OSError as error:
        raise FileProblem(error.strerror or first_line(error)) from None


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file (hard links and symlinks too), existing or not."""
    try:
        if a.exists() and b.exists() and os.path.samefile(a, b):
            return True
    except OSError:
        pass
    real_a = os.path.normcase(os.path.realpath(a))
    real_b = os.path.normcase(os.path.realpath(b))
    return real_a == real_b


def is_protected(target: Path, protect: Iterable[str | os.PathLike[str] | None]) -> bool:
    """Whether ``target`` is one of ``protect`` (a run's input files; ``None`` entries are skipped)."""
    return any(item is not None and same_file(target, Path(item)) for item in protect)


def name_max(folder: Path) -> int:
    """The longest file name (bytes) the file system of ``folder`` allows; 255 where it cannot say."""
    try:
        limit = os.pathconf(folder if str(folder) else ".", "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):  # no such folder, no pathconf (Windows)
        return DEFAULT_NAME_MAX
    return limit if isinstance(limit, int) and limit > 0 else DEFAULT_NAME_MAX


def name_problem(path: Path) -> str | None:
    """Why ``path``'s file name cannot exist in its folder (too long), or ``None``.

    Checked before anything else touches the path: most calls on a too-long name raise
    ``OSError(ENAMETOOLONG)``.
    """
    length = len(os.fsencode(path.name))
    limit = name_max(path.parent)
    if length > limit:
        return f"the file name is {length} bytes long, more than the {limit} this file system allows"
    return None


def folder_problem(target: Path) -> str | None:
    """Why no file can be written at ``target`` (missing or unwritable folder, a folder there), or ``None``."""
    directory = target.parent
    if not directory.is_dir():
        return f"directory {quote_path(directory)} does not exist"
    if target.is_dir():
        return "it is a directory"
    if not os.access(directory, os.W_OK | os.X_OK):
        return f"directory {quote_path(directory)} is not writable"
    return None
