"""Choosing the network's precision, memory layout and convolution method by looking at the
hardware, then measuring.

``bf16`` autocast makes a step 4–5× faster on CPUs with AMX or AVX512-BF16 and 50–500× *slower*
on CPUs without them (PyTorch falls back to slow reference kernels), and ``channels_last``
helps on some machines and hurts on others, as does computing 3×3 convolutions by Winograd's
transform (:mod:`nst_core.winograd`; CPU and fp32 only). So ``auto`` never assumes: it only
considers bf16 where the hardware reports fast bf16, then times a few real steps of each
candidate and keeps the fastest, with fp32 kept unless another candidate is clearly faster. The
image, Gram matrices and losses stay float32 whatever the network runs in.

Measurements are remembered per machine (CPU or GPU model, PyTorch version, network, size) in
nst-core's cache (``probes.json``, written atomically), so the probe costs its few steps once.
An entry that is not exactly the timed candidates with finite, positive seconds (an edited or
damaged file) is ignored and measured anew.
"""

from __future__ import annotations

import json
import math
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from . import winograd
from .atomic_file import write_atomically
from .weights.locations import cache_dir

#: A candidate other than fp32/contiguous/standard is kept only when at least this much faster.
MIN_GAIN = 1.15

#: CPU flags (``/proc/cpuinfo``) that mean bf16 matrix maths runs in hardware.
FAST_BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


@dataclass(frozen=True)
class Choice:
    """How the network runs, and why."""

    precision: str
    memory_format: str
    reason: str
    #: Seconds per step of the chosen setting on the probe image, where it was measured.
    step_seconds: float | None = None
    #: How 3×3 convolutions run: ``standard`` or ``winograd``.
    convolution: str = "standard"

    @property
    def label(self) -> str:
        """``fp32``, ``bf16, channels_last``, ``fp32, winograd`` …: what differs from the plain setting."""
        extras = [self.memory_format] if self.memory_format != "contiguous" else []
        extras += [self.convolution] if self.convolution != "standard" else []
        return ", ".join([self.precision, *extras])


def candidate_name(precision: str, memory_format: str, convolution: str = "standard") -> str:
    """``fp32/contiguous``, ``fp32/channels_last/winograd`` …: a candidate's name in reasons and the cache."""
    return f"{precision}/{memory_format}" + ("" if convolution == "standard" else f"/{convolution}")


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux), or an empty set where they cannot be read."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def fast_bf16(device: torch.device) -> tuple[bool, str]:
    """Whether ``device`` has fast bf16 hardware, and the evidence in words."""
    if device.type == "cuda":
        supported = torch.cuda.is_bf16_supported()
        return supported, f"GPU {'supports' if supported else 'lacks'} bf16"
    if device.type != "cpu":
        return False, f"no bf16 rule for {device.type}"
    capability = torch.backends.cpu.get_cpu_capability()
    flags = cpu_flags() & set(FAST_BF16_CPU_FLAGS)
    if flags:
        return True, f"CPU has {'/'.join(sorted(flags))} ({capability})"
    return False, f"CPU has no AMX or AVX512-BF16 ({capability}): bf16 would run in slow fallback kernels"


def candidates(requested_precision: str, requested_layout: str, device: torch.device,
               requested_convolution: str = "standard") -> tuple[list[tuple[str, str, str]], str]:
    """The (precision, memory format, convolution) triples worth timing, and why the others are not.

    Winograd's convolutions are only timed where NNPACK runs, in fp32, and (with ``auto``) on the
    contiguous layout NNPACK reads.
    """
    if requested_precision == "auto":
        fast, evidence = fast_bf16(device)
        precisions = ["fp32", "bf16"] if fast else ["fp32"]
    else:
        precisions, evidence = [requested_precision], f"{requested_precision} asked for"
    layouts = ["contiguous", "channels_last"] if requested_layout == "auto" else [requested_layout]
    if requested_convolution == "winograd":  # NNPACK computes in fp32 only
        return [("fp32", m, "winograd") for m in layouts], evidence
    if requested_convolution != "auto":
        return [(p, m, requested_convolution) for p in precisions for m in layouts], evidence
    triples = [(p, m, "standard") for p in precisions for m in layouts]
    winograd_layout = "contiguous" if "contiguous" in layouts else layouts[0]
    if "fp32" in precisions and winograd.available(device):
        triples.append(("fp32", winograd_layout, "winograd"))
    return triples, evidence


def choose(
    requested_precision: str,
    requested_layout: str,
    device: torch.device,
    *,
    probe: Callable[[str, str, str], float],
    cache_key: str,
    requested_convolution: str = "standard",
) -> Choice:
    """Pick the precision, memory format and convolution method for a run.

    :param probe: ``probe(precision, memory_format, convolution) -> seconds`` for one step (the
        caller times the real objective); only called when there is more than one candidate.
    :param cache_key: what the timing depends on besides the machine (network, size).
    """
    triples, evidence = candidates(requested_precision, requested_layout, device, requested_convolution)
    if len(triples) == 1:
        precision, memory_format, convolution = triples[0]
        return Choice(precision, memory_format, reason=evidence, convolution=convolution)
    by_name = {candidate_name(*triple): triple for triple in triples}
    names = list(by_name)
    key = f"{machine_key(device)}|{cache_key}|{','.join(names)}"
    timings = _cached_timings(key, names)
    measured_now = timings is None
    if measured_now:
        timings = {name: probe(*triple) for name, triple in by_name.items()}
        _store_cache(key, timings)
    baseline_name = names[0]
    best_name = min(timings, key=timings.get)
    if timings[best_name] * MIN_GAIN > timings[baseline_name]:
        best_name = baseline_name
    precision, memory_format, convolution = by_name[best_name]
    shown = ", ".join(f"{name} {1000 * seconds:.0f} ms" for name, seconds in timings.items())
    source = "measured" if measured_now else "measured earlier"
    return Choice(precision, memory_format, reason=f"{evidence}; {source} per step: {shown}",
                  step_seconds=timings[best_name], convolution=convolution)


def machine_key(device: torch.device) -> str:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"{cpu_model()} x{torch.get_num_threads()}"
    return f"{name}|torch {torch.__version__}"


def time_step(step: Callable[[], None], *, repeats: int = 2) -> float:
    """Fastest of ``repeats`` timed calls of ``step`` after one warm-up call."""
    step()
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - began)
    return best


def _cache_path() -> Path:
    return cache_dir() / "probes.json"


def _load_cache() -> dict:
    """The cache file's entries as they are (a file that is not a JSON object counts as empty)."""
    try:
        data = json.loads(_cache_path().read_text())
    except (OSError, ValueError, RecursionError):  # unreadable, not JSON, nested too deep
        return {}
    return data if isinstance(data, dict) else {}


def _cached_timings(key: str, names: list[str]) -> dict[str, float] | None:
    """The remembered seconds per step of exactly ``names``, or ``None`` to measure anew.

    The file may have been edited or damaged: an entry counts only if it maps each of ``names``
    (and nothing else) to a finite, positive number.
    """
    entry = _load_cache().get(key)
    if not isinstance(entry, dict) or sorted(entry) != sorted(names):
        return None
    if not all(_is_seconds(value) for value in entry.values()):
        return None
    return {name: float(value) for name, value in entry.items()}


def _is_seconds(value: object) -> bool:
    """Whether a JSON value is a finite, positive number (``true`` and a huge integer are not)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        seconds = float(value)
    except OverflowError:
        return False
    return math.isfinite(seconds) and seconds > 0


def _store_cache(key: str, timings: dict[str, float]) -> None:
    """Remember a measurement; a cache that cannot be written only costs a probe next time."""
    path = _cache_path()
    data = _load_cache()
    data[key] = timings
    text = json.dumps(data, indent=1, sort_keys=True)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, lambda handle: handle.write(text.encode()))
    except OSError:
        pass
