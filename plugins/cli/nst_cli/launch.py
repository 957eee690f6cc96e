"""The ``nst-core`` command's entry point: start again under mimalloc, then run the command.

Before anything imports PyTorch, the process replaces itself (``execve``, same process id, same
arguments and streams) with one whose ``LD_PRELOAD`` holds mimalloc's library
(:func:`nst_core.malloc.preload_environment` says whether and with what: not where the user set
``LD_PRELOAD`` or malloc settings, chose ``NST_CORE_MALLOC=system``, or the library is missing).
That costs one more interpreter start (about 0.1 s). The time the first one started travels in
:data:`STARTED_SETTING`, so that a time budget still counts from the command's start.

Only the command starts again; :func:`nst_cli.main.main` called in a process of one's own does not.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from pathlib import Path
from types import ModuleType

#: Where the first process leaves the ``time.perf_counter()`` it started at (a monotonic clock that
#: the whole system shares on Linux).
STARTED_SETTING = "_NST_CORE_STARTED"


def started() -> float:
    """When this command started: the first process's start where it started again, else now."""
    now = time.perf_counter()
    try:
        first = float(os.environ.pop(STARTED_SETTING))
    except (KeyError, ValueError):
        return now
    return first if 0 <= now - first < 60 else now


def _malloc_module() -> ModuleType | None:
    """:mod:`nst_core.malloc` loaded on its own: importing the package would import PyTorch."""
    package = importlib.util.find_spec("nst_core")
    folders = list(package.submodule_search_locations or ()) if package else []
    path = next((Path(folder) / "malloc.py" for folder in folders if (Path(folder) / "malloc.py").is_file()), None)
    if path is None:
        return None
    spec = importlib.util.spec_from_file_location("_nst_core_malloc_for_launch", path)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def start_under_mimalloc(started_at: float) -> None:
    """Replace this process with the same command under mimalloc, where it should; else return."""
    if not hasattr(os, "execve") or not getattr(sys, "orig_argv", None):
        return
    malloc = _malloc_module()
    environment = malloc.preload_environment(os.environ) if malloc else None
    if environment is None:
        return
    environment[STARTED_SETTING] = repr(started_at)
    try:  # nothing is written before: no buffer to flush (and stdout may be closed)
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], environment)
    except OSError:
        return  # run on as it is


def main() -> None:
    """The console script ``nst-core`` and ``python -m nst_cli``."""
    first = time.perf_counter()
    if STARTED_SETTING not in os.environ:
        start_under_mimalloc(first)
    from .main import main as run

    sys.exit(run())
