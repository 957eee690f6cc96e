"""nst-core keeps freed tensor buffers in the heap (glibc), in Dask workers too, and leaves a
user's malloc settings alone."""

import ctypes
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                                     "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


def large_block_source() -> str:
    """Where this process's malloc serves a 4 MiB block: ``"mmap"`` (glibc's default threshold is
    128 KiB) or ``"heap"``."""
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = _MallInfo2
    libc.malloc.restype = ctypes.c_void_p
    before = libc.mallinfo2().hblks
    block = libc.malloc(4 << 20)
    source = "mmap" if libc.mallinfo2().hblks > before else "heap"
    libc.free(ctypes.c_void_p(block))
    return source


def _served_by(setup: str, **env: str) -> str:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUNABLES"))} | env
    code = f"{setup}\nfrom tests.test_malloc import large_block_source\nprint(large_block_source())"
    done = subprocess.run([sys.executable, "-c", code], env=environment, cwd=Path(__file__).parents[1],
                          capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_glibc_maps_a_large_block_by_default_and_importing_nst_core_keeps_it_in_the_heap():
    assert _served_by("") == "mmap"  # the probe can tell
    assert _served_by("import nst_core") == "heap"


def test_a_users_malloc_setting_is_left_alone_but_can_be_overridden():
    assert _served_by("import nst_core", MALLOC_TRIM_THRESHOLD_="65536") == "mmap"
    assert _served_by("import nst_core", GLIBC_TUNABLES="") == "mmap"
    forced = "import nst_core.malloc as m\nassert m.reuse_freed_memory(override=True)"
    assert _served_by(forced, MALLOC_TRIM_THRESHOLD_="65536") == "heap"
