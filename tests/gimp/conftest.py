"""Fixtures of the real-GIMP tests: the GIMP 3 chroot, built once per session (and cached across
sessions at $NST_GIMP_CHROOT, default /var/cache/nst-core/gimp-chroot)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402


@pytest.fixture(scope="session")
def gimp_env() -> float:
    """Ensure the chroot exists; FAIL (never skip) when it cannot be built. Returns build seconds."""
    try:
        return harness.ensure_env()
    except Exception as error:  # noqa: BLE001
        pytest.fail(f"GIMP 3 environment unavailable: {error}", pytrace=False)


@pytest.fixture(scope="session")
def real_weights() -> Path:
    """The float VGG-16 weights in ../shared, which the GIMP runs use; FAIL when they are missing."""
    if not harness.weights_file().is_file():
        pytest.fail(f"real VGG-16 weights missing: {harness.weights_file()}", pytrace=False)
    return harness.weights_file()
