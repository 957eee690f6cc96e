"""Where a long run's memory goes: glibc's heap, step by step, with the steps' blocks from the heap or mapped.

Since stop 30 the steps of a large, long stage take every block from malloc's heap
(:func:`nst_core.malloc.large_blocks_from_heap`), so that a step reuses what the last one freed.
The heap cannot hand back its holes, and how large it grows depends on where glibc placed the
first steps' blocks. This benchmark runs the command a user runs (``nst-core run PHOTO PAINTING
--size S -n N``) in a child process per run, alternating configurations, and records at each step
the process's RSS, the heap's size (``mallinfo2``) and the most memory in live blocks during the
step (sampled every 10 ms). A child reports its peak RSS, wall time, the heap's size at the end
and the step at which it reached it, the live blocks' peak, and whether the steps took the heap.

Configurations:

* ``auto``: nst-core with glibc's malloc as :mod:`nst_core.malloc` sets it up (the heap where
  :func:`nst_core.optimization._steps_from_heap` says so): the library's default, and the
  command's with ``NST_CORE_MALLOC=system``;
* ``mapped``: the steps' large blocks mapped afresh each step (stop 29's way);
* ``heap``: the heap whatever the stage's size, length and memory budget;
* ``budget=SIZE``: as shipped, with ``--max-memory SIZE``;
* ``trim=MIB``: as shipped, with the heap's top handed back beyond MIB instead of kept
  (:data:`nst_core.malloc.HEAP_TRIM_THRESHOLD`). At 1024×768, 20 steps, one run each: 256 MiB
  peaked at 3093 MB in 150.5 s against 2692 MB in 137.5 s as shipped, so the top stays kept;
* ``mimalloc``: the child runs under Microsoft's mimalloc instead of glibc's malloc
  (``LD_PRELOAD`` of the library that the ``cmeel-mimalloc`` package ships), as the command does
  since stop 34 (:mod:`nst_cli.launch`): mimalloc's defaults, with an hour's purge delay within
  :func:`nst_core.malloc.large_blocks_from_heap`; ``mimalloc=MS`` sets its purge delay for the
  whole run (``MIMALLOC_PURGE_DELAY``: how long freed memory stays resident before it is handed
  back; -1 keeps it). glibc's heap figures are then not the process's, and the table leaves them out.

    python -m benchmarks.heap_trace                              # 1024 px, 20 steps, auto and mapped, twice
    python -m benchmarks.heap_trace --configs auto,budget=3G -n 20 --repeats 1
    python -m benchmarks.heap_trace --size 1024 -n 6 --configs heap --trace
    python -m benchmarks.heap_trace -n 40 --configs auto,mimalloc
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from nst_core.malloc import MIMALLOC_PACKAGE, allocator, mimalloc_library

from .run_benchmark import IMAGES, REPO, describe_machine

DEFAULT_CONFIGS = ("auto", "mapped")
#: Configurations by name, and by prefix with a value.
NAMED_CONFIGS = ("auto", "mapped", "heap", "mimalloc")
VALUED_CONFIGS = ("budget=", "trim=", "mimalloc=")
_MiB = 1 << 20


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def _mallinfo2():
    """glibc's ``mallinfo2`` (2.33 and later), or ``None`` (also where mimalloc serves ``malloc``)."""
    if allocator().startswith("mimalloc"):
        return None
    try:
        function = ctypes.CDLL(None).mallinfo2
    except (OSError, AttributeError):
        return None
    function.restype = _MallInfo2
    return function


def _status_mb(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) // 1024
    return -1


def _configure(config: str) -> list[str]:
    """Set ``config`` up in this (child) process; the command-line arguments it adds."""
    from nst_core import optimization

    if config == "mapped":
        optimization.HEAP_STEPS_MIN_PIXELS = 1 << 62
    elif config == "heap":
        optimization.HEAP_STEPS_MIN_PIXELS = optimization.HEAP_STEPS_MIN_ITERATIONS = 0
        optimization.HEAP_MEMORY_SLACK = 0.0
    elif config.startswith("trim="):  # the heap where shipped, its top handed back beyond this many MiB
        from nst_core import malloc

        malloc.HEAP_TRIM_THRESHOLD = int(config.split("=", 1)[1]) << 20
    elif config.startswith("budget="):
        return ["--max-memory", config.split("=", 1)[1]]
    return []


def _unknown(config: str) -> bool:
    return config not in NAMED_CONFIGS and not config.startswith(VALUED_CONFIGS)


def child(config: str, photo: str, painting: str, size: int, steps: int) -> None:
    """Run the command once with ``config``; print each step's line (``--trace``) and a JSON summary."""
    from nst_cli.main import main as command

    from nst_core import hookimpl, malloc
    from nst_core.plugins import get_plugin_manager

    from .jobs import own_peak_rss_mb

    extra = _configure(config)
    info = _mallinfo2()
    live_peak = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.01):
            now = info()
            live_peak[0] = max(live_peak[0], now.uordblks + now.hblkhd)

    class Trace:
        def __init__(self) -> None:
            self.rows: list[dict] = []

        @hookimpl
        def nst_progress(self, progress) -> None:
            now = info() if info else None
            row = {"step": progress.step, "rss": _status_mb("VmRSS"), "hwm": _status_mb("VmHWM"),
                   "heap": now.arena // _MiB if now else None, "live_peak": live_peak[0] // _MiB,
                   "from_heap": malloc._heap.open > 0}
            live_peak[0] = 0
            self.rows.append(row)
            print("step " + json.dumps(row), file=sys.stderr, flush=True)

    trace = Trace()
    get_plugin_manager().register(trace, name="heap_trace")
    if info:
        threading.Thread(target=sample, daemon=True).start()
    folder = tempfile.mkdtemp(prefix="nst-heap-trace-")
    started = time.perf_counter()
    try:
        code = command(["run", photo, painting, "-o", os.path.join(folder, "result.png"),
                        "--size", str(size), "-n", str(steps), "--quiet", *extra])
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    wall = time.perf_counter() - started
    stop.set()
    rows = trace.rows
    heaps = [row["heap"] for row in rows if row["heap"] is not None]
    final = heaps[-1] if heaps else None
    print(json.dumps({
        "config": config, "exit": code, "peak_rss_mb": round(own_peak_rss_mb()),
        "wall_s": round(wall, 1), "steps": len(rows), "heap_end_mb": final,
        "heap_settled_at": next((row["step"] for row in rows if row["heap"] == final), None) if heaps else None,
        "live_peak_mb": max((row["live_peak"] for row in rows[1:]), default=None) if info else None,
        "from_heap": any(row["from_heap"] for row in rows),
    }))


def _child_environment(config: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "plugins" / "cli"), os.environ.get("PYTHONPATH", "")])
    if config.startswith("mimalloc"):
        env["LD_PRELOAD"] = mimalloc_library()
        if "=" in config:
            env["MIMALLOC_PURGE_DELAY"] = config.split("=", 1)[1]
    return env


def run_child(config: str, args: argparse.Namespace) -> dict:
    env = _child_environment(config)
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.heap_trace", "--child", config, "--photo", args.photo,
         "--painting", args.painting, "--size", str(args.size), "-n", str(args.steps)],
        cwd=REPO, env=env, capture_output=True, text=True, check=True)
    if args.trace:
        print("\n".join(line for line in done.stderr.splitlines() if line.startswith("step ")), flush=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photo", default=str(IMAGES / "tubingen.jpg"))
    parser.add_argument("--painting", default=str(IMAGES / "starry_night.jpg"))
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("-n", "--steps", type=int, default=20)
    parser.add_argument("--configs", default=",".join(DEFAULT_CONFIGS))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--trace", action="store_true", help="print every step's line")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.photo, args.painting, args.size, args.steps)
        return 0
    configs = args.configs.split(",")
    for config in filter(_unknown, configs):
        parser.error(f"unknown configuration {config!r}: auto, mapped, heap, budget=SIZE, trim=MIB, mimalloc "
                     "or mimalloc=MS")
    if any(config.startswith("mimalloc") for config in configs) and not mimalloc_library():
        parser.error(f"the mimalloc configurations need the {MIMALLOC_PACKAGE} package: pip install -e .")
    machine = describe_machine()
    print(f"# {machine['cpu']} ({', '.join(machine['flags'])}), {machine['cores']} cores, torch {machine['torch']}; "
          f"{os.path.basename(args.photo)} x {os.path.basename(args.painting)}, {args.size} px, {args.steps} steps",
          flush=True)
    results: dict[str, list[dict]] = {config: [] for config in configs}
    for _ in range(args.repeats):
        for config in configs:  # alternating, so that a busy neighbour hits every configuration
            result = run_child(config, args)
            results[config].append(result)
            print(json.dumps(result), flush=True)
    columns = ("configuration", "steps from the heap", "peak RSS (MB)", "wall (s)", "heap at the end (MB)",
               "settled at step", "live peak (MB)")
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for config, runs in results.items():
        def values(key):
            return ", ".join(str(run[key]) for run in runs)
        median = statistics.median(run["peak_rss_mb"] for run in runs)
        cells = (config, values("from_heap"), f"{values('peak_rss_mb')} (median {median:.0f})", values("wall_s"),
                 values("heap_end_mb"), values("heap_settled_at"), values("live_peak_mb"))
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
