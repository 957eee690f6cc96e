"""How the C library hands memory back: keep freed tensor buffers for the next step.

A step allocates and frees the same few hundred buffers every time (activations, their gradients,
Gram matrices). glibc's ``malloc`` serves blocks of 128 KiB and more with ``mmap`` and returns
them to the system on ``free``; it raises that threshold as it sees large blocks freed (up to
32 MiB), but only while nobody has set a malloc tunable. Dask's nanny sets one for every worker
it spawns (``MALLOC_TRIM_THRESHOLD_=65536``), which freezes the threshold at 128 KiB: each step
then maps, zero-fills and unmaps every buffer again. Measured on a 2-core AMD EPYC (AVX2, fp32,
VGG-19 forward and input gradient at 512×384, 2 threads): 2.3–2.9 s a pass with Dask's setting,
2.0–2.5 s with glibc's defaults, 1.8–2.1 s with the thresholds set here
(``python -m benchmarks.wait_policy --compare malloc`` compares them on whole runs).

:func:`reuse_freed_memory` sets the ``mmap`` threshold to glibc's maximum (32 MiB) and the trim
threshold to twice that, what glibc's own adjustment reaches on a run, from the start, and keeps
every thread in one heap (:data:`ARENA_MAX`). It runs when nst-core is imported unless the user
chose malloc settings (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``,
``MALLOC_ARENA_MAX`` or ``GLIBC_TUNABLES`` in the environment, any value), and always in a
Dask worker (:mod:`nst_core.cluster_worker`), where the setting is Dask's, not the user's. Other C
libraries are left alone.

Buffers above the threshold are still mapped afresh each time; :func:`huge_pages_for_tensors`
asks PyTorch to back them with transparent huge pages, which the kernel fills in far fewer faults.
Within :func:`large_blocks_from_heap` (the steps of a large image's long optimization) malloc
serves them from its heap too, so that a step reuses the previous step's memory instead of having
it zero-filled.

The ``nst-core`` command runs under Microsoft's mimalloc (MIT licence) instead, where the package
``cmeel-mimalloc`` installed its library (a dependency on Linux x86-64 and aarch64): the command
starts itself again with the library in ``LD_PRELOAD`` (:func:`preload_environment`, used by
:mod:`nst_cli.launch`). mimalloc keeps freed blocks of every size in per-size pages and hands
memory back a second after it is freed (its purge delay). Measured with the command as shipped on
a 2-core AMD EPYC (AVX2, fp32, Winograd's convolutions, 40 steps, alternating runs): at 1024×768
2576 and 2577 MB peak RSS against glibc's 2991 and 2696 MB in about the same time; at 512 px
3–7 % less on three pairs. Nothing here changes glibc's settings where mimalloc serves ``malloc``.

This module imports only the standard library: :mod:`nst_cli.launch` loads it on its own, before
anything imports PyTorch.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import sys
import threading
from collections.abc import Iterator

#: ``mallopt`` parameters (glibc's ``malloc.h``).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
_M_MMAP_MAX = -4
#: glibc's default ``M_MMAP_MAX``: how many blocks it may map at once.
MMAP_MAX = 65536
#: The trim threshold within :func:`large_blocks_from_heap`: the largest ``mallopt`` takes.
HEAP_TRIM_THRESHOLD = 2**31 - 1
#: glibc's largest ``mmap`` threshold on 64-bit systems (``DEFAULT_MMAP_THRESHOLD_MAX``).
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD
#: Heaps ("arenas") malloc may keep: one. A thread that allocates while another does gets an arena
#: of its own, whose free blocks the other threads never reuse; how many and when depends on
#: timing. With one, a 512×512 run's peak RSS was 1423–1479 MB (two runs with and two without
#: huge pages) against 1494–1557 MB (AMD EPYC, 2 cores, Winograd's convolutions).
ARENA_MAX = 1
#: Environment variables by which a user sets glibc's malloc themselves.
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_ARENA_MAX", "GLIBC_TUNABLES")

#: The package that ships mimalloc's library, and where in it the library lies.
MIMALLOC_PACKAGE, MIMALLOC_LIBRARY = "cmeel-mimalloc", "lib/libmimalloc.so"
#: The variable by which a user chooses the command's allocator: ``system`` keeps the C library's
#: ``malloc`` (with the settings above), ``mimalloc`` (or unset) asks for mimalloc.
ALLOCATOR_SETTING = "NST_CORE_MALLOC"
ALLOCATORS = ("mimalloc", "system")
#: mimalloc's own variable for its purge delay: set, nst-core leaves the delay as the user chose.
MIMALLOC_USER_SETTING = "MIMALLOC_PURGE_DELAY"
#: mimalloc 3's ``mi_option_purge_delay`` (``mimalloc.h``'s ``mi_option_e``): milliseconds before
#: freed memory is handed back to the system; -1 never.
_MI_OPTION_PURGE_DELAY = 15
#: mimalloc's purge delay within :func:`large_blocks_from_heap`: an hour, longer than any stage, so
#: that a step reuses what the last one freed. Not -1 ("never"): memory freed while purging is off
#: is never purged afterwards, not even by ``mi_collect``; freed memory scheduled an hour ahead is
#: handed back by ``mi_collect(True)`` on exit (measured with mimalloc 3.4.3).
HEAP_PURGE_DELAY_MS = 3_600_000
#: The first mimalloc version (``mi_version()``: 3.0.0, numbered major, two digits minor, two digits
#: patch; 2.x had one digit each) whose options are numbered as :data:`_MI_OPTION_PURGE_DELAY` assumes.
_MIMALLOC_OPTIONS_SINCE = 30000


def _libc() -> ctypes.CDLL:
    """The C library, with ``mallopt``'s and ``malloc_trim``'s signatures."""
    libc = ctypes.CDLL(None)
    libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    libc.mallopt.restype = ctypes.c_int
    libc.malloc_trim.argtypes = (ctypes.c_size_t,)
    return libc


def mimalloc_library() -> str | None:
    """The path of the mimalloc library that :data:`MIMALLOC_PACKAGE` installed, or ``None``."""
    import importlib.metadata

    try:
        files = importlib.metadata.distribution(MIMALLOC_PACKAGE).files or ()
    except importlib.metadata.PackageNotFoundError:
        return None
    found = [str(file.locate()) for file in files if str(file).endswith(MIMALLOC_LIBRARY)]
    return next((path for path in found if os.path.isfile(path)), None)


def chosen_allocator(environ: dict[str, str] | os._Environ) -> str:
    """The allocator :data:`ALLOCATOR_SETTING` asks for (the first of :data:`ALLOCATORS` where unset
    or empty); any other value is returned as it is, for the caller to reject."""
    return environ.get(ALLOCATOR_SETTING) or ALLOCATORS[0]


def preload_environment(environ: dict[str, str] | os._Environ) -> dict[str, str] | None:
    """``environ`` with mimalloc's library in ``LD_PRELOAD``, for a process that should start again
    under it; ``None`` where it should not.

    Not where: the system is not Linux with glibc; ``LD_PRELOAD`` is set already (the user's, or
    this one); the user chose malloc settings (:data:`USER_SETTINGS`) or the system allocator
    (:data:`ALLOCATOR_SETTING`); the library is not installed.
    """
    if chosen_allocator(environ) != "mimalloc" or environ.get("LD_PRELOAD"):
        return None
    if any(name in environ for name in USER_SETTINGS) or not _glibc():
        return None
    library = mimalloc_library()
    return None if library is None else {**environ, "LD_PRELOAD": library}


def _glibc() -> bool:
    return platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def _mimalloc() -> ctypes.CDLL | None:
    """This process's mimalloc where it serves ``malloc`` (its functions are global: preloaded or
    linked in), with the signatures used here; else ``None``."""
    try:
        found = ctypes.CDLL(None)
        found.mi_version.restype = ctypes.c_int
    except (OSError, AttributeError):
        return None
    found.mi_option_get.argtypes = (ctypes.c_int,)
    found.mi_option_get.restype = ctypes.c_long
    found.mi_option_set.argtypes = (ctypes.c_int, ctypes.c_long)
    found.mi_collect.argtypes = (ctypes.c_bool,)
    return found


def allocator() -> str:
    """Which ``malloc`` serves this process: ``mimalloc X.Y.Z``, ``glibc`` or the C library's name."""
    mimalloc = _mimalloc()
    if mimalloc is not None:
        version = mimalloc.mi_version()
        digits = 100 if version >= _MIMALLOC_OPTIONS_SINCE else 10
        return f"mimalloc {version // digits**2}.{version // digits % digits}.{version % digits}"
    return platform.libc_ver()[0] or platform.system()


def reuse_freed_memory(*, override: bool = False) -> bool:
    """Set glibc's ``mmap`` and trim thresholds and its arena count for a tensor workload; ``True`` if set.

    Without ``override`` nothing changes when the environment holds a malloc setting of the
    user's (:data:`USER_SETTINGS`). Nothing changes off glibc, or where mimalloc serves ``malloc``:
    then :func:`large_blocks_from_heap` sets mimalloc's purge delay instead (mimalloc 3 and later),
    unless the user set it (:data:`MIMALLOC_USER_SETTING`) and there is no ``override``.
    """
    mimalloc = _mimalloc()
    if mimalloc is not None:
        users = MIMALLOC_USER_SETTING in os.environ and not override
        ours = mimalloc.mi_version() >= _MIMALLOC_OPTIONS_SINCE and not users
        _heap.ours = "mimalloc" if ours else ""
        return False
    if not override and any(name in os.environ for name in USER_SETTINGS):
        return False
    if not _glibc():
        return False
    try:
        mallopt = _libc().mallopt
    except (OSError, AttributeError):
        return False
    ours = all([mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD), mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD),
                mallopt(_M_ARENA_MAX, ARENA_MAX)])
    _heap.ours = "glibc" if ours else ""
    return ours


class _HeapState:
    """Which allocator's settings nst-core manages (``glibc``, ``mimalloc`` or ``""``: none), how
    many :func:`large_blocks_from_heap` are open, and mimalloc's purge delay before the first."""

    def __init__(self) -> None:
        self.ours = ""
        self.open = 0
        self.purge_delay = 0
        self.lock = threading.Lock()


_heap = _HeapState()


def _set_heap_only(on: bool) -> None:
    if _heap.ours == "mimalloc":
        mimalloc = _mimalloc()
        if on:
            _heap.purge_delay = mimalloc.mi_option_get(_MI_OPTION_PURGE_DELAY)
        mimalloc.mi_option_set(_MI_OPTION_PURGE_DELAY, HEAP_PURGE_DELAY_MS if on else _heap.purge_delay)
        if not on:
            mimalloc.mi_collect(True)  # hand the freed memory back now
        return
    libc = _libc()
    libc.mallopt(_M_MMAP_MAX, 0 if on else MMAP_MAX)
    libc.mallopt(_M_TRIM_THRESHOLD, HEAP_TRIM_THRESHOLD if on else TRIM_THRESHOLD)
    libc.malloc_trim(0)  # on: start from a compact heap; off: hand the freed memory back


@contextlib.contextmanager
def large_blocks_from_heap() -> Iterator[bool]:
    """Within: malloc serves blocks of every size from its heap and keeps what is freed; yields
    whether it does (only where :func:`reuse_freed_memory` set malloc up, or mimalloc serves it:
    then its purge delay is :data:`HEAP_PURGE_DELAY_MS` within, so that it keeps freed memory too).

    Blocks above the ``mmap`` threshold are otherwise mapped afresh at every step and zero-filled
    by the kernel: at 1024×768 that is most of a step's 6 GB of allocations, and 10–12 s of kernel
    time in 6 steps (AMD EPYC, 2 cores). From the heap, a step reuses what the last one freed.
    The heap cannot hand back holes between blocks in use, so peak RSS can be higher; the heap is
    trimmed on entry (what setting up the run left) and on exit (the run's memory goes back, for a
    process that lives on: ``nst-core serve``, batch workers). Nested and concurrent uses share one
    setting, which holds until the last one exits.
    """
    with _heap.lock:
        active = bool(_heap.ours)
        if active:
            _heap.open += 1
            if _heap.open == 1:
                _set_heap_only(True)
    try:
        yield active
    finally:
        if active:
            with _heap.lock:
                _heap.open -= 1
                if _heap.open == 0:
                    _set_heap_only(False)


#: PyTorch's switch for transparent huge pages in its CPU allocator (read once, at its first
#: allocation): buffers of 2 MiB and more are aligned and ``madvise``d ``MADV_HUGEPAGE``.
HUGE_PAGES_SETTING = "THP_MEM_ALLOC_ENABLE"


def huge_pages_for_tensors() -> bool:
    """Set ``THP_MEM_ALLOC_ENABLE=1`` for the PyTorch about to load; ``True`` if set.

    Buffers larger than the mmap threshold (32 MiB: VGG's first block from about 384×384 px, its
    first three blocks at 1024×768) are still mapped afresh for every step, and the kernel
    zero-fills them a 4 KiB page at a time. Huge pages make that 512 faults instead of 262 144
    per GiB. Measured on a 2-core AMD EPYC (AVX2, fp32, Winograd's convolutions, alternating runs
    of 5 steps): 6.9–7.1 s a step at 1024×768 against 7.3–7.8 s, 1.92 against 2.03 s at 512×384.
    Peak RSS was 0–100 MB higher at 512 px (partly used huge pages in the heap) and 86 MB lower in
    a 1024×768 run.
    Changes nothing where the kernel offers no transparent huge pages, if the variable is set
    (any value is the user's choice) or if PyTorch was imported first.
    """
    if HUGE_PAGES_SETTING in os.environ or "torch" in sys.modules:
        return False
    os.environ[HUGE_PAGES_SETTING] = "1"
    return True
