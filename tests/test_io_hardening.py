"""Files and formats, hardened: no import cycles, one atomic write, one guarded torch.load,
inputs that are not regular files, outputs checked before a run, a damaged probe cache.

Command-line cases run the real ``nst-core`` as a subprocess, with a timeout: a regression that
blocks (a named pipe read as an image) fails instead of hanging the suite.
"""

from __future__ import annotations

import ast
import contextlib
import json
import math
import os
import pickle
import signal
import stat
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import nst_core
from nst_core import precision
from nst_core import weights as W
from nst_core.atomic_file import KEPT_NAME_BYTES, temporary_prefix, write_atomically
from nst_core.errors import InputError
from nst_core.fast.model_file import load_model, save_model
from nst_core.fast.network import NetworkShape, TransformNet
from nst_core.image import check_save_path, load_image, save_image

from .conftest import weights_error_of
from .test_cli import one_line_error, run_cli

CPU = torch.device("cpu")
TINY_SHAPE = NetworkShape(channels=(2, 2, 2), residual_blocks=0)


# --------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def deadline(seconds: int):
    """Fail (instead of hanging) when the body blocks longer than ``seconds``."""

    def expired(signum, frame):
        raise TimeoutError(f"blocked for more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def umask(mask: int):
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def fifo(folder: Path, name: str = "pipe.png") -> Path:
    path = folder / name
    os.mkfifo(path)
    return path


class Payload:
    """What a malicious pickle does: ``os.system`` creating a marker file when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def malicious_files(folder: Path) -> tuple[dict[str, Path], Path]:
    """The same payload as a ``torch.save`` zip, an old-style bare pickle, and a protocol-5 pickle."""
    marker = folder / "payload-ran"
    evil = {"0.weight": Payload(marker)}
    made = {name: folder / name for name in ("zip.pth", "protocol2.pth", "protocol5.pth", "protocol0.pth")}
    torch.save(evil, made["zip.pth"])
    made["protocol2.pth"].write_bytes(pickle.dumps(evil, protocol=2))
    made["protocol5.pth"].write_bytes(pickle.dumps(evil, protocol=5))  # pickle.dump's default kind
    made["protocol0.pth"].write_bytes(f"cposix\nsystem\n(Vtouch '{marker}'\ntR.".encode())  # written by hand
    return made, marker


def zip_with_data_pickle(path: Path, data: bytes, template: Path) -> None:
    """A copy of the ``torch.save`` archive ``template`` whose ``data.pkl`` is ``data``."""
    with zipfile.ZipFile(template) as source, zipfile.ZipFile(path, "w") as target:
        for member in source.infolist():
            body = data if member.filename.endswith("/data.pkl") else source.read(member)
            target.writestr(member, body)


def tiny_model_file(path: Path) -> Path:
    return save_model(path, TransformNet(TINY_SHAPE), metadata={"style_name": "tiny", "step": 0})


def progress_events(proc) -> list[dict]:
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    return [event for event in events if event.get("event") == "progress"]


# --------------------------------------------------------------------------- import cycles

CYCLE_CHECK = """
import importlib, pkgutil, sys, traceback
import torch  # stays imported: each round re-imports only nst_core
import nst_core
names = sorted(m.name for m in pkgutil.walk_packages(nst_core.__path__, "nst_core."))
failures = []
for name in names:
    for key in [k for k in sys.modules if k == "nst_core" or k.startswith("nst_core.")]:
        del sys.modules[key]
    try:
        importlib.import_module(name)
    except Exception as error:
        failures.append(f"{name}: {type(error).__name__}: {error}")
print(len(names))
print("\\n".join(failures))
"""


def test_every_nst_core_module_imports_first_without_a_cycle():
    proc = subprocess.run([sys.executable, "-c", CYCLE_CHECK], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr
    count, *failures = proc.stdout.splitlines()
    assert int(count) > 30  # every module was found, the new packages' modules included
    assert [line for line in failures if line] == []


def module_level_imports() -> dict[str, set[str]]:
    """Each ``nst_core`` module → the ``nst_core`` modules it imports at module level (not in functions)."""
    root = Path(nst_core.__file__).parent
    modules = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    graph = {}
    for name, (path, is_package) in modules.items():
        package = name if is_package else name.rpartition(".")[0]
        needs = set()
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Import):
                needs.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
                module = ".".join(base + ([node.module] if node.module else []))
                named = [f"{module}.{alias.name}" for alias in node.names]
                needs.update(item for item in named if item in modules)  # submodules: not their package
                if any(item not in modules for item in named):
                    needs.add(module)  # names defined in the module itself
        graph[name] = {item for item in needs if item in modules and item != name}
    return graph


def test_module_level_imports_form_no_cycle():
    """Python tolerates some cycles (a name defined before the other side asks for it); none is wanted."""
    graph = module_level_imports()
    assert {"nst_core.weights.resolve", "nst_core.vgg_layout", "nst_core.image.png16"} <= set(graph)
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            pytest.fail("import cycle: " + " -> ".join(path[path.index(name):] + [name]))
        if name not in done:
            for needed in sorted(graph[name]):
                visit(needed, path + [name])
            done.add(name)

    for name in sorted(graph):
        visit(name, [])


def test_the_weights_package_does_not_import_features():
    """The old cycle: features needs weights to build a network, weights needed features' tables."""
    for path in Path(W.__file__).parent.glob("*.py"):
        imports = [line for line in path.read_text().splitlines() if line.startswith(("from ", "import "))]
        assert not any("features" in line for line in imports), path.name


# --------------------------------------------------------------------------- atomic writes


def test_temporary_names_fit_beside_a_250_byte_name(tmp_path):
    name = "é" * 120 + "x.png"  # 245 bytes in UTF-8
    assert len(os.fsencode(name)) == 245
    prefix = temporary_prefix(name)
    assert prefix.startswith(".éé") and len(os.fsencode(prefix)) <= KEPT_NAME_BYTES + 2
    target = tmp_path / ("n" * 246 + ".png")  # 250 bytes
    write_atomically(target, lambda handle: handle.write(b"content"))
    assert target.read_bytes() == b"content" and [p.name for p in tmp_path.iterdir()] == [target.name]


def test_atomic_write_permissions_and_cleanup(tmp_path):
    target = tmp_path / "file.bin"
    target.write_bytes(b"old")
    os.chmod(target, 0o600)

    def failing(handle):
        handle.write(b"partial")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        write_atomically(target, failing)
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["file.bin"]
    with umask(0o027):
        write_atomically(target, lambda handle: handle.write(b"new"))
    assert target.read_bytes() == b"new" and stat.S_IMODE(target.stat().st_mode) == 0o640


def test_model_files_get_the_permissions_of_new_files(tmp_path):
    with umask(0o022):
        path = tiny_model_file(tmp_path / "m.nst")
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert load_model(path).style_name == "tiny"
    assert [p.name for p in tmp_path.iterdir()] == ["m.nst"]


def test_cached_weights_and_embedded_files_are_written_atomically_with_long_names(tmp_path, random_weights_file):
    with umask(0o022):
        loaded = W.import_weights(random_weights_file)
    assert stat.S_IMODE(loaded.path.stat().st_mode) == 0o644
    assert sorted(p.name for p in loaded.path.parent.iterdir()) == ["vgg16.pth"]
    arrays = {key: value.numpy() for key, value in loaded.state_dict.items()}
    long_name = tmp_path / ("w" * 246 + ".npz")
    W.write_embedded_file(long_name, "vgg16", arrays)
    assert W.read_weights_file(long_name).model == "vgg16"
    assert [p.name for p in tmp_path.iterdir()] == [long_name.name]


def test_a_250_byte_image_name_is_saved(tmp_path):
    target = tmp_path / ("i" * 246 + ".png")
    save_image(target, np.full((4, 5, 3), 0.5, np.float32))
    assert load_image(target).rgb.shape == (4, 5, 3)


# --------------------------------------------------------------------------- guarded torch.load


@pytest.mark.parametrize("kind", ["zip.pth", "protocol2.pth", "protocol5.pth", "protocol0.pth"])
def test_malicious_pickles_are_refused_as_weights(tmp_path, kind):
    made, marker = malicious_files(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        message = weights_error_of(W.read_weights_file, made[kind])
    assert "holds Python objects" in message and "refused for safety" in message, message
    assert "posix.system" in message and str(made[kind]) in message
    assert caught == []  # PyTorch's pickle-protocol warning is not passed on
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["zip.pth", "protocol2.pth", "protocol5.pth", "protocol0.pth"])
def test_malicious_pickles_are_refused_as_models(tmp_path, kind):
    made, marker = malicious_files(tmp_path)
    with pytest.raises(InputError) as info:
        load_model(made[kind])
    message = str(info.value)
    assert "\n" not in message and "holds Python objects" in message and "refused for safety" in message, message
    assert message.startswith(f"cannot load model '{made[kind]}'")
    assert not marker.exists()


def test_a_protocol5_pickle_inside_a_torch_archive_is_refused(tmp_path):
    marker = tmp_path / "payload-ran"
    template = tiny_model_file(tmp_path / "good.nst")
    crafted = tmp_path / "crafted.nst"
    zip_with_data_pickle(crafted, pickle.dumps({"x": Payload(marker)}, protocol=5), template)
    with pytest.raises(InputError) as info:
        load_model(crafted)
    assert "holds Python objects" in str(info.value)
    assert "Python objects" in weights_error_of(W.read_weights_file, crafted)
    assert not marker.exists()


def test_damaged_files_are_still_corrupt_not_unsafe(tmp_path, random_weights_file):
    good = random_weights_file.read_bytes()
    model = tiny_model_file(tmp_path / "good.nst").read_bytes()
    torch.save({"0.weight": torch.zeros(2)}, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    legacy = (tmp_path / "legacy.pth").read_bytes()
    cuts = {
        "zip.pth": good[: len(good) // 2],
        "legacy.pth": legacy[: len(legacy) // 2],
        "inside-a-global.pth": legacy[: legacy.index(b"_rebuild_tensor") + 8],
        "plain-pickle.pth": pickle.dumps({"a": [1, 2]}, protocol=5),
    }
    for name, data in cuts.items():
        (tmp_path / name).write_bytes(data)
        assert "corrupt or truncated" in weights_error_of(W.read_weights_file, tmp_path / name), name
    (tmp_path / "cut.nst").write_bytes(model[: len(model) // 2])
    with pytest.raises(InputError, match="corrupt or truncated"):
        load_model(tmp_path / "cut.nst")


def test_malicious_weights_and_models_from_the_command_line(tmp_path, small_files, random_weights):
    made, marker = malicious_files(tmp_path)
    content, style = small_files
    output = tmp_path / "out.png"
    for kind in ("zip.pth", "protocol5.pth"):
        proc = run_cli("run", content, style, "-o", output, "--size", 32, "-n", 1, "--weights", made[kind],
                       timeout=120)
        assert "Python objects" in one_line_error(proc, 2)
        model = made[kind].with_suffix(".nst")
        model.write_bytes(made[kind].read_bytes())
        proc = run_cli("run", content, "--fast-model", model, "-o", output, timeout=120)
        assert "Python objects" in one_line_error(proc, 2)
    assert not marker.exists() and not output.exists()


# --------------------------------------------------------------------------- inputs that are not files


def test_named_pipes_and_devices_are_refused_without_blocking(tmp_path):
    pipe = fifo(tmp_path)
    with deadline(10):
        with pytest.raises(InputError, match="named pipe") as info:
            load_image(pipe)
        assert str(info.value) == f"cannot read image '{pipe}': it is a named pipe (FIFO), not a regular file"
        with pytest.raises(InputError, match="character device"):
            load_image("/dev/zero")
        assert "named pipe" in weights_error_of(W.read_weights_file, fifo(tmp_path, "w.pth"))
        assert "character device" in weights_error_of(W.read_weights_file, "/dev/zero")
        with pytest.raises(InputError, match="named pipe"):
            load_model(fifo(tmp_path, "m.nst"))
        with pytest.raises(InputError, match="character device"):
            load_model("/dev/null")


def test_a_named_pipe_as_content_is_refused_by_the_command(tmp_path, small_files, random_weights):
    _content, style = small_files
    pipe = fifo(tmp_path)
    proc = run_cli("run", pipe, style, "-o", tmp_path / "out.png", "--size", 32, "-n", 1, timeout=60)
    message = one_line_error(proc, 2)
    assert "named pipe" in message and str(pipe) in message
    proc = run_cli("run", "/dev/zero", style, "-o", tmp_path / "out.png", "--size", 32, "-n", 1, timeout=60)
    assert "character device" in one_line_error(proc, 2)
    weights_pipe = fifo(tmp_path, "w.pth")
    proc = run_cli("run", style, style, "-o", tmp_path / "out.png", "--size", 32, "-n", 1,
                   "--weights", weights_pipe, timeout=60)
    assert "named pipe" in one_line_error(proc, 2)
    model_pipe = fifo(tmp_path, "m.nst")
    proc = run_cli("run", style, "--fast-model", model_pipe, "-o", tmp_path / "out.png", timeout=60)
    assert str(model_pipe) in one_line_error(proc, 2)  # the models-folder lookup already wants a file
    assert not (tmp_path / "out.png").exists()


# --------------------------------------------------------------------------- outputs checked first


def test_check_save_path_refuses_names_too_long_for_the_file_system(tmp_path):
    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    too_long = tmp_path / ("x" * (limit - 3) + ".png")
    with pytest.raises(InputError) as info:
        check_save_path(too_long)
    message = str(info.value)
    assert message.startswith(f"cannot save '{too_long}': the file name is {limit + 1} bytes long")
    assert "\n" not in message
    with pytest.raises(InputError, match="bytes long"):
        save_image(too_long, np.zeros((2, 2, 3), np.float32))
    with pytest.raises(InputError, match="bytes long"):
        save_model(tmp_path / ("x" * limit + ".nst"), TransformNet(TINY_SHAPE), metadata={"style_name": "t", "step": 0})
    fitting = tmp_path / ("x" * (limit - 4) + ".png")
    assert check_save_path(fitting) == ("PNG", fitting)


def test_check_save_path_refuses_a_folder_it_cannot_write(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "access", lambda path, mode, **kwargs: False)  # what a non-root user sees
    with pytest.raises(InputError) as info:
        check_save_path(tmp_path / "out.png")
    assert str(info.value) == f"cannot save '{tmp_path / 'out.png'}': directory '{tmp_path}' is not writable"
    with pytest.raises(InputError, match="not writable"):
        save_model(tmp_path / "m.nst", TransformNet(TINY_SHAPE), metadata={"style_name": "t", "step": 0})


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into any folder")
def test_a_read_only_folder_is_refused_before_the_run(tmp_path, small_files, random_weights):
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        proc = run_cli("run", *small_files, "-o", folder / "out.png", "--size", 32, "-n", 2, "--progress", "json")
        assert "not writable" in one_line_error(proc, 2)
        assert progress_events(proc) == []
    finally:
        folder.chmod(0o755)


def test_a_name_too_long_is_refused_before_the_run(tmp_path, small_files, random_weights):
    output = tmp_path / ("o" * 300 + ".png")
    proc = run_cli("run", *small_files, "-o", output, "--size", 32, "-n", 2, "--progress", "json", timeout=120)
    message = one_line_error(proc, 2)
    assert "cannot save" in message and "bytes long" in message
    assert progress_events(proc) == []


def test_a_250_byte_output_name_works_end_to_end(tmp_path, small_files, random_weights):
    output = tmp_path / ("o" * 246 + ".png")
    assert len(os.fsencode(output.name)) == 250
    proc = run_cli("run", *small_files, "-o", output, "--size", 32, "-n", 2, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert output.is_file() and load_image(output).rgb.shape[:2] == (24, 32)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# --------------------------------------------------------------------------- the probe cache


class Probe:
    def __init__(self):
        self.calls = 0

    def __call__(self, precision_name, layout, convolution):
        self.calls += 1
        return {"contiguous": 1.0, "channels_last": 0.5}[layout]


GARBAGE = {
    "string": "x",
    "wrong value type": {"fp32/contiguous": "fast", "fp32/channels_last": 0.5},
    "list": [1, 2],
    "nested": {"fp32/contiguous": {"a": [{"b": None}]}, "fp32/channels_last": [[[]]]},
    "negative": {"fp32/contiguous": -1.0, "fp32/channels_last": 0.5},
    "zero": {"fp32/contiguous": 0, "fp32/channels_last": 0.5},
    "nan": {"fp32/contiguous": math.nan, "fp32/channels_last": 0.5},
    "infinite": {"fp32/contiguous": math.inf, "fp32/channels_last": 0.5},
    "huge integer": {"fp32/contiguous": 10**400, "fp32/channels_last": 0.5},
    "boolean": {"fp32/contiguous": True, "fp32/channels_last": 0.5},
    "missing candidate": {"fp32/channels_last": 0.5},
    "extra candidate": {"fp32/contiguous": 1.0, "fp32/channels_last": 0.5, "bf16/x": 0.1},
    "null": None,
}


@pytest.mark.parametrize("garbage", sorted(GARBAGE))
def test_wrong_typed_probe_entries_are_measured_anew(garbage):
    cache = W.cache_dir() / "probes.json"
    cache.parent.mkdir(parents=True, exist_ok=True)
    key = f"{precision.machine_key(CPU)}|k|fp32/contiguous,fp32/channels_last"
    cache.write_text(json.dumps({key: GARBAGE[garbage], "other": [1]}))
    probe = Probe()
    choice = precision.choose("fp32", "auto", CPU, probe=probe, cache_key="k")
    assert probe.calls == 2 and choice.memory_format == "channels_last" and "measured per step" in choice.reason
    stored = json.loads(cache.read_text())
    assert stored[key] == {"fp32/contiguous": 1.0, "fp32/channels_last": 0.5} and stored["other"] == [1]
    again = precision.choose("fp32", "auto", CPU, probe=probe, cache_key="k")
    assert probe.calls == 2 and "measured earlier" in again.reason


@pytest.mark.parametrize("data", [b"[1, 2]", b"not json", b"[" * 100000 + b"]" * 100000, b"\xff\xfe"])
def test_a_probe_file_that_is_not_an_object_is_ignored(data):
    cache = W.cache_dir() / "probes.json"
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(data)
    probe = Probe()
    assert precision.choose("fp32", "auto", CPU, probe=probe, cache_key="k").memory_format == "channels_last"
    assert probe.calls == 2 and isinstance(json.loads(cache.read_text()), dict)


def test_a_broken_probe_cache_does_not_break_a_run(tmp_path, small_files, random_weights):
    output = tmp_path / "out.png"
    first = run_cli("run", *small_files, "-o", output, "--size", 32, "-n", 1, "--memory-format", "auto", timeout=300)
    assert first.returncode == 0, first.stderr
    cache = W.cache_dir() / "probes.json"
    entries = json.loads(cache.read_text())
    assert entries  # the run measured and remembered
    cache.write_text(json.dumps({key: {"fp32/contiguous": "fast", "fp32/channels_last": [1, 2]}
                                 for key in entries}))
    output.unlink()
    proc = run_cli("run", *small_files, "-o", output, "--size", 32, "-n", 1, "--memory-format", "auto", timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert output.is_file() and "internal error" not in proc.stderr
    assert all(isinstance(value, dict) and all(isinstance(v, float) for v in value.values())
               for value in json.loads(cache.read_text()).values())
