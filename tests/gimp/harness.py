"""Helpers for the real-GIMP tests: the chroot (plugins/gimp/tools/gimp-env.sh), installing the
plug-in into a private HOME with the project's own install function, and running a batch script
in gimp-console-3.0.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GIMP_ENV = REPO / "plugins" / "gimp" / "tools" / "gimp-env.sh"
BATCH = Path(__file__).resolve().parent / "gimp_batch.py"
DIALOG = REPO / "plugins" / "gimp" / "tools" / "gimp_dialog.py"
WEIGHTS_NAME = "vgg16-imagenet-features.pth"


def weights_file() -> Path:
    """The real VGG-16 weights: $NST_CORE_WEIGHTS, else ../shared/weights beside the repository."""
    explicit = os.environ.get("NST_CORE_WEIGHTS")
    if explicit:
        return Path(explicit).resolve()
    return (REPO.parent / "shared" / "weights" / WEIGHTS_NAME).resolve()


def style_file() -> Path:
    return (REPO.parent / "shared" / "images" / "starry_night.jpg").resolve()


def photo_file() -> Path:
    return (REPO.parent / "shared" / "images" / "tubingen.jpg").resolve()


def env_for_gimp_env() -> dict[str, str]:
    """Environment for gimp-env.sh: bind this interpreter's venv and the weights' folder."""
    env = dict(os.environ)
    env["NST_GIMP_VENV"] = sys.prefix
    binds = [str(weights_file().parent), str(style_file().parent)]
    if env.get("NST_GIMP_BINDS"):
        binds.append(env["NST_GIMP_BINDS"])
    env["NST_GIMP_BINDS"] = ":".join(binds)
    return env


def ensure_env(timeout: float = 1200) -> float:
    """Build the chroot if needed; return the seconds it took. Raises RuntimeError loudly."""
    started = time.monotonic()
    proc = subprocess.run(["bash", str(GIMP_ENV), "ensure"], env=env_for_gimp_env(), capture_output=True,
                          text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"cannot build the GIMP 3 chroot (gimp-env.sh ensure, exit {proc.returncode}):\n"
                           f"{proc.stderr.strip()}")
    return time.monotonic() - started


def cli_executable() -> Path:
    """The real nst-core of the environment running the tests."""
    candidate = Path(sys.prefix) / "bin" / "nst-core"
    if candidate.is_file():
        return candidate
    found = Path(sys.executable).with_name("nst-core")
    if found.is_file():
        return found
    raise RuntimeError(f"no nst-core executable next to {sys.executable}; pip install -e . first")


def install_plugin(home: Path, cli: Path | None = None) -> Path:
    """Install the plug-in into HOME/.config/GIMP/3.0/plug-ins with the project's installer (in
    a profile that skips GIMP's welcome dialog), driving ``cli`` (default: :func:`cli_executable`)."""
    cli = cli or cli_executable()
    sys.path.insert(0, str(REPO / "plugins" / "cli"))
    from nst_cli.gimp_install import install

    profile = home / ".config" / "GIMP" / "3.0"
    (profile / "plug-ins").mkdir(parents=True, exist_ok=True)
    (profile / "gimprc").write_text("(show-welcome-dialog no)\n")
    return install(profile / "plug-ins", cli)


def run_batch(home: Path, spec: dict, *, timeout: float = 600, extra_env: dict | None = None) -> dict:
    """Start gimp-console-3.0 in the chroot, run gimp_batch.py with ``spec``; return its results
    plus "_gimp": {"seconds", "returncode", "output"}."""
    work = Path(spec["results"]).parent
    spec_path = work / "spec.json"
    spec_path.write_text(json.dumps(spec))
    tmpdir = work / "plugin-tmp"
    tmpdir.mkdir(exist_ok=True)
    inner_env = {
        "HOME": str(home), "NST_GIMP_TEST_SPEC": str(spec_path), "TMPDIR": str(tmpdir),
        "NST_CORE_WEIGHTS": str(weights_file()), "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"), "XDG_DATA_HOME": str(home / ".local" / "share"),
        "NST_CORE_CACHE_DIR": str(home / ".cache" / "nst-core"), "OMP_NUM_THREADS": "2",
        **(extra_env or {}),
    }
    command = ["bash", str(GIMP_ENV), "run", "env", *(f"{k}={v}" for k, v in inner_env.items()),
               "gimp-console-3.0", "-i", "--batch-interpreter=python-fu-eval",
               "-b", f"exec(open({str(BATCH)!r}).read())", "--quit"]
    gimp_env = env_for_gimp_env()
    # make sure the test's folders are visible inside the chroot (they usually are, under /tmp)
    gimp_env["NST_GIMP_BINDS"] += f":{work}:{home}"
    started = time.monotonic()
    proc = subprocess.run(command, env=gimp_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=timeout)
    seconds = time.monotonic() - started
    results_path = Path(spec["results"])
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    results["_gimp"] = {"seconds": round(seconds, 1), "returncode": proc.returncode, "output": proc.stdout[-8000:],
                        "leftover_temp": sorted(p.name for p in tmpdir.iterdir())}
    return results


def run_dialog(home: Path, spec: dict, *, timeout: float = 900) -> dict:
    """Run plugins/gimp/tools/gimp_dialog.py in the chroot (GIMP 3 with its window on Xvfb) with
    ``spec`` ("home" is set here); return its results plus "_output"."""
    work = Path(spec["results"]).parent
    spec_path = work / "dialog-spec.json"
    spec_path.write_text(json.dumps({**spec, "home": str(home)}))
    tmpdir = work / "plugin-tmp"
    tmpdir.mkdir(exist_ok=True)
    inner_env = {"NST_CORE_WEIGHTS": str(weights_file()), "TMPDIR": str(tmpdir), "OMP_NUM_THREADS": "2",
                 "NST_CORE_CACHE_DIR": str(home / ".cache" / "nst-core"), "NST_GIMP_DIALOG_TIMEOUT": "240",
                 "NST_GIMP_DIALOG_SHOTS": os.environ.get("NST_GIMP_DIALOG_SHOTS", "")}
    command = ["bash", str(GIMP_ENV), "run", "env", *(f"{k}={v}" for k, v in inner_env.items()),
               "python3", str(DIALOG), str(spec_path)]
    gimp_env = env_for_gimp_env()
    gimp_env["NST_GIMP_BINDS"] += f":{work}:{home}"
    proc = subprocess.run(command, env=gimp_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout)
    results_path = Path(spec["results"])
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    log = Path(spec["results"] + ".log")
    quiet = "\n".join(line for line in proc.stdout.splitlines() if "dconf" not in line and line.strip())
    results["_output"] = quiet[-6000:] + "\n--- GIMP:\n" + (log.read_text()[-3000:] if log.is_file() else "")
    results["_returncode"] = proc.returncode
    return results


def nst_core(args: list[str], home: Path, *, in_chroot: bool = False,
             timeout: float = 300) -> subprocess.CompletedProcess:
    """Run this environment's nst-core with HOME=home (no GIMP-related overrides), on the host or
    inside the GIMP chroot (where gimp-3.0 exists)."""
    env = {"HOME": str(home), "NST_CORE_WEIGHTS": str(weights_file()), "PATH": "/usr/bin:/bin"}
    command = [str(cli_executable()), *args]
    if in_chroot:
        command = ["bash", str(GIMP_ENV), "run", "env", *(f"{k}={v}" for k, v in env.items()), *command]
        env = {**env_for_gimp_env()}
        env["NST_GIMP_BINDS"] += f":{home}"
    else:
        env = {k: v for k, v in os.environ.items() if k not in ("XDG_CONFIG_HOME", "GIMP3_DIRECTORY")} | env
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)


def train_tiny_model(path: Path) -> Path:
    """A fast-style model (tiny network, 2 steps on the test photo, real VGG-16) at ``path``."""
    import numpy as np
    from PIL import Image

    from nst_core.fast import NetworkShape, TrainingSettings, train, training_config

    def load(file: Path) -> np.ndarray:
        with Image.open(file) as image:
            image = image.convert("RGB")
            image.thumbnail((64, 64))
            return np.asarray(image, dtype=np.float32) / 255

    path.parent.mkdir(parents=True, exist_ok=True)
    settings = TrainingSettings(steps=2, batch_size=1, crop_size=32, style_size=64, checkpoint_every=0,
                                network=NetworkShape(channels=(4, 8, 8), residual_blocks=1))
    train(load(style_file()), [load(photo_file())], path, style_name=path.stem, settings=settings,
          config=training_config(weights=str(weights_file()), device="cpu"))
    return path


def save_photo(path: Path, width: int, height: int) -> Path:
    """The test photo resized to WIDTH×HEIGHT, as an RGB file GIMP opens (the format by the suffix)."""
    from PIL import Image

    with Image.open(photo_file()) as photo:
        photo.convert("RGB").resize((width, height)).save(path)
    return path


def write_photo(path: Path, width: int, height: int) -> None:
    """The test photo as raw R'G'B'A u8 bytes (made with Pillow from the venv)."""
    from PIL import Image

    with Image.open(photo_file()) as image:
        image = image.convert("RGBA").resize((width, height), Image.LANCZOS)
        path.write_bytes(image.tobytes())
