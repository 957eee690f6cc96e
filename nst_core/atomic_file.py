"""Writing a file atomically: the target is either untouched or the complete new file.

:func:`write_atomically` is the one way nst-core writes its files (images, model files, cached
weights, embedded weights, the probe cache): the content goes to a hidden temporary file in the
target's folder, is flushed and fsynced, gets the permissions a new file would get
(``0o666 & ~umask``), and is moved onto the target with :func:`os.replace`; the folder is then
fsynced so that the rename survives a crash. If anything fails, the temporary file is removed and
the target is as it was.

The temporary file is named ``.NAME.XXXXXXXX.tmp`` with ``NAME`` cut to at most
:data:`KEPT_NAME_BYTES` bytes, so that it fits wherever the target's own name fits (a 250-byte
name plus the dots and the random part would pass the usual 255-byte limit).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["KEPT_NAME_BYTES", "temporary_prefix", "write_atomically"]

#: At most this many bytes of the target's name appear in the temporary file's name.
KEPT_NAME_BYTES = 64


def temporary_prefix(name: str) -> str:
    """``.NAME.`` with ``NAME`` cut (at a character boundary) to :data:`KEPT_NAME_BYTES` bytes."""
    kept = name
    while len(os.fsencode(kept)) > KEPT_NAME_BYTES:
        kept = kept[:-1]
    return f".{kept}."


def write_atomically(target: str | os.PathLike[str], write: Callable[[BinaryIO], None]) -> None:
    """Call ``write(handle)`` on a temporary file beside ``target``, then move it onto ``target``.

    ``handle`` is a binary file opened by name (its ``name`` is the temporary path, as tifffile
    wants). A symlink at ``target`` is replaced, not followed: pass the link's target to write
    through it. Raises what ``write`` or the file system raises (``OSError`` for a full disk, an
    unwritable folder …); the target is then unchanged and no temporary file is left.
    """
    target = Path(target)
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=temporary_prefix(target.name), suffix=".tmp")
    os.close(fd)  # reopened by name: tifffile wants a file object whose ``name`` is a path
    try:
        with open(temporary, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    _sync_folder(target.parent)


def _umask() -> int:
    """The process's umask, read without changing it where ``/proc`` allows."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # no /proc: the classic (not thread-safe) read-and-restore
    os.umask(mask)
    return mask


def _sync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX); a no-op where folders cannot be opened."""
    with contextlib.suppress(OSError, AttributeError):
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
