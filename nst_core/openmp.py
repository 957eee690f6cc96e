"""How PyTorch's CPU threads wait between operations: passively, unless the user says otherwise.

PyTorch's CPU threads are OpenMP threads, and OpenMP's default lets a thread that has finished
its share of an operation spin, waiting for the next. On a quiet machine that saves a few
microseconds; on a shared one (the hosts nst-core runs on, GIMP users' desktops) the spinning
threads take turns away from the threads that have work. Measured on a 2-core AMD EPYC with other
jobs running (``benchmarks/wait_policy.py``): a 512-px instant run took 1.6–2.4 s with 2 threads
and spinning waits, 0.24–0.34 s with passive ones.

OpenMP reads ``OMP_WAIT_POLICY`` once, when it loads (with PyTorch), so this runs when nst-core
is imported; it changes nothing if the variable is set (any value is the user's choice) or if
PyTorch was imported first.
"""

from __future__ import annotations

import os
import sys


def prefer_passive_waits() -> bool:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` for the OpenMP runtime PyTorch will load; ``True`` if set."""
    if "OMP_WAIT_POLICY" in os.environ or "torch" in sys.modules:
        return False
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return True
