"""Install, remove and check the GIMP 3 plug-in (``nst-core gimp install|uninstall|doctor``).

GIMP 3 loads a Python plug-in from its own folder in a ``plug-ins`` directory:
``<plug-ins>/nst_gimp/nst_gimp.py`` (run bit set). :func:`install` copies the plug-in's files
there and records the absolute path of the ``nst-core`` executable in
``nst_gimp/nst-core-path.txt``, which the plug-in reads to find the CLI (it falls back to
``nst-core`` on PATH).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import stat
import sys
from pathlib import Path

from nst_core.errors import InputError, NstError

PLUGIN_NAME = "nst_gimp"
PLUGIN_FILE = "nst_gimp.py"
CLI_PATH_FILE = "nst-core-path.txt"
#: The files that make up the installed plug-in (``__init__.py`` only makes it a package here).
PLUGIN_FILES = ("nst_gimp.py", "nst_gimp_bridge.py")


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
        dirs.append(Path(override).expanduser() / "plug-ins")
    home = Path.home()
    if sys.platform == "win32":
        appdata = os.environ.get("APPDATA") or str(home / "AppData" / "Roaming")
        dirs.append(Path(appdata) / "GIMP" / "3.0" / "plug-ins")
    elif sys.platform == "darwin":
        dirs.append(home / "Library" / "Application Support" / "GIMP" / "3.0" / "plug-ins")
    else:
        config = os.environ.get("XDG_CONFIG_HOME") or str(home / ".config")
        dirs.append(Path(config) / "GIMP" / "3.0" / "plug-ins")
        dirs.append(home / ".var" / "app" / "org.gimp.GIMP" / "config" / "GIMP" / "3.0" / "plug-ins")
    return dirs


def _pick_dir(gimp_dir: Path | str | None) -> Path:
    if gimp_dir is not None:
        return Path(gimp_dir).expanduser()
    candidates = default_gimp_plugin_dirs()
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    return candidates[0]


def _is_ours(folder: Path) -> bool:
    return folder.is_dir() and ((folder / PLUGIN_FILE).is_file() or not any(folder.iterdir()))


def install(gimp_dir: Path | str | None, cli_path: Path | str) -> Path:
    """Copy the plug-in into ``gimp_dir`` (default: the first existing default folder, else the
    usual one) as ``nst_gimp/``, set its run bit and record ``cli_path``. Returns the folder.

    Raises InputError when ``cli_path`` is not an executable file or the folder can't be written.
    """
    cli = Path(cli_path).expanduser().absolute()
    if not cli.is_file() or not os.access(cli, os.X_OK):
        raise InputError(f"the nst-core program {cli} is not an executable file")
    source = plugin_source_dir()
    target = _pick_dir(gimp_dir) / PLUGIN_NAME
    if target.exists() and not _is_ours(target):
        raise InputError(f"{target} exists and is not an nst-core plug-in; move it away first")
    try:
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        for name in PLUGIN_FILES:
            shutil.copy2(source / name, target / name)
        main = target / PLUGIN_FILE
        main.chmod(main.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        (target / CLI_PATH_FILE).write_text(str(cli) + "\n", encoding="utf-8")
    except OSError as error:
        raise InputError(f"cannot install the GIMP plug-in into {target}: {error.strerror or error}") from None
    return target


def uninstall(gimp_dir: Path | str | None) -> bool:
    """Remove the plug-in from ``gimp_dir`` (default: every default folder). True if removed."""
    folders = [Path(gimp_dir).expanduser()] if gimp_dir is not None else default_gimp_plugin_dirs()
    removed = False
    for folder in folders:
        target = folder / PLUGIN_NAME
        if not target.exists():
            continue
        if not _is_ours(target):
            raise InputError(f"{target} is not an nst-core plug-in; not removing it")
        try:
            shutil.rmtree(target)
        except OSError as error:
            raise InputError(f"cannot remove {target}: {error.strerror or error}") from None
        removed = True
    return removed


def doctor(gimp_dir: Path | str | None) -> list[tuple[bool, str]]:
    """Check an installation: a list of (ok, one-line message), in the order a user fixes them."""
    checks: list[tuple[bool, str]] = []
    folder = _pick_dir(gimp_dir)
    target = folder / PLUGIN_NAME
    checks.append((folder.is_dir(), f"GIMP plug-in folder {folder} " + ("exists" if folder.is_dir() else
                   "is missing (start GIMP 3 once, or pass --gimp-dir)")))
    main = target / PLUGIN_FILE
    present = main.is_file() and all((target / name).is_file() for name in PLUGIN_FILES)
    checks.append((present, f"plug-in files in {target} " + ("present" if present else
                   "missing: run 'nst-core gimp install'")))
    runnable = main.is_file() and (sys.platform == "win32" or os.access(main, os.X_OK))
    checks.append((runnable, f"{main} " + ("is executable" if runnable else
                   "is not executable: run 'nst-core gimp install' again")))
    record = target / CLI_PATH_FILE
    if record.is_file():
        recorded = record.read_text(encoding="utf-8").strip()
        ok = bool(recorded) and os.path.isfile(recorded) and os.access(recorded, os.X_OK)
        checks.append((ok, f"recorded nst-core {recorded or '(empty)'} " + ("is executable" if ok else
                       "is missing or not executable: run 'nst-core gimp install' again")))
    else:
        on_path = shutil.which("nst-core")
        checks.append((on_path is not None, f"no recorded nst-core path ({record}); "
                       + (f"the plug-in will use {on_path} from PATH" if on_path else
                          "and no nst-core on PATH: run 'nst-core gimp install'")))
    checks.append(_weights_check())
    return checks


def _weights_check() -> tuple[bool, str]:
    """Which weights a run of the default model would use, and whether they are there."""
    try:
        from nst_core import weights
        from nst_core.engine import DEFAULT_MODEL

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
