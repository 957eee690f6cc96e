"""Loading a PyTorch file without running code from it, and saying why a file does not load.

:func:`load_tensors_only` is the one place nst-core calls ``torch.load``: always with
``weights_only=True`` (PyTorch's restricted unpickler: tensors, plain containers and numbers;
no class or function named in the file is ever called) and ``map_location="cpu"``. A failure
becomes a :class:`TorchFileError` whose ``kind`` the caller words for its own files (weights,
model files).

Telling a file that holds Python objects from a damaged one takes some care, because PyTorch's
message depends on what is refused and where (PyTorch 2.14):

* an object of a class, or a function, outside the allowed list, in a ``torch.save`` zip file
  or an old-style bare pickle (protocol 0–3): ``Unsupported global: GLOBAL module.name was not an
  allowed global by default``;
* a function of a *blocked* module (``os``, ``posix``, ``sys``, ``nt``), e.g. a malicious
  pickle whose ``__reduce__`` calls ``os.system``: ``Trying to load unsupported GLOBAL
  posix.system whose module posix is blocked`` (different words: matching only the first
  message took such files for corrupt ones);
* a pickle of protocol 4 or 5 (what ``pickle.dump`` writes by default): ``Unsupported operand
  149``, before any global is read, because the restricted unpickler does not know the ``FRAME``
  opcode. Then the pickle's opcodes are read here with :mod:`pickletools` (which only parses,
  never executes) for globals outside PyTorch's allowed list.

A pickle cut short inside a global's name makes PyTorch report the name less its last
character; such a file is truncated, not unsafe. PyTorch also warns about pickle protocols it
did not write (two lines on stderr); warnings are silenced during the load.
"""

from __future__ import annotations

import os
import pickletools
import re
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import torch

from .file_checks import FileProblem, read_head
from .message_text import short_reason

__all__ = [
    "CORRUPT",
    "NOT_PYTORCH",
    "OUT_OF_MEMORY",
    "PYTHON_OBJECTS",
    "UNREADABLE",
    "TorchFileError",
    "load_tensors_only",
    "refuse_python_objects",
]

#: :attr:`TorchFileError.kind`: the file holds Python objects or calls (``detail``: a name, or ``""``).
PYTHON_OBJECTS = "python objects"
#: A zip archive or pickle, as PyTorch writes them, that does not load: damaged or truncated.
CORRUPT = "corrupt"
#: Neither a zip archive nor a pickle.
NOT_PYTORCH = "not pytorch"
OUT_OF_MEMORY = "out of memory"
#: The file system refused (``detail``: its reason).
UNREADABLE = "unreadable"

_REFUSED_GLOBAL = re.compile(
    r"GLOBAL (\S+) was not an allowed global by default|unsupported GLOBAL (\S+) whose module \S+ is blocked"
)
#: PyTorch's words for an object it refused to build or call (no name given).
_REFUSED_OBJECT = re.compile(r"Trying to call reduce for unrecognized function|Can only (?:build|create new object)")
_IDENTIFIER = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")
_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = b"\x80"
_PYTHON2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}


class TorchFileError(Exception):
    """Why a file did not load: ``kind`` (one of the constants above) and a ``detail``."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind
        self.detail = detail


def load_tensors_only(path: str | os.PathLike[str]) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)``, warnings silenced.

    :raises TorchFileError: anything that keeps the file from loading, classified.
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch.load raises many kinds; none may escape
        raise _classify(path, error) from None


def refuse_python_objects(path: str | os.PathLike[str]) -> None:
    """Raise a :class:`TorchFileError` of kind :data:`PYTHON_OBJECTS` if the file is a pickle
    naming a class or function PyTorch's restricted unpickler would refuse.

    For files a caller does not load (not the zip archive it expects): the opcodes are only read
    (:mod:`pickletools`), nothing is unpickled. Anything else passes silently.
    """
    path = Path(path)
    found = _unsafe_global_in(path, _magic(path))
    if found is not None:
        raise TorchFileError(PYTHON_OBJECTS, found)


def _classify(path: Path, error: Exception) -> TorchFileError:
    if isinstance(error, MemoryError):
        return TorchFileError(OUT_OF_MEMORY)
    if isinstance(error, OSError):
        return TorchFileError(UNREADABLE, short_reason(error))
    magic = _magic(path)
    looks_like_torch = magic.startswith((_ZIP_MAGIC, _PICKLE_PROTO))
    text = str(error)
    refused = _REFUSED_GLOBAL.search(text)
    if refused:
        name = refused.group(1) or refused.group(2)
        plausible = looks_like_torch or _IDENTIFIER.fullmatch(name)
        if plausible and not _cut_inside(path, name.rsplit(".", 1)[-1]):
            return TorchFileError(PYTHON_OBJECTS, name)
    elif _REFUSED_OBJECT.search(text):
        return TorchFileError(PYTHON_OBJECTS)
    elif looks_like_torch:
        found = _unsafe_global_in(path, magic)
        if found is not None:
            return TorchFileError(PYTHON_OBJECTS, found)
    return TorchFileError(CORRUPT if looks_like_torch else NOT_PYTORCH)


def _magic(path: Path) -> bytes:
    try:
        return read_head(path, 4)
    except FileProblem:
        return b""


def _cut_inside(path: Path, name: str) -> bool:
    """Whether the file ends inside ``name`` (a pickle cut there is truncated, not unsafe).

    Reading a ``GLOBAL`` opcode at the end of a truncated pickle yields the name less its last
    character, so the file's last ``len(name) + 1`` bytes are the name and one byte that is not
    the newline that would end it.
    """
    expected = name.encode("utf-8", "replace")
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, path.stat().st_size - len(expected) - 1))
            tail = handle.read()
    except OSError:
        return False
    return len(tail) == len(expected) + 1 and tail.startswith(expected) and not tail.endswith(b"\n")


def _unsafe_global_in(path: Path, magic: bytes) -> str | None:
    """The first global in the file's pickles that PyTorch would not allow, found without unpickling."""
    allowed = _allowed_globals()
    for stream in _pickle_streams(path, magic):
        for name in _globals_of(stream):
            if not _is_allowed(name, allowed):
                return name
    return None


def _pickle_streams(path: Path, magic: bytes) -> Iterator[BinaryIO]:
    """The pickle data of a ``torch.save`` zip archive (its ``data.pkl``), or the file itself."""
    try:
        if magic == _ZIP_MAGIC:
            with zipfile.ZipFile(path) as archive:
                for member in archive.infolist():
                    if member.filename.rsplit("/", 1)[-1] == "data.pkl":
                        with archive.open(member) as stream:
                            yield stream
        else:
            with open(path, "rb") as stream:
                yield stream
    except (OSError, zipfile.BadZipFile, EOFError, RuntimeError):
        return  # unreadable or damaged: nothing more to learn


def _globals_of(stream: BinaryIO) -> Iterator[str]:
    """``module.name`` of every global the pickles in ``stream`` name, one pickle after another.

    ``STACK_GLOBAL`` (protocol 4+) takes module and name from the stack: here the last two
    strings pushed or fetched from the memo, which is what picklers write (``""`` otherwise).
    Reading stops at the first byte that does not continue a pickle (the raw tensor data after
    an old-style file's pickles, damage, or the end of the file).
    """
    memo: dict[int, Any] = {}
    while True:
        recent: list[Any] = [None, None]
        try:
            for opcode, arg, _position in pickletools.genops(stream):
                name = opcode.name
                if name in ("GLOBAL", "INST"):  # protocols 0-3: "module name"
                    yield _python3_name(str(arg).replace(" ", ".", 1))
                elif name == "STACK_GLOBAL":
                    module, attribute = recent[-2:]
                    known = isinstance(module, str) and isinstance(attribute, str)
                    yield f"{module}.{attribute}" if known else ""
                elif name in ("MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT"):  # the stack is unchanged
                    memo[len(memo) if arg is None else int(arg)] = recent[-1]
                    continue
                elif name in ("PROTO", "FRAME"):
                    continue
                elif name in ("GET", "BINGET", "LONG_BINGET"):
                    recent.append(memo.get(int(arg)))
                    continue
                recent.append(arg if isinstance(arg, str) else None)
        except (ValueError, EOFError, OSError, zipfile.BadZipFile):
            return


def _python3_name(name: str) -> str:
    """Python 2 module names that pickles of protocol < 3 use, as Python 3 has them."""
    module, _, attribute = name.rpartition(".")
    return f"{_PYTHON2_MODULES.get(module, module)}.{attribute}"


def _allowed_globals() -> set[str]:
    """The globals PyTorch's restricted unpickler allows (its own list and the user's)."""
    try:
        from torch import _weights_only_unpickler as unpickler

        return set(unpickler._get_allowed_globals()) | set(unpickler._get_user_allowed_globals())
    except Exception:  # noqa: BLE001 - a private API; without it the fallback below decides
        return set()


def _is_allowed(name: str, allowed: set[str]) -> bool:
    if allowed:
        return name in allowed
    return name.startswith(("torch.", "collections.OrderedDict"))
