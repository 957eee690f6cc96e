"""`nst-core gimp install` and `doctor` against a real GIMP 3.0's first start and profile
(gimp-console-3.0 in the Debian trixie chroot, see plugins/gimp/tools/gimp-env.sh).

GIMP 3 copies a GIMP 2.10 profile into ~/.config/GIMP/3.0 on its first start, only when that
folder does not exist yet. A user with GIMP 2.10 settings who installs before starting GIMP 3
is told to start GIMP 3 first; after that start, the install goes ahead and the settings stay.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402

pytestmark = pytest.mark.gimp

SETTING = "(undo-levels 17)"  # not GIMP's default (5)
PALETTE = "GIMP Palette\nName: mine\n#\n  1   2   3 one\n"


def gimp_210_home(base: Path) -> Path:
    home = base / "home"
    old = home / ".config" / "GIMP" / "2.10"
    (old / "palettes").mkdir(parents=True)
    (old / "gimprc").write_text(SETTING + "\n")
    (old / "palettes" / "mine.gpl").write_text(PALETTE)
    return home


def start_gimp(home: Path, work: Path) -> dict:
    """One start of GIMP 3 (console, batch): whether it registered the plug-in."""
    work.mkdir(exist_ok=True)
    results = harness.run_batch(home, {"results": str(work / "results.json"), "scenarios": ["probe"]})
    if "probe" not in results or "exception" in results["probe"]:
        pytest.fail(f"GIMP did not start cleanly:\n{results['_gimp']['output']}", pytrace=False)
    return results["probe"]


def problem_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("PROBLEM")]


@pytest.fixture(scope="module")
def first_start(gimp_env, tmp_path_factory):
    """Install before GIMP 3's first start (refused), start GIMP, install, doctor, start GIMP
    again, doctor: what each step did."""
    base = tmp_path_factory.mktemp("profile")
    home = gimp_210_home(base)
    profile = home / ".config" / "GIMP" / "3.0"
    steps = {"refused": harness.nst_core(["gimp", "install"], home)}
    steps["profile_after_refusal"] = profile.exists()
    steps["first_start"] = start_gimp(home, base / "gimp1")
    steps["gimprc_after_first_start"] = (profile / "gimprc").read_text()
    steps["install"] = harness.nst_core(["gimp", "install"], home)
    steps["doctor_before_restart"] = harness.nst_core(["gimp", "doctor"], home, in_chroot=True)
    steps["second_start"] = start_gimp(home, base / "gimp2")
    steps["doctor"] = harness.nst_core(["gimp", "doctor"], home, in_chroot=True)
    steps["profile"] = profile
    return steps


def test_install_before_the_first_start_is_refused_in_one_line(first_start):
    refused = first_start["refused"]
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.count("\n") == 1 and "start it once" in refused.stderr, refused.stderr
    assert not first_start["profile_after_refusal"]


def test_gimp3_then_migrates_and_the_install_keeps_the_settings(first_start):
    profile = first_start["profile"]
    assert SETTING in first_start["gimprc_after_first_start"]  # GIMP copied 2.10's gimprc
    assert not first_start["first_start"]["registered"]
    install = first_start["install"]
    assert install.returncode == 0, install.stderr
    assert f"into {profile / 'plug-ins' / 'nst_gimp'}" in install.stdout
    assert "Filters > Neural Style (Paint Like a Painting, Instant Style, Paint by Region)" in install.stdout
    assert first_start["second_start"]["registered"]
    assert SETTING in (profile / "gimprc").read_text()
    assert (profile / "palettes" / "mine.gpl").read_text() == PALETTE


def test_doctor_in_a_real_gimp3_profile(first_start):
    before = first_start["doctor_before_restart"]
    assert before.returncode == 1
    assert [line for line in problem_lines(before.stdout)] == [
        "PROBLEM  GIMP 3 has not loaded the plug-in yet: restart GIMP 3 (if the menu entry is still missing, "
        "run 'nst-core gimp doctor' again)"], before.stdout
    doctor = first_start["doctor"]
    assert doctor.returncode == 0 and problem_lines(doctor.stdout) == [], doctor.stdout + doctor.stderr
    assert "ok       GIMP 3: /usr/bin/gimp" in doctor.stdout  # the chroot's GIMP 3 was found
    assert "GIMP 3 has loaded the plug-in" in doctor.stdout  # from the pluginrc GIMP wrote


def test_why_install_refuses_a_forced_install_loses_the_settings(gimp_env, tmp_path):
    """What the refusal prevents, measured: with 3.0 made first, GIMP 3 copies nothing."""
    home = gimp_210_home(tmp_path)
    forced = harness.nst_core(["gimp", "install", "--force"], home)
    assert forced.returncode == 0, forced.stderr
    assert start_gimp(home, tmp_path / "gimp")["registered"]
    profile = home / ".config" / "GIMP" / "3.0"
    assert SETTING not in (profile / "gimprc").read_text()
    assert not (profile / "palettes" / "mine.gpl").exists()
