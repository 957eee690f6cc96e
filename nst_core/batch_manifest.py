"""A batch's manifest: which outputs are complete, so that a resumed batch redoes exactly the rest.

One JSON file per output folder, ``.nst-core-batch.json``, rewritten atomically after each job
that finished. An entry says, for one output file, which job made it (a digest of the content
file's bytes, the style files' and other inputs' bytes and every setting) and what it wrote
(size and SHA-256 of the output). A job is complete when its entry has the same job digest and
the output file on disk still has that size and digest: an output that exists but was cut short,
replaced, or made from other settings is done again. A damaged manifest counts as empty.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .atomic_file import write_atomically

MANIFEST_NAME = ".nst-core-batch.json"
FORMAT = "nst-core batch manifest/1"
_CHUNK = 1 << 20


def file_digest(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def job_digest(content: Path, inputs: Iterable[str], settings: dict[str, Any], output_suffix: str) -> str:
    """What makes a job's output what it is: its content's bytes, its other inputs' digests (styles,
    a model …), every setting and the output's file type."""
    record = {"content": file_digest(content), "inputs": list(inputs), "settings": settings,
              "suffix": output_suffix.lower()}
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()


class Manifest:
    """The manifest of one output folder."""

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / MANIFEST_NAME
        self.entries: dict[str, dict[str, Any]] = self._read()
        self._lock = threading.Lock()

    def _read(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        entries = data.get("outputs") if isinstance(data, dict) and data.get("format") == FORMAT else None
        if not isinstance(entries, dict):
            return {}
        return {name: entry for name, entry in entries.items() if isinstance(entry, dict)}

    def complete(self, output: Path, digest: str) -> bool:
        """Whether ``output`` is there, whole, made by the job of ``digest``."""
        entry = self.entries.get(output.name)
        if entry is None or entry.get("job") != digest:
            return False
        try:
            if output.stat().st_size != entry.get("size"):
                return False
            return file_digest(output) == entry.get("sha256")
        except OSError:
            return False

    def record(self, output: Path, digest: str) -> None:
        """Note ``output`` as complete (it was just written whole) and rewrite the manifest."""
        entry = {"job": digest, "size": output.stat().st_size, "sha256": file_digest(output)}
        with self._lock:
            self.entries[output.name] = entry
            text = json.dumps({"format": FORMAT, "outputs": self.entries}, indent=1, sort_keys=True)
            write_atomically(self.path, lambda handle: handle.write(text.encode()))
