"""``nst-core serve``: one process answering run requests (JSON lines), as a real subprocess."""

import json
import subprocess

import numpy as np
from PIL import Image

from .conftest import shared_image
from .test_cli import NST_CORE


class Server:
    def __init__(self, env=None):
        import os

        self.proc = subprocess.Popen([str(NST_CORE), "serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})

    def send(self, message):
        self.proc.stdin.write((message if isinstance(message, str) else json.dumps(message)) + "\n")
        self.proc.stdin.flush()

    def event(self):
        line = self.proc.stdout.readline()
        assert line, self.proc.stderr.read()
        return json.loads(line)

    def until_finished(self, request_id):
        events = []
        while True:
            event = self.event()
            events.append(event)
            if event["event"] == "finished" and event["id"] == request_id:
                return events

    def close(self):
        self.proc.stdin.close()
        code = self.proc.wait(timeout=60)
        return code


def _files(tmp_path):
    photo, style = tmp_path / "photo.png", tmp_path / "style.png"
    Image.fromarray((shared_image("tubingen.jpg", 64) * 255).astype(np.uint8)).save(photo)
    Image.fromarray((shared_image("starry_night.jpg", 64) * 255).astype(np.uint8)).save(style)
    return photo, style


def test_serve_answers_requests_in_order_tagged_with_their_id(tmp_path):
    photo, style = _files(tmp_path)
    server = Server()
    try:
        ready = server.event()
        assert ready["event"] == "ready" and "instant" in ready["methods"]
        for number, strength in ((1, "1"), (2, "0.5")):
            out = tmp_path / f"o{number}.png"
            server.send({"id": number, "run": [str(photo), str(style), "--method", "instant", "-o", str(out),
                                               "--style-strength", strength]})
            events = server.until_finished(number)
            assert all(event["id"] == number for event in events)
            assert [e["event"] for e in events] == ["start", "done", "finished"]
            assert events[1]["info"]["style_strength"] == strength and events[-1]["exit_code"] == 0
            assert Image.open(out).size == Image.open(photo).size
        # a bad line and a bad request: errors, and the server goes on
        server.send("not json")
        bad = server.event()
        assert bad["event"] == "error" and bad["id"] is None and "bad request" in bad["message"]
        server.send({"id": "x", "run": [str(photo), "--method", "instant", "-o", str(tmp_path / "o.png")]})
        events = server.until_finished("x")
        assert events[0]["event"] == "error" and "no style" in events[0]["message"]
        assert events[-1]["exit_code"] == 2
    finally:
        assert server.close() == 0


def test_serve_cancels_a_running_request_and_goes_on(random_weights, tmp_path):
    photo, style = _files(tmp_path)
    server = Server()
    try:
        assert server.event()["event"] == "ready"
        server.send({"id": 1, "run": [str(photo), str(style), "-o", str(tmp_path / "slow.png"), "--size", "64",
                                      "-n", "100000"]})
        while server.event()["event"] != "progress":
            pass
        server.send({"cancel": 1})
        events = server.until_finished(1)
        done = [e for e in events if e["event"] == "done"]
        assert done and done[0]["cancelled"] is True and done[0]["steps"] < 100000
        assert events[-1]["exit_code"] == 130 and (tmp_path / "slow.png").is_file()
        server.send({"id": 2, "run": [str(photo), str(style), "-o", str(tmp_path / "next.png"), "--size", "32",
                                      "-n", "2"]})
        assert server.until_finished(2)[-1]["exit_code"] == 0
        server.send({"quit": True})
    finally:
        assert server.close() == 0
