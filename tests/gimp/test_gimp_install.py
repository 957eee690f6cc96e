"""nst_cli.gimp_install: install, uninstall and doctor for the GIMP plug-in (no GIMP needed).

What GIMP 3 itself does with these folders (settings migration, pluginrc) is checked against a
real GIMP 3.0 in test_gimp_plugin.py."""

from __future__ import annotations

import shutil
import stat
import sys
from pathlib import Path

import pytest

from nst_cli import gimp_install
from nst_cli import main as cli_main
from nst_core.errors import InputError


@pytest.fixture
def cli(tmp_path):
    path = tmp_path / "bin" / "nst-core"
    path.parent.mkdir()
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def home(monkeypatch, tmp_path):
    """A fresh HOME on Linux: no GIMP profile of any version, no GIMP program on PATH."""
    folder = tmp_path / "home"
    folder.mkdir()
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("HOME", str(folder))
    for name in ("XDG_CONFIG_HOME", "GIMP3_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "no-programs"))
    monkeypatch.setattr(gimp_install, "FLATPAK_DIRS", (str(folder / ".local/share/flatpak/app/org.gimp.GIMP"),))
    return folder


def plugins(base):
    folder = base / "plug-ins"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_plugin_source_dir_has_the_plugin():
    source = gimp_install.plugin_source_dir()
    for name in gimp_install.PLUGIN_FILES:
        assert (source / name).is_file()


def test_install_copies_sets_run_bit_and_records_cli(tmp_path, cli):
    target = gimp_install.install(plugins(tmp_path), cli)
    assert target == tmp_path / "plug-ins" / "nst_gimp"
    assert sorted(p.name for p in target.iterdir()) == sorted([*gimp_install.PLUGIN_FILES, "nst-core-path.txt"])
    assert (target / "nst_gimp.py").stat().st_mode & stat.S_IXUSR
    assert (target / "nst-core-path.txt").read_text().strip() == str(cli)
    for name in gimp_install.PLUGIN_FILES:
        assert (target / name).read_bytes() == (gimp_install.plugin_source_dir() / name).read_bytes()


def test_install_is_repeatable_and_replaces_old_files(tmp_path, cli):
    target = gimp_install.install(plugins(tmp_path), cli)
    (target / "stale.py").write_text("old")
    gimp_install.install(plugins(tmp_path), cli)
    assert not (target / "stale.py").exists()


def test_install_refuses_a_bad_cli_and_a_foreign_folder(tmp_path, cli):
    with pytest.raises(InputError, match="not an executable"):
        gimp_install.install(plugins(tmp_path), tmp_path / "missing")
    foreign = tmp_path / "other" / "plug-ins" / "nst_gimp"
    foreign.mkdir(parents=True)
    (foreign / "important.txt").write_text("keep me")
    with pytest.raises(InputError, match="not an nst-core plug-in"):
        gimp_install.install(foreign.parent, cli)
    with pytest.raises(InputError, match="not an nst-core plug-in"):
        gimp_install.uninstall(foreign.parent)
    assert (foreign / "important.txt").exists()


# --- which folder: --gimp-dir as a user would guess it ------------------------------------------

def test_a_profile_folder_means_its_plug_ins_folder(home, cli):
    """`--gimp-dir ~/.config/GIMP/3.0` (the profile) installs where GIMP looks: 3.0/plug-ins."""
    profile = home / ".config" / "GIMP" / "3.0"
    plugins(profile)
    (profile / "gimprc").write_text("(undo-levels 5)\n")
    target = gimp_install.install(profile, cli)
    assert target == profile / "plug-ins" / "nst_gimp"
    assert not (profile / "nst_gimp").exists()
    # the same for uninstall and doctor
    assert any(str(target) in message for _, message in gimp_install.doctor(profile))
    assert gimp_install.uninstall(profile) == [target]


def test_a_folder_that_is_no_plug_ins_folder_is_refused_in_one_line(tmp_path, cli):
    elsewhere = tmp_path / "Downloads"
    elsewhere.mkdir()
    with pytest.raises(InputError) as caught:
        gimp_install.install(elsewhere, cli)
    message = str(caught.value)
    assert "not a GIMP plug-ins folder" in message and "--force" in message and "\n" not in message
    assert list(elsewhere.iterdir()) == []
    assert gimp_install.install(elsewhere, cli, force=True) == elsewhere / "nst_gimp"


# --- GIMP 2's settings: GIMP 3 copies them only while its own folder does not exist ---------------

@pytest.mark.parametrize("old", [".config/GIMP/2.10", ".gimp-2.8"])
def test_install_before_gimp3_first_start_keeps_the_migration_possible(home, cli, old):
    (home / old).mkdir(parents=True)
    (home / old / "gimprc").write_text("(undo-levels 17)\n")
    profile = home / ".config" / "GIMP" / "3.0"
    with pytest.raises(InputError) as caught:
        gimp_install.install(None, cli)
    message = str(caught.value)
    assert "start it once" in message and str(home / old) in message and "--force" in message
    assert "\n" not in message
    assert not profile.exists()  # nothing made: GIMP 3 will still migrate
    with pytest.raises(InputError, match="start it once"):  # the same with the folder named explicitly
        gimp_install.install(profile / "plug-ins", cli)
    assert not profile.exists()
    assert gimp_install.install(None, cli, force=True) == profile / "plug-ins" / "nst_gimp"


def test_install_after_gimp3_first_start_goes_ahead(home, cli):
    (home / ".config" / "GIMP" / "2.10").mkdir(parents=True)
    plugins(home / ".config" / "GIMP" / "3.0")  # GIMP 3 has started (and migrated)
    assert gimp_install.install(None, cli) == home / ".config" / "GIMP" / "3.0" / "plug-ins" / "nst_gimp"


def test_a_newer_profile_is_no_reason_to_refuse(home, cli):
    (home / ".config" / "GIMP" / "3.2").mkdir(parents=True)
    assert gimp_install.older_profile(home / ".config" / "GIMP" / "3.0") is None
    gimp_install.install(None, cli)


def test_uninstall_names_what_it_removed_and_leaves_no_empty_folder(home, cli):
    (home / ".config").mkdir()
    target = gimp_install.install(None, cli)  # no GIMP profile at all: install makes GIMP/3.0/plug-ins
    (target / "__pycache__").mkdir()  # what GIMP's Python leaves
    removed = gimp_install.uninstall(None)
    gimp = home / ".config" / "GIMP"
    assert removed == [target, gimp / "3.0" / "plug-ins", gimp / "3.0", gimp]
    assert sorted(p.name for p in home.rglob("*")) == [".config"]  # as before the install
    assert gimp_install.uninstall(None) == []


def test_uninstall_keeps_folders_it_did_not_make_or_that_are_not_empty(home, cli):
    folder = plugins(home / ".config" / "GIMP" / "3.0")  # GIMP's
    target = gimp_install.install(None, cli)
    gimp_install.install(None, cli)  # a reinstall does not claim GIMP's folders
    assert gimp_install.uninstall(None) == [target]
    assert folder.is_dir()
    folder.parent.rename(home / "moved")
    target = gimp_install.install(None, cli)  # made 3.0 and plug-ins ...
    (target.parent / "other-plugin").mkdir()  # ... where the user then put something
    assert gimp_install.uninstall(None) == [target]
    assert (target.parent / "other-plugin").is_dir()


def test_cli_install_and_uninstall_messages(home, cli, capsys):
    profile = home / ".config" / "GIMP" / "3.0"
    plugins(profile)
    assert cli_main.main(["gimp", "install", "--gimp-dir", str(profile)]) == 0
    out = capsys.readouterr().out
    assert f"into {profile / 'plug-ins' / 'nst_gimp'}" in out
    assert "then use Filters > Neural Style (Paint Like a Painting, Instant Style, Paint by Region)" in out and "Artistic" not in out
    assert cli_main.main(["gimp", "uninstall"]) == 0
    assert capsys.readouterr().out == f"removed {profile / 'plug-ins' / 'nst_gimp'}\n"
    assert cli_main.main(["gimp", "uninstall"]) == 0
    assert "not installed in" in capsys.readouterr().out


def test_cli_install_refusal_is_one_line(home, capsys):
    (home / ".config" / "GIMP" / "2.10").mkdir(parents=True)
    assert cli_main.main(["gimp", "install"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and "start it once" in captured.err
    assert cli_main.main(["gimp", "install", "--force"]) == 0


# --- doctor: one PROBLEM per root cause, with what to do -----------------------------------------

def problems(checks):
    return [message for ok, message in checks if not ok]


def make_program(folder, name, version_line):
    folder.mkdir(parents=True, exist_ok=True)
    program = folder / name
    program.write_text(f"#!/bin/sh\necho '{version_line}'\n")
    program.chmod(0o755)
    return program


def test_doctor_finds_gimp3_not_gimp2(home, monkeypatch, tmp_path):
    bin_dir = tmp_path / "bin-gimp"
    monkeypatch.setenv("PATH", str(bin_dir))
    assert gimp_install.find_gimp3() is None
    make_program(bin_dir, "gimp", "GNU Image Manipulation Program version 2.10.34")
    assert gimp_install.find_gimp3() is None
    first = gimp_install.doctor(None)[0]
    assert not first[0] and "no GIMP 3" in first[1]
    gimp3 = make_program(bin_dir, "gimp-3.0", "unused")
    assert gimp_install.find_gimp3() == str(gimp3)
    gimp3.unlink()
    (bin_dir / "gimp").unlink()
    make_program(bin_dir, "gimp", "GNU Image Manipulation Program version 3.0.4")
    assert gimp_install.find_gimp3() == str(bin_dir / "gimp")
    (bin_dir / "gimp").unlink()
    flatpak = home / ".local/share/flatpak/app/org.gimp.GIMP/current/active/files/bin"
    make_program(flatpak, "gimp-3.0", "unused")
    assert "flatpak org.gimp.GIMP" in gimp_install.find_gimp3()
    assert gimp_install.doctor(None)[0][0]


def test_doctor_before_install_is_one_problem_about_the_install(home, monkeypatch, tmp_path):
    make_program(tmp_path / "bin-gimp", "gimp-3.0", "unused")
    monkeypatch.setenv("PATH", str(tmp_path / "bin-gimp"))
    found = problems(gimp_install.doctor(None))
    assert len(found) == 1, found
    assert "not installed" in found[0] and "nst-core gimp install" in found[0]


def test_doctor_after_install_and_gimp_start(home, monkeypatch, tmp_path, cli):
    make_program(tmp_path / "bin-gimp", "gimp-3.0", "unused")
    monkeypatch.setenv("PATH", str(tmp_path / "bin-gimp"))
    folder = plugins(home / ".config" / "GIMP" / "3.0")
    target = gimp_install.install(None, cli)
    found = problems(gimp_install.doctor(None))
    assert len(found) == 1 and "restart GIMP 3" in found[0], found  # GIMP has not loaded it yet
    pluginrc = folder.parent / "pluginrc"
    pluginrc.write_text('(plug-in-def "${gimp_dir}/plug-ins/other/other.py" 1)\n')
    assert "did not load the plug-in" in problems(gimp_install.doctor(None))[0]
    pluginrc.write_text('(plug-in-def "${gimp_dir}/plug-ins/nst_gimp/nst_gimp.py" 1)\n')
    checks = gimp_install.doctor(None)
    assert problems(checks) == [], checks
    assert any(str(target) in message for _, message in checks)


def test_doctor_syntax_error_out_of_date_copy_run_bit_and_cli(home, monkeypatch, tmp_path, cli):
    folder = plugins(home / ".config" / "GIMP" / "3.0")
    target = gimp_install.install(None, cli)
    bridge = target / "nst_gimp_bridge.py"
    bridge.write_text(bridge.read_text() + "\n# an older version\n")
    found = problems(gimp_install.doctor(None))
    assert [m for m in found if "out of date" in m] == [
        f"the plug-in in {target} is out of date or changed (nst_gimp_bridge.py differ from this nst-core's copy): "
        "run 'nst-core gimp install' again"]
    main = target / "nst_gimp.py"
    main.write_text(main.read_text().replace("def _choice(table):", "def _choice(table)"))
    found = [m for m in problems(gimp_install.doctor(None)) if "out of date" in m]
    assert len(found) == 1 and "does not compile (nst_gimp.py line" in found[0], found
    assert not (target / "__pycache__").exists()  # checked in memory, nothing written there
    gimp_install.install(None, cli)
    main.chmod(0o644)
    cli.unlink()
    found = problems(gimp_install.doctor(None))
    assert [m for m in found if "run bit" in m] and [m for m in found if str(cli) in m], found
    assert all("\n" not in message for message in found)
    assert folder.is_dir()


def test_doctor_when_nst_cores_own_copy_does_not_compile(home, monkeypatch, tmp_path, cli):
    broken = tmp_path / "package" / "nst_gimp"
    shutil.copytree(gimp_install.plugin_source_dir(), broken)
    (broken / "nst_gimp_bridge.py").write_text("def broken(:\n")
    monkeypatch.setattr(gimp_install, "plugin_source_dir", lambda: broken)
    plugins(home / ".config" / "GIMP" / "3.0")
    gimp_install.install(None, cli)
    found = [m for m in problems(gimp_install.doctor(None)) if "compile" in m]
    assert found == ["this nst-core's own plug-in does not compile (nst_gimp_bridge.py line 1: invalid syntax): "
                     "reinstall nst-core"]


def test_doctor_weights_check(tmp_path, cli, monkeypatch, random_weights_file):
    gimp_install.install(plugins(tmp_path), cli)
    monkeypatch.delenv("NST_CORE_WEIGHTS", raising=False)
    ok, message = gimp_install.doctor(tmp_path / "plug-ins")[-1]
    assert ok and "original VGG weights" in message  # the embedded weights
    monkeypatch.setenv("NST_CORE_WEIGHTS", str(tmp_path / "missing.pth"))
    ok, message = gimp_install.doctor(tmp_path / "plug-ins")[-1]
    assert not ok and "missing.pth" in message
    broken = tmp_path / "w.pth"
    broken.write_bytes(b"x")
    monkeypatch.setenv("NST_CORE_WEIGHTS", str(broken))
    ok, message = gimp_install.doctor(tmp_path / "plug-ins")[-1]
    assert not ok and "w.pth" in message
    monkeypatch.setenv("NST_CORE_WEIGHTS", str(random_weights_file))
    assert gimp_install.doctor(tmp_path / "plug-ins")[-1][0]


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


def test_install_default_dir_uses_home(home, cli):
    target = gimp_install.install(None, cli)
    assert target == home / ".config" / "GIMP" / "3.0" / "plug-ins" / "nst_gimp"
