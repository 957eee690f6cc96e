"""Real ImageNet VGG-16, real images, real subprocess: the product as a user runs it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nst_core import Config, stylize
from nst_core.image import load_image

from .conftest import IMAGES, StyleLossLog, shared_image

pytestmark = pytest.mark.real_weights
NST_CORE = Path(sys.executable).with_name("nst-core")


def test_real_transfer_at_128px_lowers_style_loss_tenfold(real_vgg16, monkeypatch):
    monkeypatch.setenv("NST_CORE_WEIGHTS", str(real_vgg16))
    content = shared_image("tubingen.jpg", 128)
    style = shared_image("starry_night.jpg", 128)
    log = StyleLossLog()
    # A strong style weight: with the default (5) the content term holds the style loss at ~6× lower.
    config = Config(size=128, iterations=50, style_weight=20.0)
    result = stylize(content, [style], config=config, plugins=[log])
    assert result.info["model"] == "vgg16" and str(real_vgg16) in result.info["weights"]
    assert len(log.style) == 50
    assert min(log.style) <= log.style[0] / 10, log.style
    difference = np.abs(result.image - content).mean()
    assert difference > 0.05, difference  # visibly different from the photo, not a copy
    # ... yet the photo is still there: closer to the content than to a flat grey
    assert np.abs(result.image - content).mean() < np.abs(0.5 - content).mean() * 1.5


def test_real_cli_run_with_json_progress(real_vgg16, tmp_path):
    output = tmp_path / "tubingen_starry.png"
    proc = subprocess.run(
        [str(NST_CORE), "run", str(IMAGES / "tubingen.jpg"), str(IMAGES / "starry_night.jpg"), "-o", str(output),
         "--size", "96", "-n", "10", "--progress", "json", "--weights", str(real_vgg16)],
        capture_output=True, text=True, timeout=600, env=dict(os.environ),
    )
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert events[-1]["event"] == "done"
    assert [e["step"] for e in events if e["event"] == "progress"] == list(range(1, 11))
    written = load_image(output)
    assert written.rgb.shape == (72, 96, 3)
    bad = subprocess.run([str(NST_CORE), "run", str(tmp_path / "nope.jpg"), str(IMAGES / "starry_night.jpg"),
                          "-o", str(tmp_path / "x.png")], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
