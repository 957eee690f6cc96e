"""Pieces of one-line error messages: paths shown safely, exceptions shortened to a reason.

Every user-facing error of nst-core is one line that names the file; a path can hold newlines or
other control characters, and an exception's text can run over many lines, so both pass through
here before they go into a message.
"""

from __future__ import annotations

import os
import re
from typing import Any

__all__ = ["first_line", "quote_path", "short_reason", "show_path"]


def show_path(path: Any) -> str:
    """A path (``str``, ``bytes`` or path-like) as one line of text, control characters escaped."""
    text = os.fsdecode(path) if isinstance(path, (bytes, os.PathLike)) else str(path)
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def quote_path(path: Any) -> str:
    """:func:`show_path` in single quotes: ``'photo.jpg'``."""
    return f"'{show_path(path)}'"


def first_line(error: BaseException) -> str:
    """The first line of an exception's message, shortened to 120 characters, or its type name."""
    lines = str(error).strip().splitlines()
    text = lines[0].strip() if lines else ""
    if not text:
        return type(error).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def short_reason(error: BaseException) -> str:
    """A short, one-line reason for an exception: the system's words for a failed call if any.

    ``strerror`` of an :class:`OSError`, the ``reason`` of a ``urllib.error.URLError``, else the
    message; whitespace collapsed, terminal colour codes removed, at most 160 characters.
    """
    reason = getattr(error, "reason", None)  # urllib.error.URLError
    if isinstance(error, OSError) and error.strerror and not reason:
        text = error.strerror
    elif reason is not None and not isinstance(reason, str):
        text = str(getattr(reason, "strerror", None) or reason)
    else:
        text = str(reason or error)
    text = " ".join(text.split())
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    if not text:
        text = type(error).__name__
    return text if len(text) <= 160 else text[:157] + "..."
