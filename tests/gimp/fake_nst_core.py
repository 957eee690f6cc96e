#!/usr/bin/env python3
"""A stand-in for ``nst-core run`` that follows the CLI's contract, for the bridge's unit tests.

It reads nothing but the arguments the plug-in passes, checks the input files, emits
``--progress json`` events, "stylizes" by inverting the colours (alpha kept) and writes OUT
atomically. Knobs (environment): ``FAKE_NST_STEP_DELAY`` seconds per step (default 0),
``FAKE_NST_FAIL`` = a message to fail with at run time (exit 1), ``FAKE_NST_ARGS_LOG`` = a file to
which the argument list is appended as one JSON line. SIGINT/SIGTERM: writes the output, exits 130.
"""

import json
import os
import signal
import sys
import time

stop = []


def emit(event, **fields):
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


def fail(message, code):
    emit("error", message=message)
    sys.stderr.write(f"nst-core: error: {message}\n")
    sys.exit(code)


def main(argv):
    if os.environ.get("FAKE_NST_ARGS_LOG"):
        with open(os.environ["FAKE_NST_ARGS_LOG"], "a") as log:
            log.write(json.dumps(argv) + "\n")
    if not argv or argv[0] != "run":
        fail("only 'run' is faked", 2)
    args, options = [], {}
    rest = argv[1:]
    i = 0
    while i < len(rest):
        if rest[i].startswith("-"):
            name = rest[i]
            if name in ("--quiet",):
                options[name] = True
                i += 1
            else:
                options[name] = rest[i + 1]
                i += 2
        else:
            args.append(rest[i])
            i += 1
    output = options.get("-o") or options.get("--output")
    if "--masks" in options:  # regions: CONTENT PAINTING... --masks M1,M2 [--rest R]; a painting may be "none"
        masks = options["--masks"].split(",")
        if len(masks) != len(args) - 1:
            fail(f"--masks: {len(masks)} masks for {len(args) - 1} paintings; give one mask per painting", 2)
        args = [path for path in args if path != "none"] + masks + [options[key] for key in ("--rest",) if key in options]
    elif len(args) != 2:
        fail("usage: nst-core run CONTENT STYLE -o OUT", 2)
    if not output:
        fail("usage: nst-core run CONTENT STYLE -o OUT", 2)
    for path in args:
        if not os.path.isfile(path):
            fail(f"cannot read {path}: no such file", 2)
    total = int(options.get("--iterations", "10"))
    signal.signal(signal.SIGINT, lambda *_: stop.append(signal.SIGINT))
    signal.signal(signal.SIGTERM, lambda *_: stop.append(signal.SIGTERM))
    emit("start", total=total, content=args[0], styles=[args[1]], output=output)
    delay = float(os.environ.get("FAKE_NST_STEP_DELAY", "0"))
    started = time.monotonic()
    step = 0
    for step in range(1, total + 1):
        if stop:
            break
        time.sleep(delay)
        elapsed = time.monotonic() - started
        emit("progress", step=step, total=total, stage="optimize",
             losses={"content": 1.0, "style": 2.0, "tv": 0.1, "total": 3.1},
             elapsed=round(elapsed, 3), eta=round(elapsed / step * (total - step), 3))
        if os.environ.get("FAKE_NST_FAIL") and step == max(1, total // 2):
            fail(os.environ["FAKE_NST_FAIL"], 1)
    from PIL import Image, ImageChops  # the venv has Pillow

    image = Image.open(args[0])
    image.load()
    rgba = image.convert("RGBA")
    r, g, b, a = rgba.split()
    inverted = ImageChops.invert(Image.merge("RGB", (r, g, b)))
    result = Image.merge("RGBA", (*inverted.split(), a)) if "A" in image.getbands() else inverted
    tmp = output + ".part.png"
    result.save(tmp)
    os.replace(tmp, output)
    if stop:
        sys.exit(130)
    emit("done", output=output, steps=step, elapsed=round(time.monotonic() - started, 3))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
