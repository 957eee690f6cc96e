"""plugins/gimp/tools/gimp-env.sh fails loudly (non-zero exit, a clear message) instead of
skipping: without root, without the Debian registry, and rather than delete a foreign folder."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from harness import GIMP_ENV

pytestmark = pytest.mark.gimp


def gimp_env(*args, env=None, user=None):
    command = ["bash", str(GIMP_ENV), *args]
    if user is not None:
        command = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *command]
    return subprocess.run(command, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=300)


def test_without_root_it_fails_loudly(tmp_path):
    if os.geteuid() == 0 and not shutil.which("setpriv"):
        pytest.fail("setpriv is needed to drop root for this test")
    user = 65534 if os.geteuid() == 0 else None
    result = gimp_env("ensure", env={"NST_GIMP_CHROOT": str(tmp_path / "root")}, user=user)
    assert result.returncode != 0
    assert "must run as root" in result.stderr


def test_without_the_registry_it_fails_loudly(tmp_path):
    if os.geteuid() != 0:
        pytest.fail("this test needs root (as the GIMP tests do)")
    result = gimp_env("ensure", env={"NST_GIMP_CHROOT": str(tmp_path / "root"),
                                     "NST_GIMP_MIRROR": "http://127.0.0.1:9/debian"})
    assert result.returncode != 0
    assert "Debian registry" in result.stderr
    assert not (tmp_path / "root" / ".nst-gimp-env-complete").exists()


def test_it_never_deletes_a_folder_it_did_not_make(tmp_path):
    if os.geteuid() != 0:
        pytest.fail("this test needs root (as the GIMP tests do)")
    foreign = tmp_path / "root"
    (foreign / "precious").mkdir(parents=True)
    result = gimp_env("ensure", env={"NST_GIMP_CHROOT": str(foreign)})
    assert result.returncode != 0 and "not made by gimp-env.sh" in result.stderr
    assert (foreign / "precious").is_dir()


def test_refuses_a_shallow_path():
    result = gimp_env("ensure", env={"NST_GIMP_CHROOT": "/var"})
    assert result.returncode != 0 and "two levels deep" in result.stderr


def test_a_chroot_built_with_fewer_packages_gets_the_missing_ones(tmp_path):
    """An older cache (marker without the package list) is completed, not used as it is; here the
    "chroot" is an empty folder, so that fails loudly and the marker stays."""
    if os.geteuid() != 0:
        pytest.fail("this test needs root (as the GIMP tests do)")
    root = tmp_path / "root"
    root.mkdir()
    marker = root / ".nst-gimp-env-complete"
    marker.write_text("suite=trixie gimp=3.0.4 built=2026-01-01T00:00:00Z\n")
    result = gimp_env("ensure", env={"NST_GIMP_CHROOT": str(root)})
    assert result.returncode != 0 and "adding packages" in result.stderr and "xvfb" in result.stderr
    assert marker.read_text() == "suite=trixie gimp=3.0.4 built=2026-01-01T00:00:00Z\n"
