#!/usr/bin/env python3
"""Drive GIMP 3's Neural Style dialog on a virtual display (Xvfb): runs INSIDE the chroot of
gimp-env.sh, with its python3 (which has GIMP's GObject bindings, used here for screenshots).

    gimp-env.sh run python3 plugins/gimp/tools/gimp_dialog.py SPEC.json

SPEC.json: {"home": HOME with the plug-in installed, "image": PATH, "results": PATH,
            "runs": [{"procedure": NAME, "props": {...}, "channels": {...}, "expand_advanced": bool, "pause": S,
                      "screenshot": PNG PATH, "keys": ["Return", {"wait_for": TEXT, "count": N},
                                                       {"screenshot": PNG PATH}, "Escape", ...]}]}
For each run GIMP opens the dialog (gimp_dialog_batch.py; NAME: the procedure, by default Paint
Like a Painting's); this script waits for it, optionally expands "Advanced" and saves a picture
of the dialog, then goes through the keys one by one: a key is pressed, noting S seconds later
(default 3) whether the dialog is still open; {"wait_for"} waits until the plug-in's log
($NST_GIMP_LOG, RESULTS.plugin.log) has N lines holding TEXT (e.g. "drawn": the preview);
{"screenshot"} saves a picture of the dialog. Results: {"runs": [{"open_after": [bool per key],
"waits": [seconds per wait], "geometry": [x, y, w, h]}], "gimp": [outcome per run from GIMP],
"gimp_returncode": N, "plugin_log": [its lines]}.

Used by tests/gimp/test_gimp_dialog.py and to make docs/images/gimp_dialog.png:
    plugins/gimp/tools/gimp-dialog-picture.sh
Environment: NST_GIMP_DIALOG_TIMEOUT, seconds to wait for each dialog (300);
NST_GIMP_DIALOG_SHOTS, a folder to save the whole screen into after each key (debugging).
"""

import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TITLE = "^(Neural Style|Instant Style|Paint by Region)$"


def xdotool(*args, timeout=30):
    return subprocess.run(["xdotool", *args], capture_output=True, text=True, timeout=timeout).stdout.split()


def start_display():
    read, write = os.pipe()
    server = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0", "1400x1000x24", "-nolisten", "tcp"],
                              pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write)
    with os.fdopen(read) as pipe:
        number = pipe.readline().strip()
    if not number:
        raise SystemExit("gimp_dialog.py: Xvfb did not start")
    return server, f":{number}"


def dismiss_welcome():
    """Hide GIMP's "Welcome to GIMP" window (shown on a first start, at a moment of its own),
    which would otherwise take the keys meant for the dialog."""
    for window in xdotool("search", "--onlyvisible", "--name", "^Welcome to GIMP"):
        xdotool("windowunmap", "--sync", window)


def dialogs():
    """The open Neural Style dialogs, each as (window id, process id): each run is a new plug-in
    process, whose window may get the id of the previous run's."""
    return [(window, " ".join(xdotool("getwindowpid", window)))
            for window in xdotool("search", "--onlyvisible", "--name", TITLE)]


def wait_for_new_dialog(seen, gimp, timeout=float(os.environ.get("NST_GIMP_DIALOG_TIMEOUT", 300))):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and gimp.poll() is None:
        dismiss_welcome()
        fresh = [dialog for dialog in dialogs() if dialog not in seen]
        if fresh:
            return fresh[0]
        time.sleep(0.3)
    names = [" ".join(xdotool("getwindowname", window)) for window in xdotool("search", "--onlyvisible", "--name", ".")]
    raise SystemExit(f"gimp_dialog.py: no Neural Style dialog appeared (GIMP exit {gimp.poll()}; windows: {names})")


def geometry(dialog):
    values = dict(line.split("=") for line in xdotool("getwindowgeometry", "--shell", dialog[0]))
    return [int(values[key]) for key in ("X", "Y", "WIDTH", "HEIGHT")]


def screenshot(path, box):
    import gi

    gi.require_version("Gdk", "3.0")
    from gi.repository import Gdk

    pixbuf = Gdk.pixbuf_get_from_window(Gdk.get_default_root_window(), *box)
    pixbuf.savev(path, "png", [], [])


def press(dialog, key, pause=3.0):
    dismiss_welcome()
    xdotool("windowfocus", "--sync", dialog[0])
    xdotool("key", "--clearmodifiers", key)
    time.sleep(pause)
    still_open = dialog in dialogs()
    if os.environ.get("NST_GIMP_DIALOG_SHOTS"):  # debugging: the whole screen after each key
        folder = os.environ["NST_GIMP_DIALOG_SHOTS"]
        screenshot(os.path.join(folder, f"{len(os.listdir(folder)):02d}-{key}.png"), (0, 0, 1400, 1000))
    print(f"gimp_dialog.py: {key} -> dialog {'still open' if still_open else 'closed'}; focus on "
          f"{' '.join(xdotool('getwindowname', *xdotool('getwindowfocus')))!r}", file=sys.stderr, flush=True)
    return still_open


def wait_for(log_path, text, count, gimp, timeout=float(os.environ.get("NST_GIMP_DIALOG_TIMEOUT", 300))):
    """Seconds until the plug-in's log holds ``count`` lines with ``text``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout and gimp.poll() is None:
        lines = open(log_path).read().splitlines() if os.path.isfile(log_path) else []
        if sum(text in line for line in lines) >= count:
            return round(time.monotonic() - started, 2)
        time.sleep(0.1)
    raise SystemExit(f"gimp_dialog.py: the plug-in's log has no {count} lines with {text!r} after "
                     f"{time.monotonic() - started:.0f} s (GIMP exit {gimp.poll()})")


def main(spec_path):
    spec = json.load(open(spec_path))
    server, display = start_display()
    try:
        drive(spec, spec_path, display)
    finally:
        server.terminate()
        server.wait(timeout=30)


def drive(spec, spec_path, display):
    log_path = spec["results"] + ".plugin.log"
    os.environ.update({"DISPLAY": display, "HOME": spec["home"], "NO_AT_BRIDGE": "1",
                       "XDG_CONFIG_HOME": os.path.join(spec["home"], ".config"),
                       "NST_GIMP_DIALOG_SPEC": spec_path + ".gimp.json", "NST_GIMP_LOG": log_path})
    json.dump({"image": spec["image"], "results": spec["results"] + ".gimp.json",
               "runs": [{key: run[key] for key in ("props", "procedure", "channels") if key in run} for run in spec["runs"]]},
              open(spec_path + ".gimp.json", "w"))
    batch = os.path.join(HERE, "gimp_dialog_batch.py")
    gimp = subprocess.Popen(["gimp-3.0", "--no-splash", "--batch-interpreter=python-fu-eval",
                             "-b", f"exec(open({batch!r}).read())", "--quit"],
                            stdout=open(spec["results"] + ".log", "w"), stderr=subprocess.STDOUT)
    results = {"runs": []}
    try:
        seen = set()
        for run in spec["runs"]:
            dialog = wait_for_new_dialog(seen, gimp)
            seen.add(dialog)
            time.sleep(2)  # drawn
            box = geometry(dialog)
            if run.get("expand_advanced"):
                # the "Advanced" expander: the row above the settings buttons and the button bar
                xdotool("mousemove", "--window", dialog[0], "40", str(box[3] - 125), "click", "1")
                time.sleep(1.5)
                box = geometry(dialog)
            if run.get("screenshot"):
                screenshot(run["screenshot"], box)
            done = {"geometry": box, "open_after": [], "waits": []}
            results["runs"].append(done)
            for key in run.get("keys", []):
                if isinstance(key, str):
                    done["open_after"].append(press(dialog, key, run.get("pause", 3.0)))
                elif "wait_for" in key:
                    done["waits"].append(wait_for(log_path, key["wait_for"], key.get("count", 1), gimp))
                elif "screenshot" in key:
                    screenshot(key["screenshot"], geometry(dialog))
        results["gimp_returncode"] = gimp.wait(timeout=600)
    finally:
        if gimp.poll() is None:
            gimp.kill()
        outcomes = spec["results"] + ".gimp.json"
        results["gimp"] = json.load(open(outcomes)) if os.path.isfile(outcomes) else []
        results["plugin_log"] = open(log_path).read().splitlines() if os.path.isfile(log_path) else []
        json.dump(results, open(spec["results"], "w"), indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
