"""nst-core keeps freed tensor buffers in the heap (glibc, or mimalloc for the command), in Dask workers
too, and leaves a user's malloc settings alone."""

import ctypes
import json
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


def large_block_source(size: int = 4 << 20) -> str:
    """Where this process's malloc serves a block of ``size`` bytes (4 MiB): ``"mmap"`` (glibc's
    default threshold is 128 KiB) or ``"heap"``."""
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = _MallInfo2
    libc.malloc.restype = ctypes.c_void_p
    before = libc.mallinfo2().hblks
    block = libc.malloc(size)
    source = "mmap" if libc.mallinfo2().hblks > before else "heap"
    libc.free(ctypes.c_void_p(block))
    return source


def _printed(code: str, *, without: tuple[str, ...] = ("THP_MEM_ALLOC_ENABLE",), **env: str) -> str:
    """What ``code`` prints in a new Python whose environment lacks the variables whose names start
    with ``without`` (by default the huge-pages switch) and holds ``env``."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(without)} | env
    done = subprocess.run([sys.executable, "-c", code], env=environment, cwd=Path(__file__).parents[1],
                          capture_output=True, text=True, check=True, timeout=120)
    return done.stdout.strip()


#: The environment variables that set malloc (a test's own ``env`` aside).
MALLOC_SETTINGS = ("MALLOC_", "GLIBC_TUNABLES")


def _served_by(setup: str, **env: str) -> str:
    code = f"{setup}\nfrom tests.test_malloc import large_block_source\nprint(large_block_source())"
    return _printed(code, without=MALLOC_SETTINGS, **env)


def test_glibc_maps_a_large_block_by_default_and_importing_nst_core_keeps_it_in_the_heap():
    assert _served_by("") == "mmap"  # the probe can tell
    assert _served_by("import nst_core") == "heap"


def test_a_users_malloc_setting_is_left_alone_but_can_be_overridden():
    assert _served_by("import nst_core", MALLOC_TRIM_THRESHOLD_="65536") == "mmap"
    assert _served_by("import nst_core", GLIBC_TUNABLES="") == "mmap"
    forced = "import nst_core.malloc as m\nassert m.reuse_freed_memory(override=True)"
    assert _served_by(forced, MALLOC_TRIM_THRESHOLD_="65536") == "heap"


def test_importing_nst_core_asks_pytorch_for_huge_pages_unless_told_otherwise():
    setting = "import os; print(os.environ.get('THP_MEM_ALLOC_ENABLE'))"
    assert _printed(f"import nst_core; {setting}") == "1"
    assert _printed(f"import nst_core; {setting}", THP_MEM_ALLOC_ENABLE="0") == "0"  # the user's
    assert _printed(f"import torch; import nst_core; {setting}") == "None"  # too late to matter


def _transparent_huge_pages() -> str:
    try:
        modes = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return "never"
    return modes.split("[", 1)[1].split("]", 1)[0] if "[" in modes else "never"


@pytest.mark.skipif(_transparent_huge_pages() == "never", reason="the kernel offers no transparent huge pages")
def test_a_large_tensor_lies_in_huge_pages():
    code = (
        "import nst_core, torch\n"
        "def huge():\n"
        "    for line in open('/proc/self/smaps_rollup'):\n"
        "        if line.startswith('AnonHugePages:'):\n"
        "            return int(line.split()[1])\n"
        "before = huge()\n"
        "tensor = torch.ones(64 << 18)\n"  # 64 MiB, filled
        "print(huge() - before)\n"
    )
    assert int(_printed(code)) >= 32 << 10  # kB: at least half of it


def test_importing_nst_core_keeps_other_threads_in_the_main_heap():
    # a block malloc serves a new thread lies in the main heap (below the program break) only when
    # threads share one arena; by default a thread that allocates gets a heap of its own
    code = (
        "{setup}\n"
        "import ctypes, threading\n"
        "libc = ctypes.CDLL(None)\n"
        "libc.malloc.restype = ctypes.c_void_p\n"
        "libc.sbrk.restype = ctypes.c_void_p\n"
        "libc.sbrk.argtypes = (ctypes.c_long,)\n"
        "found = []\n"
        "threading.Thread(target=lambda: found.append(libc.malloc(1 << 20))).start()\n"
        "import time; time.sleep(0.5)\n"
        "print('main' if found[0] < libc.sbrk(0) else 'own')\n"
    )
    assert _printed(code.format(setup="")) == "own"  # the probe can tell
    assert _printed(code.format(setup="import nst_core")) == "main"


_HEAP_STEPS = """
import ctypes
import nst_core.malloc as m
from tests.test_malloc import large_block_source as source

def rss_mb():
    return int(open('/proc/self/status').read().split('VmRSS:')[1].split()[0]) // 1024

big = 64 << 20  # above the 32 MiB mmap threshold
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
out = [source(big)]
with m.large_blocks_from_heap() as on:
    out += [str(on), source(big)]
    with m.large_blocks_from_heap():
        pass
    out.append(source(big))  # the inner one's exit leaves the setting to the outer one
    block = libc.malloc(256 << 20)
    ctypes.memset(block, 1, 256 << 20)
    libc.free(ctypes.c_void_p(block))
    kept = rss_mb()
out += [source(big), str(kept - rss_mb() >= 200)]  # freed memory kept within, handed back on exit
print(' '.join(out))
"""


def test_large_blocks_come_from_the_heap_within_and_go_back_after():
    assert _printed(_HEAP_STEPS, without=MALLOC_SETTINGS) == "mmap True heap heap mmap True"
    users = _printed(_HEAP_STEPS, without=MALLOC_SETTINGS, MALLOC_ARENA_MAX="2")  # the user's setting: left alone
    assert users.split()[:5] == ["mmap", "False", "mmap", "mmap", "mmap"]


def test_a_large_long_stage_takes_its_steps_with_blocks_from_the_heap(random_weights, small_pair, monkeypatch):
    from nst_core import Config, hookimpl, malloc, optimization, stylize

    if not malloc._heap.ours:
        pytest.skip("malloc's settings are this environment's, not nst-core's")

    class Probe:
        def __init__(self):
            self.during = []

        @hookimpl
        def nst_progress(self, progress):
            self.during.append(large_block_source(64 << 20))

    content, style = small_pair
    # two steps of a 48x48 stage: from the heap only where both thresholds let them and the memory
    # budget has room for the heap's slack (a step's bytes times the share) besides the plan
    cases = ((1, 2, 0.5, "heap"), (10**9, 2, 0.5, "mmap"), (1, 3, 0.5, "mmap"), (1, 2, 10**6, "mmap"))
    for least_pixels, least_steps, slack, expected in cases:
        monkeypatch.setattr(optimization, "HEAP_STEPS_MIN_PIXELS", least_pixels)
        monkeypatch.setattr(optimization, "HEAP_STEPS_MIN_ITERATIONS", least_steps)
        monkeypatch.setattr(optimization, "HEAP_MEMORY_SLACK", slack)
        probe = Probe()
        stylize(content, [style], config=Config(size=48, iterations=2), plugins=[probe])
        assert probe.during == [expected, expected]
        assert large_block_source(64 << 20) == "mmap"  # back once the steps end


_MIMALLOC_STEPS = """
import ctypes, time
import nst_core.malloc as m

def rss_mb():
    return int(open('/proc/self/status').read().split('VmRSS:')[1].split()[0]) // 1024

mi = m._mimalloc()
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
delay = lambda: str(mi.mi_option_get(m._MI_OPTION_PURGE_DELAY))
out = [m.allocator().split()[0], m._heap.ours or "-", delay()]
with m.large_blocks_from_heap() as on:
    out += [str(on), delay()]
    before = rss_mb()
    for _ in range(3):  # a few steps' worth of large blocks, freed
        blocks = [libc.malloc(n << 20) for n in (90, 40, 7)]
        for block, n in zip(blocks, (90, 40, 7)):
            ctypes.memset(block, 1, n << 20)
        for block in blocks:
            libc.free(ctypes.c_void_p(block))
    time.sleep(0.2)
    kept = rss_mb()
out += [delay(), str(kept - before >= 100), str(kept - rss_mb() >= 100)]  # kept within, handed back on exit
print(' '.join(out))
"""


@pytest.fixture
def mimalloc_library():
    from nst_core.malloc import mimalloc_library

    library = mimalloc_library()
    if library is None:
        pytest.skip("cmeel-mimalloc is not installed (it is a dependency on Linux x86-64 and aarch64)")
    return library


def test_under_mimalloc_large_blocks_stay_resident_within_and_go_back_after(mimalloc_library):
    from nst_core.malloc import HEAP_PURGE_DELAY_MS

    env = {"LD_PRELOAD": mimalloc_library}
    name, ours, default, *rest = _printed(_MIMALLOC_STEPS, without=(*MALLOC_SETTINGS, "MIMALLOC_"), **env).split()
    assert (name, ours) == ("mimalloc", "mimalloc")
    assert rest == ["True", str(HEAP_PURGE_DELAY_MS), default, "True", "True"]
    # mimalloc's own variable sets the option nst_core.malloc reads (its number is right), and a
    # delay the user chose is left alone
    users = _printed(_MIMALLOC_STEPS, without=(*MALLOC_SETTINGS, "MIMALLOC_"), MIMALLOC_PURGE_DELAY="1234", **env)
    assert users.split()[:6] == ["mimalloc", "-", "1234", "False", "1234", "1234"]


def _command_allocator(small_files, output, **env) -> str:
    from tests.test_cli import NST_CORE

    environment = {k: v for k, v in os.environ.items() if not k.startswith((*MALLOC_SETTINGS, "LD_PRELOAD"))}
    done = subprocess.run([str(NST_CORE), "run", *map(str, small_files), "-o",
                           str(output), "--size", "32", "-n", "1", "--progress", "json"],
                          env=environment | env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert output.is_file()
    return json.loads(done.stdout.splitlines()[-1])["info"]["allocator"].split()[0]


def test_the_command_runs_under_mimalloc_unless_the_user_chose_malloc(
        mimalloc_library, random_weights, small_files, tmp_path):
    assert _command_allocator(small_files, tmp_path / "a.png") == "mimalloc"
    assert _command_allocator(small_files, tmp_path / "b.png", NST_CORE_MALLOC="system") == "glibc"
    assert _command_allocator(small_files, tmp_path / "c.png", MALLOC_ARENA_MAX="2") == "glibc"  # glibc's, set


def test_an_unknown_allocator_is_a_one_line_error(tmp_path):
    from tests.test_cli import one_line_error, run_cli

    proc = run_cli("run", tmp_path / "c.png", tmp_path / "s.png", "-o", tmp_path / "o.png",
                   env={"NST_CORE_MALLOC": "jemalloc"})
    assert "NST_CORE_MALLOC must be mimalloc or system, not 'jemalloc'" in one_line_error(proc, 2)
    assert "NST_CORE_MALLOC=system" in run_cli("--help").stdout  # the way back is in the help


def test_a_time_budget_counts_from_the_commands_first_start(monkeypatch):
    import time

    from nst_cli import launch

    first = time.perf_counter() - 5.0
    monkeypatch.setenv(launch.STARTED_SETTING, repr(first))
    assert launch.started() == first
    assert launch.STARTED_SETTING not in os.environ  # not passed on to the command's children
    for nonsense in ("soon", repr(time.perf_counter() + 100), repr(first - 3600)):
        monkeypatch.setenv(launch.STARTED_SETTING, nonsense)
        assert time.perf_counter() - launch.started() < 1.0
