"""How PyTorch's threads wait, on a quiet and on a busy machine: OpenMP's ``OMP_WAIT_POLICY``.

PyTorch's CPU threads are OpenMP threads. By default a thread that has finished its share of an
operation spins for a while waiting for the next one; on a shared 2-core host whose other
processes want the cores, spinning threads take turns away from the ones with work, and a
2-thread run can be several times slower than a 1-thread run. ``OMP_WAIT_POLICY=PASSIVE`` makes
them sleep instead. nst-core sets it (unless it is set already) before PyTorch loads
(:mod:`nst_core.openmp`); this benchmark measures what that changes.

Each configuration runs in its own process (the policy is read once, when OpenMP loads), in
alternation, ``--repeats`` times, each timing:

* the instant method on a 512-px and a 1024-px photo (median of 5 passes);
* one optimization step at 384 px (fp32, median of steps 2–6).

with and without ``--busy N`` processes that spin on the cores alongside (a neighbour).

``--compare malloc`` times the same with glibc's malloc settings instead (:mod:`nst_core.malloc`):
glibc's default (``GLIBC_TUNABLES`` set empty, so nst-core leaves malloc alone), a Dask worker's
(``MALLOC_TRIM_THRESHOLD_=65536``), and nst-core's.

    python -m benchmarks.wait_policy                    # quiet and with 2 busy neighbours (~5 min)
    python -m benchmarks.wait_policy --busy 0,2,4
    python -m benchmarks.wait_policy --compare malloc --busy 0
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from .run_benchmark import IMAGES, REPO

#: The child loads PyTorch before nst-core, so that nst-core's own setting does not apply: without
#: ``OMP_WAIT_POLICY`` OpenMP spins a while, then sleeps.
COMPARISONS = {
    "wait": {"OpenMP's default": {}, "passive (nst-core's)": {"OMP_WAIT_POLICY": "PASSIVE"}},
    "malloc": {"glibc's default": {"GLIBC_TUNABLES": ""}, "a Dask worker's": {"MALLOC_TRIM_THRESHOLD_": "65536"},
               "nst-core's": {}},
}
#: Variables a configuration's own replace.
_SETTINGS = ("OMP_WAIT_POLICY", "GLIBC_TUNABLES", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")


def child() -> None:
    """Run in a child process: the timings, as one JSON line."""
    import torch  # before nst-core: OpenMP reads its policy from the environment as it loads

    from nst_core import Config, stylize
    from nst_core.image import load_image

    from .step_cost import StepClock

    photo = load_image(IMAGES / "tubingen.jpg").rgb
    painting = load_image(IMAGES / "starry_night.jpg").rgb
    timings = {"threads": torch.get_num_threads()}
    for size in (512, 1024):
        config = Config(method="instant", size=size)
        stylize(photo, [painting], config=config)
        runs = []
        for _ in range(5):
            began = time.perf_counter()
            stylize(photo, [painting], config=config)
            runs.append(time.perf_counter() - began)
        timings[f"instant {size} px"] = statistics.median(runs)

    clock = StepClock(profile=False)
    stylize(photo, [painting], config=Config(size=384, iterations=6, precision="fp32", memory_format="contiguous"),
            plugins=[clock])
    timings["optimize step 384 px"] = clock.step_seconds()
    print(json.dumps(timings), flush=True)


def spin(stop) -> None:
    while not stop.is_set():
        sum(range(10_000))


def run_child(settings: dict[str, str]) -> dict:
    env = {key: value for key, value in os.environ.items() if key not in _SETTINGS} | settings
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    done = subprocess.run([sys.executable, "-m", "benchmarks.wait_policy", "--child"], cwd=REPO, env=env,
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--busy", default="0,2", help="numbers of spinning neighbour processes (comma-separated)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compare", choices=tuple(COMPARISONS), default="wait")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None, help="default: benchmarks/out/wait_policy[-malloc]")
    args = parser.parse_args(argv)
    if args.child:
        child()
        return 0
    from .run_benchmark import describe_machine

    machine = describe_machine()
    print(f"machine: {machine['cpu']} ({', '.join(machine['flags'])}), {machine['cores']} cores", flush=True)
    results = []
    for busy in (int(b) for b in args.busy.split(",")):
        stop = multiprocessing.Event()
        neighbours = [multiprocessing.Process(target=spin, args=(stop,), daemon=True) for _ in range(busy)]
        for process in neighbours:
            process.start()
        try:
            configurations = COMPARISONS[args.compare]
            runs: dict[str, list[dict]] = {label: [] for label in configurations}
            for _ in range(args.repeats):
                for label, settings in configurations.items():
                    runs[label].append(run_child(settings))
        finally:
            stop.set()
            for process in neighbours:
                process.join()
        for label, timings in runs.items():
            row = {"busy": busy, "configuration": label}
            for key in timings[0]:
                if key != "threads":
                    values = [t[key] for t in timings]
                    row[key] = values
            results.append(row)
            cells = "  ".join(f"{key} {statistics.median(v):.3f} s ({min(v):.3f}–{max(v):.3f})"
                              for key, v in row.items() if isinstance(v, list))
            print(f"{busy} busy  {label:24} {cells}", flush=True)
    out = args.out or REPO / "benchmarks" / "out" / ("wait_policy" + ("" if args.compare == "wait" else "-" + args.compare))
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"machine": machine, "rows": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
