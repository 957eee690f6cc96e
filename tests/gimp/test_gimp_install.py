"""nst_cli.gimp_install: install, uninstall and doctor for the GIMP plug-in (no GIMP needed)."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import pytest

from nst_cli import gimp_install
from nst_core.errors import InputError


@pytest.fixture
def cli(tmp_path):
    path = tmp_path / "bin" / "nst-core"
    path.parent.mkdir()
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return path


def test_plugin_source_dir_has_the_plugin():
    source = gimp_install.plugin_source_dir()
    for name in gimp_install.PLUGIN_FILES:
        assert (source / name).is_file()


def test_install_copies_sets_run_bit_and_records_cli(tmp_path, cli):
    target = gimp_install.install(tmp_path / "plug-ins", cli)
    assert target == tmp_path / "plug-ins" / "nst_gimp"
    assert sorted(p.name for p in target.iterdir()) == sorted([*gimp_install.PLUGIN_FILES, "nst-core-path.txt"])
    assert (target / "nst_gimp.py").stat().st_mode & stat.S_IXUSR
    assert (target / "nst-core-path.txt").read_text().strip() == str(cli)
    assert all(ok for ok, _ in gimp_install.doctor(tmp_path / "plug-ins")[:4])


def test_install_is_repeatable_and_replaces_old_files(tmp_path, cli):
    target = gimp_install.install(tmp_path, cli)
    (target / "stale.py").write_text("old")
    gimp_install.install(tmp_path, cli)
    assert not (target / "stale.py").exists()


def test_install_refuses_a_bad_cli_and_a_foreign_folder(tmp_path, cli):
    with pytest.raises(InputError, match="not an executable"):
        gimp_install.install(tmp_path, tmp_path / "missing")
    foreign = tmp_path / "other" / "nst_gimp"
    foreign.mkdir(parents=True)
    (foreign / "important.txt").write_text("keep me")
    with pytest.raises(InputError, match="not an nst-core plug-in"):
        gimp_install.install(tmp_path / "other", cli)
    with pytest.raises(InputError, match="not an nst-core plug-in"):
        gimp_install.uninstall(tmp_path / "other")
    assert (foreign / "important.txt").exists()


def test_uninstall(tmp_path, cli):
    gimp_install.install(tmp_path, cli)
    assert gimp_install.uninstall(tmp_path) is True
    assert not (tmp_path / "nst_gimp").exists()
    assert gimp_install.uninstall(tmp_path) is False


def test_doctor_reports_problems(tmp_path, cli):
    checks = gimp_install.doctor(tmp_path / "nowhere")
    assert not checks[0][0] and not checks[1][0]
    assert all(isinstance(message, str) and "\n" not in message for _, message in checks)
    target = gimp_install.install(tmp_path, cli)
    cli.unlink()
    checks = gimp_install.doctor(tmp_path)
    assert [ok for ok, _ in checks[:3]] == [True, True, True]
    assert not checks[3][0] and "nst-core gimp install" in checks[3][1]
    (target / "nst_gimp.py").chmod(0o644)
    if sys.platform != "win32":
        assert not gimp_install.doctor(tmp_path)[2][0]


def test_doctor_weights_check(tmp_path, cli, monkeypatch, random_weights_file):
    gimp_install.install(tmp_path, cli)
    monkeypatch.delenv("NST_CORE_WEIGHTS", raising=False)
    ok, message = gimp_install.doctor(tmp_path)[-1]
    assert ok and "original VGG weights" in message  # the embedded weights
    monkeypatch.setenv("NST_CORE_WEIGHTS", str(tmp_path / "missing.pth"))
    ok, message = gimp_install.doctor(tmp_path)[-1]
    assert not ok and "missing.pth" in message
    broken = tmp_path / "w.pth"
    broken.write_bytes(b"x")
    monkeypatch.setenv("NST_CORE_WEIGHTS", str(broken))
    ok, message = gimp_install.doctor(tmp_path)[-1]
    assert not ok and "w.pth" in message
    monkeypatch.setenv("NST_CORE_WEIGHTS", str(random_weights_file))
    assert gimp_install.doctor(tmp_path)[-1][0]


@pytest.mark.parametrize("platform, expected", [
    ("linux", Path(".config/GIMP/3.0/plug-ins")),
    ("darwin", Path("Library/Application Support/GIMP/3.0/plug-ins")),
])
def test_default_dirs_unix(monkeypatch, tmp_path, platform, expected):
    monkeypatch.setattr(sys, "platform", platform)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv("GIMP3_DIRECTORY", raising=False)
    assert gimp_install.default_gimp_plugin_dirs()[0] == tmp_path / expected


def test_default_dirs_windows_and_override(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.delenv("GIMP3_DIRECTORY", raising=False)
    monkeypatch.setenv("APPDATA", str(tmp_path / "Roaming"))
    assert gimp_install.default_gimp_plugin_dirs()[0] == tmp_path / "Roaming" / "GIMP" / "3.0" / "plug-ins"
    monkeypatch.setenv("GIMP3_DIRECTORY", str(tmp_path / "custom"))
    assert gimp_install.default_gimp_plugin_dirs()[0] == tmp_path / "custom" / "plug-ins"


def test_install_default_dir_uses_home(monkeypatch, tmp_path, cli):
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv("GIMP3_DIRECTORY", raising=False)
    target = gimp_install.install(None, cli)
    assert target == tmp_path / ".config" / "GIMP" / "3.0" / "plug-ins" / "nst_gimp"
