"""Shared fixtures: an isolated environment, tiny random weights, real weights, small images."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nst_core import hookimpl

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
IMAGES = SHARED / "images"
_REAL_WEIGHTS_ENV = os.environ.get("NST_CORE_WEIGHTS")


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch, tmp_path_factory):
    """No test sees the user's cache, torchvision's cache, or an explicit weights file."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("NST_CORE_CACHE_DIR", str(home / "nst-cache"))
    monkeypatch.setenv("TORCH_HOME", str(home / "torch"))
    monkeypatch.delenv("NST_CORE_WEIGHTS", raising=False)
    yield


@pytest.fixture(scope="session")
def random_weights_file(tmp_path_factory) -> Path:
    """A VGG-16 ``features`` state dict with random weights (fast to make, real architecture)."""
    from nst_core.features import build_vgg_layers

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "vgg16-random.pth"
    torch.save(build_vgg_layers("vgg16").state_dict(), path)
    return path


@pytest.fixture
def random_weights(monkeypatch, random_weights_file) -> Path:
    """Point ``NST_CORE_WEIGHTS`` at the random VGG-16 for this test."""
    monkeypatch.setenv("NST_CORE_WEIGHTS", str(random_weights_file))
    return random_weights_file


def _real_weights(name: str) -> Path:
    if name == "vgg16" and _REAL_WEIGHTS_ENV:
        return Path(_REAL_WEIGHTS_ENV)
    return SHARED / "weights" / f"{name}-imagenet-features.pth"


@pytest.fixture(scope="session")
def real_vgg16() -> Path:
    """The real ImageNet VGG-16 from ../shared/weights (CI has it; its absence is a failure)."""
    path = _real_weights("vgg16")
    if not path.is_file():
        pytest.fail(f"real VGG-16 weights not found at {path}; ../shared must sit beside the checkout")
    return path


class StyleLossLog:
    """A run-hook plugin that records the style loss of every step."""

    def __init__(self):
        self.style = []

    @hookimpl
    def nst_progress(self, progress):
        self.style.append(progress.losses["style"])


def weights_error_of(call, *args, **kwargs) -> str:
    """The message of the WeightsError that ``call`` raises, checked to be one clean line (exit 2)."""
    from nst_core.errors import InputError, WeightsError

    with pytest.raises(WeightsError) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message and message.strip() == message and message
    assert isinstance(info.value, InputError) and info.value.exit_code == 2
    return message


def shared_image(name: str, long_side: int) -> np.ndarray:
    """A test image from ../shared/images, shrunk so its long side is ``long_side``."""
    path = IMAGES / name
    if not path.is_file():
        pytest.fail(f"test image {path} not found; ../shared must sit beside the checkout")
    image = Image.open(path).convert("RGB")
    image.thumbnail((long_side, long_side), Image.LANCZOS)
    return np.asarray(image, dtype=np.float32) / 255.0


@pytest.fixture
def small_pair() -> tuple[np.ndarray, np.ndarray]:
    """tubingen.jpg and starry_night.jpg at 32 px: a real content/style pair that runs in ms."""
    return shared_image("tubingen.jpg", 32), shared_image("starry_night.jpg", 32)


@pytest.fixture
def small_files(tmp_path, small_pair) -> tuple[Path, Path]:
    """The small pair written as PNG files."""
    content, style = tmp_path / "content.png", tmp_path / "style.png"
    for array, path in ((small_pair[0], content), (small_pair[1], style)):
        Image.fromarray((array * 255).round().astype(np.uint8)).save(path)
    return content, style
