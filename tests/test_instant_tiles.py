"""The instant transformer in tiles: exact with the same statistics, close to whole, no seams, bounded memory."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from nst_core import instant
from nst_core.image import resize_to
from nst_core.instant import tiles
from nst_core.instant.transformer import RECEPTIVE_RADIUS, STRIDE, transform
from nst_core.parts import grid

from .conftest import shared_image


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return shared_image("tubingen.jpg", 320)  # 320×240


@pytest.fixture(scope="module")
def vector() -> torch.Tensor:
    return instant.style_vector(shared_image("starry_night.jpg", 320))


@pytest.fixture(scope="module")
def net():
    return instant.load_transformer()


def _image(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(array).permute(2, 0, 1)[None]


def _whole(net, array, style, **kwargs) -> np.ndarray:
    with torch.inference_mode():
        return transform(net, _image(array), style, **kwargs).numpy()


def test_receptive_radius(net, vector):
    """With fixed statistics a change of one pixel reaches at most RECEPTIVE_RADIUS pixels away,
    whatever the pixel's position relative to the stride-4 grid."""
    rng = np.random.default_rng(0)
    base = rng.random((160, 160, 3), dtype=np.float32)
    style = net.style_parameters(vector)
    statistics: dict = {}
    _whole(net, base, style, record=statistics)
    reference = _whole(net, base, style, statistics=statistics)
    reach = 0
    for dy in range(STRIDE):
        for dx in range(STRIDE):
            y, x = 80 + dy, 80 + dx
            changed = base.copy()
            changed[y, x] += 0.5
            moved = np.abs(_whole(net, changed, style, statistics=statistics) - reference).max(axis=2) > 0
            rows, cols = np.nonzero(moved)
            reach = max(reach, np.abs(rows - y).max(), np.abs(cols - x).max())
    assert 0 < reach <= RECEPTIVE_RADIUS
    assert tiles.HALO >= RECEPTIVE_RADIUS and tiles.HALO % STRIDE == 0


def _tiny_plan(photo: np.ndarray) -> tiles.Plan:
    plan = tiles.plan(photo.shape[:2], 2**21)  # 2 MiB: forces tiles on a 320×240 photo
    assert plan.tiled
    return plan


def test_tiles_with_the_same_statistics_are_the_whole_pass(net, photo, vector):
    """Tiles normalized with the whole photo's statistics give the whole pass (no seam)."""
    style = net.style_parameters(vector)
    statistics: dict = {}
    whole = _whole(net, photo, style, record=statistics)
    plan = _tiny_plan(photo)
    calls = []
    with torch.inference_mode():
        tiled = tiles.run_tiled(net, photo, style, plan, dtype=torch.float32, device=torch.device("cpu"),
                                statistics=statistics, on_tile=lambda done, total: calls.append((done, total)))
    assert len(calls) > 4 and calls[-1][0] == calls[-1][1]
    assert np.abs(tiled - whole).max() <= 1e-4


def _seam_ratio(image: np.ndarray, plan: tiles.Plan) -> float:
    """Mean colour step across tile core boundaries ÷ mean step across all other columns and rows."""
    parts = grid(image.shape[:2], core=plan.core, halo=plan.halo, offset=(0, 0),
                       strides={"image": 1, "network": STRIDE})
    cut_rows = {p.core[0] for p in parts} - {0}
    cut_cols = {p.core[2] for p in parts} - {0}
    row_steps = np.abs(np.diff(image, axis=0)).mean(axis=(1, 2))  # step between row i and i + 1
    col_steps = np.abs(np.diff(image, axis=1)).mean(axis=(0, 2))
    at_cuts = np.concatenate([row_steps[[r - 1 for r in cut_rows]], col_steps[[c - 1 for c in cut_cols]]])
    elsewhere = np.concatenate([np.delete(row_steps, [r - 1 for r in cut_rows]),
                                np.delete(col_steps, [c - 1 for c in cut_cols])])
    return float(at_cuts.mean() / elsewhere.mean())


def test_budgeted_run_is_close_to_whole_and_seamless(net, photo, vector):
    """Over the budget: statistics from a smaller pass, then tiles. The result is a whole pass
    normalized with those statistics (so no seam), and close to the plain whole pass."""
    plan = _tiny_plan(photo)
    tiled = instant.stylize_instant_array(photo, vector, max_memory=2**21)
    whole = instant.stylize_instant_array(photo, vector)
    style = net.style_parameters(vector)
    small = tiles.measure_statistics(
        net, resize_to(photo, plan.statistics_hw), style, dtype=torch.float32, device=torch.device("cpu"))
    assert np.abs(tiled - _whole(net, photo, style, statistics=small)).max() <= 1e-4
    difference = np.abs(tiled - whole)
    assert difference.mean() <= 0.03, difference.mean()  # measured 0.014 (statistics from 256×192)
    assert _seam_ratio(tiled, plan) < 1.2
    assert abs(_seam_ratio(tiled, plan) - _seam_ratio(whole, plan)) < 0.1


def test_plans():
    whole = tiles.plan((768, 1024), 2**30)
    assert not whole.tiled and whole.estimate == 768 * 1024 * tiles.PASS_BYTES_PER_PIXEL
    big = tiles.plan((3000, 4000), 2**29)  # 12 MP in 512 MiB
    assert big.tiled and big.estimate <= 2**29
    assert big.core % STRIDE == 0 and big.halo == tiles.HALO
    assert big.statistics_hw[0] * big.statistics_hw[1] * tiles.PASS_BYTES_PER_PIXEL <= 2**29
    assert abs(big.statistics_hw[1] / big.statistics_hw[0] - 4 / 3) < 0.02
    assert "tiles" in big.describe() and "one pass" in whole.describe()
    assert tiles.plan((5, 3), 2**30).padded_hw == (8, 8)


_MEMORY_PROBE = """
import json, sys, numpy as np, torch
from nst_core import instant
from nst_core.image import resize_to
instant.load_networks()
vector = torch.from_numpy(np.random.default_rng(0).normal(size=100).astype(np.float32))
instant.stylize_instant_array(np.zeros((64, 64, 3), np.float32), vector)  # kernels made, allocator warm
height, width, budget = (int(a) for a in sys.argv[1:4])
photo = np.random.default_rng(1).random((height, width, 3), dtype=np.float32)
def rss(key):
    return int(open("/proc/self/status").read().split(key + ":")[1].split()[0]) * 1024
open("/proc/self/clear_refs", "w").write("5")  # reset the peak
before = rss("VmRSS")
out = instant.stylize_instant_array(photo, vector, max_memory=budget)
print(json.dumps({"growth": rss("VmHWM") - before, "shape": list(out.shape)}))
"""


def test_memory_stays_within_the_budget():
    """A 6-megapixel photo with a 128 MiB budget: the run grows by the budget plus the photo's
    padded copy and the result (24 B per pixel), with room for the allocator."""
    height, width, budget = 2048, 3072, 2**27
    done = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, str(height), str(width), str(budget)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["shape"] == [height, width, 3]
    images = 24 * height * width
    assert report["growth"] <= budget + images + 2**26, report  # whole: 160 B/px = 1 GB
