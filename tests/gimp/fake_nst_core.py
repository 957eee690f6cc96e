#!/usr/bin/env python3
"""A stand-in for ``nst-core run`` that follows the CLI's contract, for the bridge's unit tests.

It reads nothing but the arguments the plug-in passes, checks the input files, emits
``--progress json`` events, "stylizes" by inverting the colours (alpha kept; with ``--masks``, by
blending each mask's area towards its painting's mean colour) and writes OUT atomically. Knobs
(environment): ``FAKE_NST_STEP_DELAY`` seconds per step (default 0),
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
        paintings = args[1:]
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
    if "--masks" in options:  # regions: each mask's area takes its painting's mean colour
        result = regions_result(image, paintings, options["--masks"].split(","), options.get("--rest"))
    tmp = output + ".part.png"
    result.save(tmp)
    os.replace(tmp, output)
    if stop:
        sys.exit(130)
    emit("done", output=output, steps=step, elapsed=round(time.monotonic() - started, 3))
    return 0


def regions_result(content, paintings, masks, rest):
    """The content with each mask's area blended towards its painting's mean colour ("none": the
    content), and the area of no mask towards the rest's when there is one."""
    import numpy as np
    from PIL import Image

    def mean_colour(path):
        with Image.open(path) as painting:
            return np.asarray(painting.convert("RGB"), dtype=np.float64).reshape(-1, 3).mean(axis=0)

    rgb = np.asarray(content.convert("RGB"), dtype=np.float64)
    out, covered = np.zeros_like(rgb), np.zeros(rgb.shape[:2])
    for painting, mask in zip(paintings, masks):
        with Image.open(mask) as image:
            weight = np.asarray(image.convert("L").resize(content.size), dtype=np.float64)[..., None] / 255
        out += weight * (rgb if painting == "none" else mean_colour(painting))
        covered += weight[..., 0]
    rest_weight = np.clip(1 - covered, 0, 1)[..., None]
    out = out / np.maximum(covered, 1)[..., None] + rest_weight * (mean_colour(rest) if rest else rgb)
    result = Image.fromarray(np.clip(out, 0, 255).round().astype(np.uint8), "RGB")
    if "A" in content.getbands():
        result.putalpha(content.getchannel("A"))
    return result


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
