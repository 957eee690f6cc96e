"""Runs INSIDE a GIMP 3 with a display (gimp-3.0 -b, driven by gimp_dialog.py): for each entry of
the spec's "runs", opens the image in a window and runs a Filters > Neural Style procedure on it
INTERACTIVELY, so that its dialog appears; writes each run's outcome as JSON.

Spec ($NST_GIMP_DIALOG_SPEC): {"image": PATH, "results": PATH, "runs": [{"props": {NAME: VALUE},
"procedure": NAME (default: Paint Like a Painting's), "channels": {NAME: [x, y, w, h]}}]}; file
settings ("style-file", "painting-N", "rest-file") are paths (GIMP's dialog shows the values passed
to an interactive run); "style-layer" is the path of an image whose first layer is the style
layer; "channels" are saved selections (rectangles) made before the dialog opens.
"""

import json
import os

import gi

gi.require_version("Gimp", "3.0")
from gi.repository import Gimp, Gio  # noqa: E402

SPEC = json.load(open(os.environ["NST_GIMP_DIALOG_SPEC"]))
PROC = "python-fu-nst-neural-style"


def run_once(image, props, name=PROC):
    procedure = Gimp.get_pdb().lookup_procedure(name)
    config = procedure.create_config()
    config.set_property("run-mode", Gimp.RunMode.INTERACTIVE)
    config.set_property("image", image)
    config.set_core_object_array("drawables", [image.get_layers()[0]])
    for name, value in props.items():
        if name in ("style-file", "rest-file") or name.startswith("painting-"):
            value = Gio.File.new_for_path(value)
        elif name == "style-layer":  # an image file, opened (without a window): its first layer
            value = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(value)).get_layers()[0]
        config.set_property(name, value)
    result = procedure.run(config)
    return {"status": result.index(0).value_nick, "layers": [layer.get_name() for layer in image.get_layers()]}


def main():
    outcomes = []
    for run in SPEC["runs"]:  # each on its own copy of the image, in its own window
        image = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(SPEC["image"]))
        for name, (x, y, width, height) in run.get("channels", {}).items():  # saved selections
            image.select_rectangle(Gimp.ChannelOps.REPLACE, x, y, width, height)
            Gimp.Selection.save(image).set_name(name)
        Gimp.Selection.none(image)
        Gimp.Display.new(image)
        try:
            outcomes.append(run_once(image, run.get("props", {}), run.get("procedure", PROC)))
        except Exception as error:  # noqa: BLE001 - reported to the driver
            outcomes.append({"exception": f"{type(error).__name__}: {error}"})
        with open(SPEC["results"], "w") as out:
            json.dump(outcomes, out)


main()
