"""stdout and stderr for the command's progress and messages, written so that they cannot fail.

Progress is advisory: when stdout or stderr cannot be written (a closed pipe such as
``| head -1``, a closed descriptor, a full disk), the run goes on, the stream falls silent, and
stderr says so once if it can. Nothing here imports nst_core, so errors can be reported even
when it cannot be imported.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Callable
from typing import IO, Any


class Output:
    """A text stream that stops being written to, instead of failing, once a write fails.

    ``stream`` is looked up when first used (``sys.stdout`` is ``None`` when the process started
    with descriptor 1 closed). After a failure the descriptor is pointed at ``/dev/null``, so
    that Python's own flush at exit cannot fail again.
    """

    def __init__(self, name: str, stream: Callable[[], IO[str] | None], *, announce: bool) -> None:
        self.name = name
        self._stream = stream
        self._announce = announce
        self.broken = False
        self._lock = threading.Lock()

    def write(self, text: str) -> None:
        with self._lock:  # whole lines, also from several threads (nst-core serve)
            self._write(text)

    def _write(self, text: str) -> None:
        if self.broken:
            return
        stream = self._stream()
        if stream is None:
            return self._fail(stream, "it is closed")
        try:
            stream.write(text)
            stream.flush()
        except (OSError, ValueError) as error:
            self._fail(stream, getattr(error, "strerror", None) or str(error) or type(error).__name__)

    def _fail(self, stream: IO[str] | None, reason: str) -> None:
        self.broken = True
        try:
            descriptor = stream.fileno() if stream is not None else None
            if descriptor is not None:
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, descriptor)
                os.close(null)
        except (OSError, ValueError, AttributeError):
            pass
        if self._announce:
            STDERR.write(f"nst-core: progress on {self.name} stopped ({reason}); the run goes on\n")


STDOUT = Output("stdout", lambda: sys.stdout, announce=True)
STDERR = Output("stderr", lambda: sys.stderr, announce=False)


#: Fields added to every JSON event (``nst-core serve`` tags each request's events with its id).
tags: dict[str, Any] = {}


def emit_json(event: str, **fields: Any) -> None:
    """Write one JSON object, ``{"event": event, **tags, **fields}``, as a line on stdout."""
    STDOUT.write(json.dumps({"event": event, **tags, **fields}, separators=(",", ":")) + "\n")


def say(text: str) -> None:
    """One line for the user on stderr (nothing if stderr is gone)."""
    STDERR.write(text + "\n")
