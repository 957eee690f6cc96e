"""Install, remove and check the GIMP 3 plug-in (``nst-core gimp install|uninstall|doctor``).

GIMP 3 loads a Python plug-in from its own folder in a ``plug-ins`` directory:
``<plug-ins>/nst_gimp/nst_gimp.py`` (run bit set). :func:`install` copies the plug-in's files
there and records the absolute path of the ``nst-core`` executable in
``nst_gimp/nst-core-path.txt``, which the plug-in reads to find the CLI (it falls back to
``nst-core`` on PATH).

GIMP 3 copies an older GIMP's settings (``~/.config/GIMP/2.10``, ``~/.gimp-2.8``...) into its
profile folder (``~/.config/GIMP/3.0``) only on its first start, and only when that folder does
not exist yet (``app/app.c``: ``gimp_user_install_new`` runs when ``gimp_directory()`` is not a
directory). Installing first would create the folder and lose those settings, so :func:`install`
refuses then, unless forced.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

from nst_core.errors import InputError, NstError

PLUGIN_NAME = "nst_gimp"
PLUGIN_FILE = "nst_gimp.py"
CLI_PATH_FILE = "nst-core-path.txt"
#: Folders that install had to create, one per line, removed by uninstall when they are empty.
CREATED_FILE = "created-folders.txt"
#: The files that make up the installed plug-in (``__init__.py`` only makes it a package here).
PLUGIN_FILES = ("nst_gimp.py", "nst_gimp_bridge.py")
PLUGINS = "plug-ins"
#: Files GIMP keeps in a profile folder (``~/.config/GIMP/3.0``): any one marks a folder as one.
PROFILE_FILES = ("gimprc", "pluginrc", "sessionrc", "menurc")
#: GIMP's registry of the plug-ins it has loaded, in the profile folder.
PLUGINRC = "pluginrc"
_VERSION = re.compile(r"(\d+)\.(\d+)")


def plugin_source_dir() -> Path:
    """The folder holding the plug-in's files: the checkout's ``plugins/gimp/nst_gimp``, else the
    installed ``nst_gimp`` package (shipped as package data)."""
    in_checkout = Path(__file__).resolve().parents[2] / "gimp" / PLUGIN_NAME
    if (in_checkout / PLUGIN_FILE).is_file():
        return in_checkout
    spec = importlib.util.find_spec(PLUGIN_NAME)
    if spec is not None:
        for location in list(spec.submodule_search_locations or []) + ([spec.origin] if spec.origin else []):
            folder = Path(location)
            folder = folder if folder.is_dir() else folder.parent
            if (folder / PLUGIN_FILE).is_file():
                return folder
    raise InputError(f"cannot find the GIMP plug-in's files ({PLUGIN_NAME}/{PLUGIN_FILE}); reinstall nst-core")


def menu_text() -> str:
    """Where GIMP shows the plug-in: ``Filters > Neural Style > ...``, from the plug-in's own
    bridge module (plain Python; GIMP's half needs ``gi``)."""
    name = "_nst_gimp_bridge_for_cli"
    spec = importlib.util.spec_from_file_location(name, plugin_source_dir() / "nst_gimp_bridge.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look themselves up there
    try:
        spec.loader.exec_module(module)
        return module.menu_text()
    finally:
        del sys.modules[name]


def default_gimp_plugin_dirs() -> list[Path]:
    """GIMP 3.0's per-user plug-in folders for this system, the usual one first.

    ``$GIMP3_DIRECTORY/plug-ins`` when that is set (GIMP's own override); Linux and other Unix:
    ``$XDG_CONFIG_HOME`` (default ``~/.config``) ``/GIMP/3.0/plug-ins``, then the Flatpak's;
    macOS: ``~/Library/Application Support/GIMP/3.0/plug-ins``; Windows:
    ``%APPDATA%\\GIMP\\3.0\\plug-ins``.
    """
    dirs: list[Path] = []
    override = os.environ.get("GIMP3_DIRECTORY")
    if override:
        dirs.append(Path(override).expanduser() / PLUGINS)
    home = Path.home()
    if sys.platform == "win32":
        appdata = os.environ.get("APPDATA") or str(home / "AppData" / "Roaming")
        dirs.append(Path(appdata) / "GIMP" / "3.0" / PLUGINS)
    elif sys.platform == "darwin":
        dirs.append(home / "Library" / "Application Support" / "GIMP" / "3.0" / PLUGINS)
    else:
        config = os.environ.get("XDG_CONFIG_HOME") or str(home / ".config")
        dirs.append(Path(config) / "GIMP" / "3.0" / PLUGINS)
        dirs.append(home / ".var" / "app" / "org.gimp.GIMP" / "config" / "GIMP" / "3.0" / PLUGINS)
    return dirs


def _is_profile(folder: Path) -> bool:
    """A GIMP profile folder: one holding GIMP's own files, or a version-named folder under a
    ``GIMP`` folder (``~/.config/GIMP/3.0`` before GIMP 3 first starts)."""
    if folder.is_dir() and any((folder / name).exists() for name in PROFILE_FILES):
        return True
    return bool(_VERSION.fullmatch(folder.name)) and folder.parent.name.upper() == "GIMP"


def plugins_dir(gimp_dir: Path | str | None, *, strict: bool = False) -> Path:
    """The plug-ins folder meant by ``--gimp-dir``: a ``plug-ins`` folder as it is, a GIMP
    profile folder's ``plug-ins`` (what a user guesses first), anything else as it is unless
    ``strict`` (install), which refuses it. Default: the first existing default folder, else
    the usual one."""
    if gimp_dir is None:
        candidates = default_gimp_plugin_dirs()
        return next((candidate for candidate in candidates if candidate.is_dir()), candidates[0])
    folder = Path(gimp_dir).expanduser()
    if folder.name == PLUGINS:
        return folder
    if _is_profile(folder):
        return folder / PLUGINS
    if strict:
        raise InputError(f"{folder} is not a GIMP plug-ins folder: pass GIMP 3's '{PLUGINS}' folder (such as "
                         f"{default_gimp_plugin_dirs()[0]}) or its profile folder, or add --force to install there")
    return folder


def older_profile(profile: Path) -> Path | None:
    """The older GIMP's settings that GIMP would copy into ``profile`` on its first start, if
    ``profile`` does not exist yet (else None): the newest older version beside it
    (``~/.config/GIMP/2.10``), else an old-style ``~/.gimp-2.x``, as GIMP looks for them."""
    wanted = _VERSION.fullmatch(profile.name)
    if profile.exists() or not wanted:
        return None
    version = (int(wanted.group(1)), int(wanted.group(2)))

    def older(folders, pattern):
        found = []
        for folder in folders:
            match = re.fullmatch(pattern, folder.name)
            if match and folder.is_dir() and (int(match.group(1)), int(match.group(2))) < version:
                found.append(((int(match.group(1)), int(match.group(2))), folder))
        return max(found)[1] if found else None

    try:
        beside = older(profile.parent.iterdir(), r"(\d+)\.(\d+)") if profile.parent.is_dir() else None
        return beside or older(Path.home().iterdir(), r"\.gimp-(\d+)\.(\d+)")
    except OSError:
        return None


def _is_ours(folder: Path) -> bool:
    return folder.is_dir() and ((folder / PLUGIN_FILE).is_file() or not any(folder.iterdir()))


def _missing_parents(folder: Path) -> list[Path]:
    """``folder`` and its parents that do not exist, deepest first."""
    missing = []
    while not folder.exists() and folder.parent != folder:
        missing.append(folder)
        folder = folder.parent
    return missing


def install(gimp_dir: Path | str | None, cli_path: Path | str, *, force: bool = False) -> Path:
    """Copy the plug-in into the plug-ins folder meant by ``gimp_dir`` (see :func:`plugins_dir`)
    as ``nst_gimp/``, set its run bit and record ``cli_path``. Returns the plug-in's folder.

    Raises InputError when ``cli_path`` is not an executable file, the folder is not a plug-ins
    folder or can't be written, or GIMP 3 has not started yet and would then not copy an older
    GIMP's settings (``force`` installs anyway in the last two cases).
    """
    cli = Path(cli_path).expanduser().absolute()
    if not cli.is_file() or not os.access(cli, os.X_OK):
        raise InputError(f"the nst-core program {cli} is not an executable file")
    source = plugin_source_dir()
    folder = plugins_dir(gimp_dir, strict=not force)
    old = older_profile(folder.parent) if folder.name == PLUGINS else None
    if old is not None and not force:
        raise InputError(f"GIMP 3 has not started yet: start it once and quit, so that it copies your settings from "
                         f"{old} (it does only while {folder.parent} does not exist), then run 'nst-core gimp install' "
                         "again; --force installs now and GIMP 3 starts without those settings")
    target = folder / PLUGIN_NAME
    if target.exists() and not _is_ours(target):
        raise InputError(f"{target} exists and is not an nst-core plug-in; move it away first")
    created = _missing_parents(folder)
    if target.is_dir() and (target / CREATED_FILE).is_file():  # a reinstall: keep the first record
        created += [Path(line) for line in (target / CREATED_FILE).read_text(encoding="utf-8").splitlines() if line]
    try:
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        for name in PLUGIN_FILES:
            shutil.copy2(source / name, target / name)
        main = target / PLUGIN_FILE
        main.chmod(main.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        (target / CLI_PATH_FILE).write_text(str(cli) + "\n", encoding="utf-8")
        if created:
            (target / CREATED_FILE).write_text("".join(f"{path}\n" for path in created), encoding="utf-8")
    except OSError as error:
        raise InputError(f"cannot install the GIMP plug-in into {target}: {error.strerror or error}") from None
    return target


def uninstall(gimp_dir: Path | str | None) -> list[Path]:
    """Remove the plug-in from ``gimp_dir`` (default: every default folder), and the folders
    that install created if they are now empty. Returns what was removed (empty: nothing was
    installed)."""
    folders = [plugins_dir(gimp_dir)] if gimp_dir is not None else default_gimp_plugin_dirs()
    removed: list[Path] = []
    for folder in folders:
        target = folder / PLUGIN_NAME
        if not target.exists():
            continue
        if not _is_ours(target):
            raise InputError(f"{target} is not an nst-core plug-in; not removing it")
        record = target / CREATED_FILE
        created = record.read_text(encoding="utf-8").splitlines() if record.is_file() else []
        try:
            shutil.rmtree(target)
        except OSError as error:
            raise InputError(f"cannot remove {target}: {error.strerror or error}") from None
        removed.append(target)
        for path in sorted({Path(line) for line in created if line}, key=lambda p: len(p.parts), reverse=True):
            try:
                path.rmdir()  # only when empty: whatever GIMP or the user put there stays
            except OSError:
                continue
            removed.append(path)
    return removed


# --------------------------------------------------------------------------------------------
# doctor

#: GIMP 3's programs, in the order looked for on PATH (``gimp`` may be GIMP 2: its version is read).
GIMP_PROGRAMS = ("gimp-3.0", "gimp-3", "gimp", "gimp-console-3.0", "gimp-console-3", "gimp-console")
#: Where a Flatpak GIMP lives (user installation first; patched by tests).
FLATPAK_DIRS = ("~/.local/share/flatpak/app/org.gimp.GIMP", "/var/lib/flatpak/app/org.gimp.GIMP")


def _gimp_major(program: str) -> int | None:
    """GIMP's major version from the program's name (``gimp-3.0``, a link to it), else from
    ``PROGRAM --version``."""
    for name in (Path(program).name, Path(os.path.realpath(program)).name):
        match = re.match(r"gimp(?:-console)?-(\d+)", name.lower())
        if match:
            return int(match.group(1))
    try:
        output = subprocess.run([program, "--version"], capture_output=True, text=True, timeout=30,
                                stdin=subprocess.DEVNULL).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"version (\d+)\.", output)
    return int(match.group(1)) if match else None


def find_gimp3() -> str | None:
    """A GIMP 3 on this machine, in words (a program's path or ``flatpak org.gimp.GIMP``), or None."""
    for name in GIMP_PROGRAMS:
        program = shutil.which(name)
        if program and _gimp_major(program) == 3:
            return program
    for folder in FLATPAK_DIRS:
        binaries = Path(folder).expanduser() / "current" / "active" / "files" / "bin"
        if any(binaries.glob("gimp-3*")):
            return f"flatpak org.gimp.GIMP ({binaries.parent.parent})"
    if sys.platform == "darwin":
        for app in sorted(Path("/Applications").glob("GIMP*.app")):
            if any((app / "Contents" / "MacOS").glob("gimp-3*")):
                return str(app)
    if sys.platform == "win32":
        for base in (os.environ.get("ProgramFiles"), os.environ.get("LOCALAPPDATA")):
            for program in sorted(Path(base or "/nonexistent").glob("**/GIMP 3/bin/gimp-3*.exe")):
                return str(program)
    return None


def _compile_error(path: Path) -> str | None:
    """``path``'s syntax error in words, or None (compiled in memory: no __pycache__ written)."""
    try:
        compile(path.read_bytes(), str(path), "exec", dont_inherit=True)
    except SyntaxError as error:
        return f"{path.name} line {error.lineno}: {error.msg}"
    except (OSError, ValueError) as error:
        return f"{path.name}: {error}"
    return None


def doctor(gimp_dir: Path | str | None) -> list[tuple[bool, str]]:
    """Check an installation: (ok, one-line message) per root cause, in the order a user fixes
    them; a check that depends on an earlier failing one is left out."""
    checks: list[tuple[bool, str]] = []
    gimp = find_gimp3()
    checks.append((gimp is not None, f"GIMP 3: {gimp}" if gimp else
                   "no GIMP 3 found (gimp-3.0, gimp, flatpak org.gimp.GIMP): install GIMP 3 (GIMP 2 cannot run "
                   "this plug-in)"))
    checks.extend(_installation_checks(plugins_dir(gimp_dir) / PLUGIN_NAME))
    checks.append(_weights_check())
    return checks


def _installation_checks(target: Path) -> list[tuple[bool, str]]:
    main = target / PLUGIN_FILE
    if not main.is_file():
        return [(False, f"the plug-in is not installed (no {main}): run 'nst-core gimp install'")]
    checks = [_files_check(target)]
    if sys.platform != "win32" and not os.access(main, os.X_OK):
        checks.append((False, f"{main} lacks its run bit, so GIMP skips it: run 'nst-core gimp install' again"))
    checks.append(_cli_check(target))
    # whether GIMP loaded it: only worth asking when nothing above explains why it did not
    if target.parent.name == PLUGINS and all(ok for ok, _ in checks):  # in a profile, beside pluginrc
        checks.append(_registered_check(target))
    return checks


def _files_check(target: Path) -> tuple[bool, str]:
    """The installed files are this nst-core's and compile."""
    try:
        source = plugin_source_dir()
    except NstError as error:
        return False, str(error)
    missing = [name for name in PLUGIN_FILES if not (target / name).is_file()]
    differ = [name for name in PLUGIN_FILES if name not in missing
              and (target / name).read_bytes() != (source / name).read_bytes()]
    broken = [error for name in PLUGIN_FILES if name not in missing for error in [_compile_error(target / name)]
              if error]
    if missing or differ:
        what = "; ".join(part for part in (f"missing {', '.join(missing)}" if missing else "",
                                           f"{', '.join(differ)} differ from this nst-core's copy" if differ else "",
                                           f"does not compile ({'; '.join(broken)})" if broken else "") if part)
        return False, f"the plug-in in {target} is out of date or changed ({what}): run 'nst-core gimp install' again"
    if broken:
        return False, (f"this nst-core's own plug-in does not compile ({'; '.join(broken)}): "
                       "reinstall nst-core")
    return True, f"plug-in installed in {target}: the same files as this nst-core's, valid Python"


def _cli_check(target: Path) -> tuple[bool, str]:
    record = target / CLI_PATH_FILE
    recorded = record.read_text(encoding="utf-8").strip() if record.is_file() else ""
    if recorded and os.path.isfile(recorded) and os.access(recorded, os.X_OK):
        return True, f"the plug-in runs {recorded}"
    on_path = shutil.which("nst-core")
    if on_path and not recorded:
        return True, f"the plug-in runs {on_path} (from PATH; GIMP started from a menu may have another PATH)"
    return False, (f"the nst-core the plug-in would run ({recorded or 'none recorded'}) is not an executable file: "
                   "run 'nst-core gimp install' again with the nst-core you use")


def _registered_check(target: Path) -> tuple[bool, str]:
    """Whether GIMP 3 has loaded the plug-in: its pluginrc (in the profile) names the file."""
    pluginrc = target.parent.parent / PLUGINRC
    try:
        text = pluginrc.read_text(encoding="utf-8", errors="replace") if pluginrc.is_file() else ""
    except OSError as error:
        return False, f"cannot read {pluginrc}: {error.strerror or error}"
    if f"/{PLUGIN_NAME}/{PLUGIN_FILE}\"" in text:
        return True, f"GIMP 3 has loaded the plug-in ({pluginrc} lists it)"
    installed = (target / CLI_PATH_FILE).stat().st_mtime if (target / CLI_PATH_FILE).is_file() else 0.0
    if text and pluginrc.stat().st_mtime >= installed:
        return False, (f"GIMP 3 started after the install but did not load the plug-in ({pluginrc} does not list it): "
                       "start 'gimp-3.0 --verbose' in a terminal to see why (GIMP's Python support missing?)")
    return False, ("GIMP 3 has not loaded the plug-in yet: restart GIMP 3 (if the menu entry is still missing, "
                   "run 'nst-core gimp doctor' again)")


def _weights_check() -> tuple[bool, str]:
    """Which weights a run of the default model would use, and whether they are there."""
    try:
        from nst_core import weights
        from nst_core.objective import DEFAULT_MODEL

        model = weights.infer_model(None) or DEFAULT_MODEL
        used = [source for source in weights.weights_sources(model) if source.used]
        if not used:
            return False, ("no VGG weights: the package's embedded weights are missing; reinstall nst-core "
                           "or run 'nst-core weights import FILE'")
        source = used[0]
        note = ""
        if source.kind == "explicit":
            note = (" (GIMP started from a desktop menu may not see this variable; "
                    "the embedded weights are used without it)")
        return source.present, f"weights: {source.description}{note}"
    except NstError as error:
        return False, f"weights: {error}"
    except Exception as error:  # noqa: BLE001 - a check must never crash the doctor
        return False, f"cannot check the weights: {type(error).__name__}: {error}"
