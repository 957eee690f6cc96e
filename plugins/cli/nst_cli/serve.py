"""``nst-core serve``: one long-lived process that runs ``run`` requests from stdin.

A front end that paints often (the GIMP plug-in's preview) pays PyTorch's start-up and the
networks' loading once, not once per picture. The protocol is JSON lines:

* in, one request per line on stdin:

  - ``{"id": 7, "run": ["PHOTO", "PAINTING", "--method", "instant", "-o", "OUT.png"]}``: the
    arguments of ``nst-core run`` (any of them; ``--progress json`` is implied);
  - ``{"cancel": 7}``: stop request 7 (at its next step or tile; a queued one is dropped);
  - ``{"quit": true}``, or the end of stdin: exit once the running request is done.

* out, on stdout: ``{"event": "ready", "version": …, "methods": […]}`` once, then for each
  request the events ``nst-core run --progress json`` writes (``start``, ``progress``,
  ``notice``, ``done``, ``error`` …), each with the request's ``"id"``, and last
  ``{"event": "finished", "id": 7, "exit_code": 0}``. A line that is not a request gives
  ``{"event": "error", "id": null, …}`` and the server goes on.

Requests run one at a time, in order. Settings are the request's own: nothing carries over
between requests but what the methods keep loaded (networks, style vectors, fast models).
"""

from __future__ import annotations

import json
import queue
import signal
import sys
import threading
import time
from typing import Any

from . import streams

EXIT_USAGE = 2


class _Request:
    def __init__(self, request_id: Any, args: list[str]) -> None:
        from .reporters import Canceller

        self.id = request_id
        self.args = args
        self.canceller = Canceller()


class Server:
    """Reads requests on a thread (so that a cancel arrives while a request runs) and runs them."""

    def __init__(self, stdin: Any) -> None:
        self.stdin = stdin
        self.requests: queue.Queue[_Request | None] = queue.Queue()
        self.pending: dict[Any, _Request] = {}
        self.lock = threading.Lock()

    def read(self) -> None:
        for line in self.stdin:
            if not line.strip():
                continue
            try:
                message = json.loads(line)
                if not isinstance(message, dict):
                    raise ValueError("not a JSON object")
                if "cancel" in message:
                    self._cancel(message["cancel"])
                    continue
                if message.get("quit"):
                    break
                args = message.get("run")
                if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
                    raise ValueError('a request needs "run": a list of strings (the arguments of nst-core run)')
            except ValueError as error:
                streams.emit_json("error", id=None, message=f"bad request: {error}", exit_code=EXIT_USAGE)
                continue
            request = _Request(message.get("id"), args)
            with self.lock:
                self.pending[request.id] = request
            self.requests.put(request)
        self.requests.put(None)

    def _cancel(self, request_id: Any) -> None:
        with self.lock:
            request = self.pending.get(request_id)
        if request is not None:
            request.canceller.requested = signal.SIGINT

    def serve(self) -> int:
        threading.Thread(target=self.read, name="nst-core serve reader", daemon=True).start()
        while (request := self.requests.get()) is not None:
            code = self._run(request)
            with self.lock:
                self.pending.pop(request.id, None)
            streams.emit_json("finished", id=request.id, exit_code=code)
        return 0

    def _run(self, request: _Request) -> int:
        from nst_core.errors import NstError

        from .main import UsageError, build_parser, run_command, spell_setting

        if request.canceller.requested is not None:
            return 128 + request.canceller.requested
        started = time.perf_counter()
        streams.tags = {"id": request.id}
        try:
            args = build_parser().parse_args(["run", *request.args, "--progress", "json"])
            code = run_command(args, request.canceller, started)
        except NstError as error:
            return _error(error.render(spell_setting), error.exit_code)
        except UsageError as error:
            return _error(str(error), error.exit_code)
        except Exception as error:  # noqa: BLE001 - one request's bug must not end the server
            return _error(" ".join(f"internal error: {type(error).__name__}: {error}".split()), 1)
        finally:
            streams.tags = {}
        if request.canceller.requested is not None:
            return 128 + request.canceller.requested
        return code


def _error(message: str, code: int) -> int:
    streams.emit_json("error", message=message, exit_code=code)
    return code


def command_serve(args: Any) -> int:
    from nst_core import __version__
    from nst_core.plugins import shared_registries

    streams.emit_json("ready", version=__version__, methods=shared_registries().methods.names())
    return Server(sys.stdin).serve()
