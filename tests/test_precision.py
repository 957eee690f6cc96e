"""Precision and memory format: chosen from the hardware and a measurement, never assumed."""

import pytest
import torch

from nst_core import precision
from nst_core.precision import choose

CPU = torch.device("cpu")


@pytest.fixture
def hardware(monkeypatch, isolated_env):
    """Pretend the CPU has fast bf16 or not."""

    def set_fast(fast):
        monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2", "amx_bf16"} if fast else {"avx2"}))

    return set_fast


class Probe:
    def __init__(self, timings):
        self.timings = timings
        self.calls = []

    def __call__(self, name, layout, convolution="standard"):
        key = (name, layout) if convolution == "standard" else (name, layout, convolution)
        self.calls.append(key)
        return self.timings[key]


def test_without_fast_bf16_auto_is_fp32_and_bf16_is_never_timed(hardware):
    hardware(False)
    probe = Probe({})
    choice = choose("auto", "contiguous", CPU, probe=probe, cache_key="k")
    assert (choice.precision, choice.memory_format) == ("fp32", "contiguous")
    assert probe.calls == []  # a bf16 probe step could take a minute on such a CPU
    assert "no AMX or AVX512-BF16" in choice.reason


def test_with_fast_bf16_the_probe_decides(hardware):
    hardware(True)
    fast = Probe({("fp32", "contiguous"): 1.0, ("bf16", "contiguous"): 0.25})
    choice = choose("auto", "contiguous", CPU, probe=fast, cache_key="a")
    assert choice.precision == "bf16" and "amx_bf16" in choice.reason and "250 ms" in choice.reason
    assert sorted(fast.calls) == [("bf16", "contiguous"), ("fp32", "contiguous")]

    slow = Probe({("fp32", "contiguous"): 1.0, ("bf16", "contiguous"): 30.0})
    assert choose("auto", "contiguous", CPU, probe=slow, cache_key="b").precision == "fp32"

    marginal = Probe({("fp32", "contiguous"): 1.0, ("bf16", "contiguous"): 0.95})
    assert choose("auto", "contiguous", CPU, probe=marginal, cache_key="c").precision == "fp32"


def test_memory_format_auto_is_measured_and_the_measurement_is_remembered(hardware):
    hardware(False)
    probe = Probe({("fp32", "contiguous"): 1.0, ("fp32", "channels_last"): 0.6})
    first = choose("fp32", "auto", CPU, probe=probe, cache_key="vgg19 at 128x96")
    assert first.memory_format == "channels_last" and "measured per step" in first.reason
    again = choose("fp32", "auto", CPU, probe=probe, cache_key="vgg19 at 128x96")
    assert (again.precision, again.memory_format, again.step_seconds) == ("fp32", "channels_last", 0.6)
    assert "measured earlier" in again.reason
    assert len(probe.calls) == 2  # the second choice read the cache
    choose("fp32", "auto", CPU, probe=probe, cache_key="vgg19 at 256x192")
    assert len(probe.calls) == 4  # another size is measured anew


def test_explicit_settings_are_not_measured(hardware):
    hardware(False)
    probe = Probe({})
    choice = choose("bf16", "channels_last", CPU, probe=probe, cache_key="k")
    assert (choice.precision, choice.memory_format, probe.calls) == ("bf16", "channels_last", [])


def test_an_unwritable_cache_only_costs_a_probe(hardware, monkeypatch, tmp_path):
    hardware(False)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("NST_CORE_CACHE_DIR", str(blocker))
    probe = Probe({("fp32", "contiguous"): 1.0, ("fp32", "channels_last"): 2.0})
    assert choose("fp32", "auto", CPU, probe=probe, cache_key="k").memory_format == "contiguous"
