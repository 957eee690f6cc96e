"""Runs INSIDE GIMP 3 (gimp-console-3.0 --batch-interpreter=python-fu-eval), driven by
test_gimp_plugin.py: builds small test images, calls the Neural Style procedure on them
non-interactively and writes what it saw as JSON for the pytest side to assert on.

Input: $NST_GIMP_TEST_SPEC, a JSON file: {"results": PATH, "style": PATH, "photo": PATH to raw
R'G'B'A u8 bytes, "width": W, "height": H, "iterations": N, "scenarios": [names]}.
Each scenario runs in its own try block, so one failure does not hide the others.
"""

import json
import os
import signal
import threading
import time
import traceback

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp, Gio  # noqa: E402

SPEC = json.load(open(os.environ["NST_GIMP_TEST_SPEC"]))
W, H = SPEC.get("width", 0), SPEC.get("height", 0)
PHOTO = open(SPEC["photo"], "rb").read() if "photo" in SPEC else b""  # W*H*4 bytes, R'G'B'A u8
PROC = "python-fu-nst-neural-style"
INSTANT = "python-fu-nst-instant-style"
REGIONS = "python-fu-nst-region-style"
RESULTS = {}
IMAGES = []  # deleted after each scenario (GIMP warns about "stray" images otherwise)


def rgb_bytes(rgba):
    return bytes(b for i, b in enumerate(rgba) if i % 4 != 3)


def u16_bytes(rgba):
    # 8-bit values spread to 16 bits with a little per-pixel detail below the 8-bit step
    out = bytearray()
    for i, v in enumerate(rgba):
        value = min(65535, v * 257 + (i * 37) % 200) if i % 4 != 3 else 65535
        out += value.to_bytes(2, "little")
    return bytes(out)


def layer_type(base, alpha):
    if base == Gimp.ImageBaseType.GRAY:
        return Gimp.ImageType.GRAYA_IMAGE if alpha else Gimp.ImageType.GRAY_IMAGE
    return Gimp.ImageType.RGBA_IMAGE if alpha else Gimp.ImageType.RGB_IMAGE


def new_image(width, height, base=Gimp.ImageBaseType.RGB, precision=None):
    if precision is None:
        image = Gimp.Image.new(width, height, base)
    else:
        image = Gimp.Image.new_with_precision(width, height, base, precision)
    IMAGES.append(image)
    return image


def add_layer(image, name, data, fmt, alpha, offsets=(0, 0), size=(None, None)):
    width, height = size[0] or W, size[1] or H
    layer = Gimp.Layer.new(image, name, width, height, layer_type(image.get_base_type(), alpha), 100.0,
                           Gimp.LayerMode.NORMAL)
    image.insert_layer(layer, None, 0)
    layer.set_offsets(*offsets)
    buffer = layer.get_buffer()
    buffer.set(Gegl.Rectangle.new(0, 0, width, height), fmt, data)
    buffer.flush()
    return layer


def pixels(drawable, fmt="R'G'B'A u8"):
    rect = Gegl.Rectangle.new(0, 0, drawable.get_width(), drawable.get_height())
    return bytes(drawable.get_buffer().get(rect, 1.0, fmt, Gegl.AbyssPolicy.CLAMP))


def max_diff(a, b, step=1, offset=0):
    return max((abs(x - y) for x, y in zip(a[offset::step], b[offset::step])), default=0)


def mean_diff(a, b):
    return sum(abs(x - y) for x, y in zip(a, b)) / max(1, len(a))


def run(image, drawables, procedure=PROC, **props):
    proc = Gimp.get_pdb().lookup_procedure(procedure)
    if proc is None:
        raise RuntimeError(f"procedure {procedure} is not registered")
    config = proc.create_config()
    config.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    config.set_property("image", image)
    config.set_core_object_array("drawables", drawables)
    if procedure != REGIONS:
        props.setdefault("style-file", SPEC["style"])
    if procedure == PROC:
        props.setdefault("iterations", SPEC["iterations"])
        props.setdefault("model", "vgg16")
    for name, value in props.items():
        if name in ("style-file", "rest-file") or name.startswith("painting-"):
            value = Gio.File.new_for_path(value) if value else None
        config.set_property(name, value)
    started = time.monotonic()
    result = proc.run(config)
    elapsed = time.monotonic() - started
    status = result.index(0)
    message = None
    if result.length() > 1:
        try:
            message = result.index(1)
        except Exception as error:  # noqa: BLE001
            message = f"<unreadable: {error}>"
    return {"status": status.value_nick if hasattr(status, "value_nick") else str(status),
            "message": message if isinstance(message, str) else None, "seconds": round(elapsed, 2)}


def describe(image):
    out = []
    for layer in image.get_layers():
        _, x, y = layer.get_offsets()
        out.append({"name": layer.get_name(), "width": layer.get_width(), "height": layer.get_height(),
                    "offsets": [x, y], "alpha": layer.has_alpha(), "mask": layer.get_mask() is not None})
    return out


# ---------------------------------------------------------------------------------------------


def composite(image):
    flat = image.duplicate()
    merged = pixels(flat.flatten(), "R'G'B' u8")
    flat.delete()
    return merged


def scenario_probe():
    """Whether GIMP registered the plug-in (test_gimp_profile.py: no image needed)."""
    return {"registered": Gimp.get_pdb().lookup_procedure(PROC) is not None}


def scenario_basic():
    """An RGB layer at offsets in a larger canvas, with a rectangular selection: the new layer is
    above the original with the same geometry and a selection mask, the original is unchanged and
    the composite changes only inside the selection."""
    cw, ch = W + 16, H + 20
    image = new_image(cw, ch)
    bottom = add_layer(image, "background", bytes([200, 200, 200, 255]) * (cw * ch), "R'G'B'A u8", False,
                       size=(cw, ch))
    photo = add_layer(image, "photo", rgb_bytes(PHOTO), "R'G'B' u8", False, offsets=(8, 10))
    x0, y0, sw, sh = 8 + W // 4, 10 + H // 4, W // 2, H // 2
    image.select_rectangle(Gimp.ChannelOps.REPLACE, x0, y0, sw, sh)
    before = pixels(photo)
    before_composite = composite(image)
    undo_before = image.undo_is_enabled()
    result = run(image, [photo])
    layers = image.get_layers()
    facts = {"run": result, "layers": describe(image), "undo_enabled_before": undo_before,
             "undo_enabled_after": image.undo_is_enabled(),
             "original_unchanged": pixels(photo) == before, "bottom_is_last": layers[-1] == bottom}
    if len(layers) == 3:
        facts["new_vs_original_mean_diff"] = mean_diff(pixels(layers[0]), before)
        after = composite(image)
        outside, inside = 0, []
        for y in range(ch):
            for x in range(cw):
                i = (y * cw + x) * 3
                diff = max(abs(p - q) for p, q in zip(after[i:i + 3], before_composite[i:i + 3]))
                if x0 <= x < x0 + sw and y0 <= y < y0 + sh:
                    inside.append(diff)
                else:
                    outside = max(outside, diff)
        facts["outside_max_diff"] = outside
        facts["inside_mean_diff"] = sum(inside) / len(inside)
    proc = Gimp.get_pdb().lookup_procedure(PROC)
    facts["menu"] = {"label": proc.get_menu_label(), "paths": list(proc.get_menu_paths()),
                     "image_types": proc.get_image_types(), "help": proc.get_help()}
    # A new undo group opens and closes cleanly after the plug-in's (its own was balanced).
    facts["undo_group_balanced"] = bool(image.undo_group_start()) and bool(image.undo_group_end())
    return facts


def scenario_u16_alpha(procedure=PROC, **props):
    """A 16-bit image with an RGBA layer and no selection: works, stays 16-bit, the result has
    finer than 8-bit levels, no mask, and keeps the layer's alpha."""
    image = new_image(W, H, precision=Gimp.Precision.U16_NON_LINEAR)
    data = bytearray(u16_bytes(PHOTO))
    alpha = []
    for y in range(H):
        for x in range(W):
            a = 0 if x < W // 3 else (65535 if x >= 2 * W // 3 else 32768)
            data[(y * W + x) * 8 + 6:(y * W + x) * 8 + 8] = a.to_bytes(2, "little")
            alpha.append(a)
    photo = add_layer(image, "photo16", bytes(data), "R'G'B'A u16", True)
    before = pixels(photo, "R'G'B'A u16")
    result = run(image, [photo], procedure, **props)
    layers = image.get_layers()
    facts = {"run": result, "layers": describe(image), "precision": image.get_precision().value_nick,
             "original_unchanged": pixels(photo, "R'G'B'A u16") == before}
    if len(layers) == 2:
        out = pixels(layers[0], "R'G'B'A u16")
        values = [int.from_bytes(out[i:i + 2], "little") for i in range(0, len(out), 2)]
        colour = [v for i, v in enumerate(values) if i % 4 != 3]
        facts["fraction_8bit_levels"] = sum(1 for v in colour if v % 257 == 0) / len(colour)
        facts["alpha_max_diff_8bit"] = max(abs(v - a) for v, a in zip(values[3::4], alpha)) / 257
        facts["new_vs_original_mean_diff_8bit"] = mean_diff(pixels(layers[0]), pixels(photo))
    return facts


def scenario_instant():
    """Instant Style, run by a script, on the 16-bit RGBA layer of scenario_u16_alpha (half the
    painting's style, the layer's colours kept), then on the same layer with a selection (a mask)
    and an unknown painting file (an error, no layer)."""
    facts = scenario_u16_alpha(INSTANT, strength=50.0, **{"preserve-color": "luminance"})
    image = IMAGES[-1]
    photo = image.get_layers()[-1]
    image.select_rectangle(Gimp.ChannelOps.REPLACE, 0, 0, W // 2, H // 2)
    facts["masked_run"] = run(image, [photo], INSTANT)
    facts["masked_layers"] = describe(image)
    missing = os.path.join(os.path.dirname(SPEC["results"]), "no-such-painting.png")
    facts["missing_run"] = run(image, [photo], INSTANT, **{"style-file": None, "style-path": missing})
    facts["menu"] = {"label": Gimp.get_pdb().lookup_procedure(INSTANT).get_menu_label()}
    return facts


def scenario_missing_style():
    """A style file that does not exist: an execution error with nst-core's message, no layer."""
    image = new_image(W, H)
    photo = add_layer(image, "photo", rgb_bytes(PHOTO), "R'G'B' u8", False)
    missing = os.path.join(os.path.dirname(SPEC["results"]), "no-such-style.png")
    # a path string: GIMP's own file argument refuses a missing file before the plug-in runs
    result = run(image, [photo], **{"style-file": None, "style-path": missing})
    # the dialog's file argument: GIMP refuses the missing file itself (a calling error)
    file_result = run(image, [photo], **{"style-file": missing})
    return {"run": result, "file_run": file_result, "layers": describe(image), "missing": missing}


def scenario_no_style():
    """No style image, no style layer, no fast style: an error before nst-core starts, no layer."""
    image = new_image(W, H)
    photo = add_layer(image, "photo", rgb_bytes(PHOTO), "R'G'B' u8", False)
    result = run(image, [photo], **{"style-file": None})
    return {"run": result, "layers": describe(image)}


def _processes():
    """{pid: (parent pid, command line)} of every process (GIMP runs in a chroot with /proc)."""
    table = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                stat = open(f"/proc/{name}/stat").read().rsplit(")", 1)[1].split()
                cmdline = open(f"/proc/{name}/cmdline", "rb").read().split(b"\0")
            except OSError:
                continue
            if stat[0] != "Z":
                table[int(name)] = (int(stat[1]), [part.decode(errors="replace") for part in cmdline])
    return table


def _cpu_seconds(pid):
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _kill_plugin_once_its_cli_runs(facts, timeout=300):
    """As GIMP does on Cancel: SIGKILL the Neural Style plug-in once its nst-core has used
    SPEC["kill_after_cpu"] seconds of CPU (by then it is stylizing, where SIGTERM would only ask
    it to finish its step); then time how long that nst-core lives on."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        table = _processes()
        plugins = [pid for pid, (_, cmd) in table.items() if any(p.endswith("/nst_gimp.py") for p in cmd)]
        clis = [pid for pid, (parent, cmd) in table.items() if parent in plugins and "run" in cmd]
        if plugins and clis and _cpu_seconds(clis[0]) >= float(SPEC.get("kill_after_cpu", 16)):
            facts["cli_started_to_kill"] = round(time.monotonic() - facts["started"], 2)
            os.kill(plugins[0], signal.SIGKILL)
            killed = time.monotonic()
            while clis[0] in _processes() and time.monotonic() - killed < 30:
                time.sleep(0.02)
            facts["cli_lived_after_kill"] = round(time.monotonic() - killed, 2)
            facts["cli_command"] = table[clis[0]][1][:3]
            return
        time.sleep(0.05)
    facts["cli_lived_after_kill"] = None


def scenario_killed():
    """GIMP kills the plug-in (Cancel): its nst-core must go at once; the run's temporary folder
    is removed by the plug-in's next run (test_temporary_files_removed)."""
    image = new_image(W * 5, H * 5)  # steps of seconds: SIGTERM would leave it running that long
    photo = add_layer(image, "photo", rgb_bytes(PHOTO), "R'G'B' u8", False)
    photo.scale(W * 5, H * 5, False)
    facts = {"started": time.monotonic()}
    killer = threading.Thread(target=_kill_plugin_once_its_cli_runs, args=(facts,), daemon=True)
    killer.start()
    facts["run"] = run(image, [photo], iterations=100000)
    killer.join(timeout=60)
    facts["layers"] = describe(image)
    facts["temp_after_kill"] = sorted(os.listdir(os.environ.get("TMPDIR", "/tmp")))
    return facts


def scenario_gray_two_layers():
    """A grayscale image with two selected layers and the style taken from a layer of another
    image: two results, each right above its own layer, and the image stays gray."""
    image = new_image(W, H, base=Gimp.ImageBaseType.GRAY)
    gray = bytes(PHOTO[i] for i in range(0, len(PHOTO), 4))
    first = add_layer(image, "first", gray, "Y' u8", False)
    half = bytes(gray[y * W + x] for y in range(H // 2) for x in range(W // 2))
    second = add_layer(image, "second", half, "Y' u8", False, offsets=(4, 6), size=(W // 2, H // 2))
    image.set_selected_layers([first, second])
    style_image = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(SPEC["style"]))
    IMAGES.append(style_image)
    style_layer = style_image.get_layers()[0]
    style_layer.set_name("painting")
    result = run(image, [first, second], **{"style-file": None, "style-layer": style_layer})
    return {"run": result, "layers": describe(image), "base_type": image.get_base_type().value_nick}


def scenario_fast_style():
    """A fast style chosen from nst-core's models folder, no style image: one new layer named
    after the model, the layer's size, different from the original."""
    image = new_image(W, H)
    photo = add_layer(image, "photo", rgb_bytes(PHOTO), "R'G'B' u8", False)
    before = pixels(photo)
    result = run(image, [photo], **{"style-file": None, "fast-style": SPEC["fast_style"]})
    layers = image.get_layers()
    facts = {"run": result, "layers": describe(image), "original_unchanged": pixels(photo) == before}
    if len(layers) == 2:
        facts["new_vs_original_mean_diff"] = mean_diff(pixels(layers[0]), before)
    return facts


def half_means(drawable, width, height):
    """The mean R'G'B' (0-255) of the drawable's left and right halves."""
    data = pixels(drawable, "R'G'B' u8")
    sums = [[0, 0, 0], [0, 0, 0]]
    for y in range(height):
        for x in range(width):
            i = (y * width + x) * 3
            side = sums[0 if x < width // 2 else 1]
            for c in range(3):
                side[c] += data[i + c]
    count = (width // 2) * height
    return [[round(v / count, 2) for v in side] for side in sums]


def scenario_regions():
    """Paint by Region, run by a script: a photo layer over a "cutout" layer (half off the canvas,
    its layer mask white on its right half: the image's left half) and a gray one, two channels
    ("left" and "right": the halves) and an unrelated rectangular selection active.
    1. Painting A on "left", B on "right", the rest unchanged: one new layer, no mask; everything
       else as it was.
    2. The cutout's layer mask with no painting (it keeps the photo), the rest painted with A:
       the left half stays, the right half is painted.
    3. Three runs that fail before nst-core starts: a channel that does not exist, the (now empty)
       selection, a channel that covers nothing."""
    image = new_image(W, H)
    paper = add_layer(image, "paper", bytes([128, 128, 128, 255]) * (W * H), "R'G'B'A u8", False)
    cutout = add_layer(image, "cutout", bytes([60, 60, 60, 255]) * (W * H), "R'G'B'A u8", False,
                       offsets=(-(W // 2), 0))
    photo = add_layer(image, "photo", rgb_bytes(PHOTO), "R'G'B' u8", False)
    for name, x in (("left", 0), ("right", W // 2)):
        image.select_rectangle(Gimp.ChannelOps.REPLACE, x, 0, W // 2, H)
        Gimp.Selection.save(image).set_name(name)
    # the cutout's mask: the image's left half, which is the RIGHT half of the layer's own pixels
    image.select_rectangle(Gimp.ChannelOps.REPLACE, 0, 0, W // 2, H)
    cutout.add_mask(cutout.create_mask(Gimp.AddMaskType.SELECTION))
    image.select_rectangle(Gimp.ChannelOps.REPLACE, 2, 3, 10, 7)
    channels = {channel.get_name(): pixels(channel, "Y u8") for channel in image.get_channels()}
    selection = pixels(image.get_selection(), "Y u8")
    keep = [paper, cutout, cutout.get_mask(), photo]
    before = [pixels(drawable, "R'G'B'A u8") for drawable in keep]
    props = {"painting-1": SPEC["painting_a"], "region-1": "channel:left",
             "painting-2": SPEC["painting_b"], "region-2": "channel:right",
             "strength": 100.0, "iterations": SPEC["iterations"], "model": "vgg16"}
    result = run(image, [photo], REGIONS, **props)
    layers = image.get_layers()
    facts = {"run": result, "layers": describe(image),
             "others_unchanged": [pixels(drawable, "R'G'B'A u8") == data for drawable, data in zip(keep, before)],
             "channels_unchanged": {c.get_name(): pixels(c, "Y u8") for c in image.get_channels()} == channels,
             "selection_unchanged": pixels(image.get_selection(), "Y u8") == selection,
             "photo_halves": half_means(photo, W, H)}
    if len(layers) == 4:
        facts["new_halves"] = half_means(layers[0], W, H)
    proc = Gimp.get_pdb().lookup_procedure(REGIONS)
    facts["menu"] = {"label": proc.get_menu_label(), "paths": list(proc.get_menu_paths())}
    rest = {**props, "painting-1": None, "region-1": "layer-mask:cutout", "painting-2": None, "region-2": "",
            "rest": "paint", "rest-file": SPEC["painting_a"]}
    facts["rest_run"] = run(image, [photo], REGIONS, **rest)
    facts["rest_layers"] = describe(image)
    if len(image.get_layers()) == 5:
        facts["rest_halves"] = half_means(image.get_layers()[1], W, H)
    facts["missing_channel_run"] = run(image, [photo], REGIONS, **{**props, "region-2": "channel:sky"})
    Gimp.Selection.none(image)
    facts["empty_selection_run"] = run(image, [photo], REGIONS, **{**props, "region-2": "selection"})
    Gimp.Selection.save(image).set_name("nothing")  # a channel that covers nothing
    facts["uncovered_run"] = run(image, [photo], REGIONS, **{**props, "region-2": "channel:nothing"})
    facts["layers_after_errors"] = [layer["name"] for layer in describe(image)]
    return facts


def main():
    for name in SPEC["scenarios"]:
        started = time.monotonic()
        try:
            RESULTS[name] = globals()["scenario_" + name]()
        except Exception:  # noqa: BLE001
            RESULTS[name] = {"exception": traceback.format_exc()}
        RESULTS[name]["scenario_seconds"] = round(time.monotonic() - started, 2)
        while IMAGES:
            image = IMAGES.pop()
            if image.is_valid():
                image.delete()
        with open(SPEC["results"], "w") as out:
            json.dump(RESULTS, out, indent=1)


main()
