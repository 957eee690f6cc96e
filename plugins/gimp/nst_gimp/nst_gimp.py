#!/usr/bin/env python3
"""Neural Style: a GIMP 3 plug-in that paints layers in the style of a painting with nst-core.

Filters > Neural Style > Paint Like a Painting... (procedure ``python-fu-nst-neural-style``:
optimization, or a trained fast style) and Filters > Neural Style > Instant Style...
(``python-fu-nst-instant-style``: any painting in one network pass, ``--method instant``, with a
preview in its dialog) and Filters > Neural Style > Paint by Region... (``python-fu-nst-region-style``:
up to ``bridge.REGION_SLOTS`` paintings, each on a region of the image -- the current selection, a
saved selection (channel) or a layer mask -- in one optimization, ``nst-core run LAYER A B --masks
MA,MB [--rest R]``). Every entry of the Filters > Neural Style submenu is one procedure: its
menu label is in ``nst_gimp_bridge.MENU_LABELS`` and its settings function and method in
:data:`ENTRIES` below, so adding an entry is one line in each plus the function that defines its
settings.

For every selected layer the plug-in writes the layer's pixels to a PNG in a private temporary
folder (8-bit, or 16-bit for high-bit-depth images; with alpha when the layer has alpha), runs
``nst-core run CONTENT STYLE -o RESULT --progress json`` (with ``--method instant`` for Instant
Style; or, with a fast style chosen, ``nst-core run CONTENT --fast-model MODEL -o RESULT``) in a
subprocess, shows its progress in
GIMP's progress bar and loads the result as a NEW layer named "<layer> (<style>)" right above
the original layer, at the same offsets and the same size. The original is never modified.

* Paint by Region: each chosen region is exported as a grayscale PNG mask (its linear values,
  "Y u8") cropped to the layer's bounds (a layer mask of another layer at that layer's offsets;
  outside it: 0); a region that covers nothing of the layer is an error before nst-core starts.
  nst-core keeps the photo where no region (and no ``--rest`` painting) is, so the new layer gets
  no selection mask.
* Selection: with an active selection the new layer gets a layer mask made from the selection,
  so only the selected area changes (the whole layer is still stylized, so the style is
  computed with the layer's full context; edit or remove the mask to change the area).
* Alpha: a layer with alpha is exported as RGBA; nst-core puts the alpha back on its output.
* Undo: all new layers are made in one undo group ("Neural Style"), so one Undo removes them.
* Errors: nst-core's one-line message becomes the procedure's error; nothing is added to the
  image when any layer fails, and the temporary folder is always removed. A missing style is
  caught before nst-core starts: the dialog says so and keeps OK disabled.
* Cancelling (GIMP kills the plug-in) kills nst-core too (Linux: parent-death signal); the
  temporary folder of a killed run is removed when the plug-in next runs.
* Instant Style's preview (:class:`_Preview`): the first selected layer, at most
  ``bridge.PREVIEW_SIZE`` px, is exported once per dialog; one ``nst-core serve`` process, started
  when the dialog opens, paints it again ~0.3 s after each change of the painting, the strength or
  the colours (``bridge.PreviewSession``: debounce, supersede); its events are read on a thread and
  handed to GTK's main loop. Nothing is added to the image until OK; the server is told to quit
  (and killed if it does not) when the dialog closes.

The settings and their mapping onto nst-core's options live in ``nst_gimp_bridge.py`` (no GIMP
needed to test it). The plug-in finds nst-core through ``nst-core-path.txt`` written next to this
file by ``nst-core gimp install``, else ``nst-core`` on PATH.
"""

import os
import signal
import sys
import tempfile
import time

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp, Gio, GLib, GObject  # noqa: E402

HERE = os.path.dirname(os.path.realpath(__file__))
sys.path.insert(0, HERE)
import nst_gimp_bridge as bridge  # noqa: E402

RW = GObject.ParamFlags.READWRITE
_STOP_REQUESTED = []


def _choice(table):
    choice = Gimp.Choice.new()
    for index, (value, label) in enumerate(table.items()):
        label = label.label if isinstance(label, bridge.Preset) else label
        choice.add(value, index, label, "")
    return choice


def _error(procedure, message):
    error = GLib.Error.new_literal(Gimp.PlugIn.error_quark(), bridge.one_line(message), 0)
    return procedure.new_return_values(Gimp.PDBStatusType.EXECUTION_ERROR, error)


def _add_style_arguments(procedure):
    """The painting: an image file (the dialog's file chooser; GIMP itself refuses a file that
    does not exist), or a path string for scripts (used when set and no file is chosen; ignored
    in interactive runs, as the dialog does not show it), or an open layer."""
    procedure.add_file_argument(
        "style-file", "Style _image", "The painting whose style to use (PNG, JPEG, TIFF...)",
        Gimp.FileChooserAction.OPEN, True, None, RW)
    procedure.add_string_argument(
        "style-path", "Style image path", "For scripts: the style image's path (when style-file is not set)",
        "", RW)
    procedure.add_drawable_argument(
        "style-layer", "Or style la_yer", "An open layer to use as the style (when no style image is set)",
        True, RW)


def _add_optimize_arguments(procedure):
    """The settings of an optimization (Paint Like a Painting, Paint by Region)."""
    procedure.add_double_argument(
        "strength", "Style stre_ngth", "0-100; 50 = the engine default (log scale: +25 = 10x more style)",
        0.0, 100.0, 50.0, RW)
    procedure.add_choice_argument(
        "preserve-color", "Colo_urs", "Keep the layer's colours instead of the style's",
        _choice(bridge.COLOR_MODES), bridge.DEFAULT_COLOR, RW)
    procedure.add_choice_argument(
        "quality", "_Quality", "Iterations and the largest processing size",
        _choice(bridge.QUALITY_PRESETS), bridge.DEFAULT_QUALITY, RW)
    procedure.add_int_argument(
        "size", "Processing si_ze (0 = automatic)", "Long side in pixels to compute at (0 = automatic: "
        "the layer's size, capped by the quality preset); the result is scaled to the layer's size",
        0, 16384, 0, RW)
    procedure.add_int_argument(
        "seed", "S_eed", "Random seed (the same seed gives the same result)", 0, 2**31 - 1, 0, RW)
    # Advanced
    procedure.add_int_argument(
        "iterations", "Itera_tions (0 = automatic)", "Optimization steps at full size (0 = automatic: "
        "from the quality preset)", 0, 100000, 0, RW)
    procedure.add_double_argument(
        "tv-weight", "S_moothing (-1 = automatic)", "Total-variation weight (-1 = automatic: the engine "
        "default)", -1.0, 1.0e6, -1.0, RW)
    procedure.add_choice_argument(
        "model", "Net_work", "The VGG network", _choice(bridge.MODELS), bridge.DEFAULT_MODEL, RW)


def _define_paint(procedure):
    """The settings of Filters > Neural Style > Paint Like a Painting... (optimization, or a
    trained fast style)."""
    procedure.set_documentation(
        "Paint layers in the style of a painting (neural style transfer)",
        "Stylizes every selected layer with nst-core and puts each result in a new layer "
        "above it, named after the layer and the style; the original layers are not changed. "
        "With a selection, the new layers get a mask from the selection so only the selected "
        "area changes. Style strength s maps to nst-core's --style-weight as "
        f"{bridge.STRENGTH_FORMULA}: 50 is the engine default, each 25 points is ten times "
        "more or less style.",
        procedure.get_name())
    _add_style_arguments(procedure)
    # Or a fast style: a model trained with 'nst-core train' (found in nst-core's models folder,
    # listed when the plug-in starts), applied in one network pass instead of optimizing.
    procedure.add_choice_argument(
        "fast-style", "Or _fast style", "A trained fast-style model from nst-core's models folder "
        "(nst-core train); used instead of the style image, in seconds",
        _choice(bridge.fast_model_choices()), bridge.NO_FAST_MODEL, RW)
    procedure.add_string_argument(
        "fast-model-path", "Fast model path", "For scripts: a .nst model file or a model name (when "
        "fast-style is none)", "", RW)
    _add_optimize_arguments(procedure)


def _define_instant(procedure):
    """The settings of Filters > Neural Style > Instant Style... (any painting, one network pass)."""
    procedure.set_documentation(
        "Paint layers in the style of any painting in about a second (instant method, with a preview)",
        "Stylizes every selected layer with nst-core's instant method (one network pass, Ghiasi et al. "
        "2017: any painting, no training) and puts each result in a new layer above it, named after "
        "the layer and the style; the original layers are not changed. The dialog previews the first "
        "selected layer. Style strength: 0 paints the layer in its own style, 100 in the painting's "
        "(--style-strength s/100).",
        procedure.get_name())
    _add_style_arguments(procedure)
    procedure.add_double_argument(
        "strength", "Style stre_ngth", "0-100 %: 0 = the layer's own style, 100 = the painting's",
        0.0, 100.0, bridge.INSTANT_DEFAULT_STRENGTH, RW)
    procedure.add_choice_argument(
        "preserve-color", "Colo_urs", "Keep the layer's colours instead of the style's",
        _choice(bridge.COLOR_MODES), bridge.DEFAULT_COLOR, RW)


def _define_regions(procedure):
    """The settings of Filters > Neural Style > Paint by Region... (a painting per region)."""
    procedure.set_documentation(
        "Paint each region of layers like its own painting (neural style transfer with masks)",
        "Gives each painting a region of the image -- the current selection, a saved selection "
        "(channel) or a layer mask -- and paints every selected layer with all of them in one "
        "optimization (nst-core run --masks), so that the styles meet smoothly at soft borders. "
        "A painting left empty keeps the photo in its region. Pixels in no region are left "
        "unchanged, or painted with the painting for the rest. Each result is one new layer above "
        "its layer; the original layers are not changed. Scripts name a region 'selection', "
        "'channel:NAME' or 'layer-mask:LAYER'. Style strength as in Paint Like a Painting: "
        f"{bridge.STRENGTH_FORMULA}.",
        procedure.get_name())
    for number in range(1, bridge.REGION_SLOTS + 1):
        procedure.add_file_argument(
            f"painting-{number}", f"Painting _{number}", f"The painting of region {number} (none: the region "
            "keeps the photo)", Gimp.FileChooserAction.OPEN, True, None, RW)
        procedure.add_string_argument(
            f"region-{number}", f"Region {number}", f"Where painting {number} goes: 'selection', 'channel:NAME' "
            "(a saved selection) or 'layer-mask:LAYER'; empty: not used", "", RW)
    procedure.add_choice_argument(
        "rest", "The _rest", "Pixels in no region: unchanged, or painted with the painting for the rest",
        _choice(bridge.REST_MODES), bridge.DEFAULT_REST, RW)
    procedure.add_file_argument(
        "rest-file", "Painting for the rest", "The painting of the pixels in no region (when the rest is painted)",
        Gimp.FileChooserAction.OPEN, True, None, RW)
    _add_optimize_arguments(procedure)


def _new_dialog(procedure, config, title, image=None):
    """A procedure dialog with a "style-problem" label and the function that keeps OK disabled,
    with the reason shown, while no usable style (or region) is chosen (it returns the problem or
    None); ``image``: the image the regions are in (Paint by Region checks its selection)."""
    gi.require_version("GimpUi", "3.0")
    gi.require_version("Gtk", "3.0")
    from gi.repository import GimpUi, Gtk

    GimpUi.init("nst_gimp")
    dialog = GimpUi.ProcedureDialog.new(procedure, config, title)
    dialog.get_spin_scale("strength", 1.0)
    problem_label = dialog.get_label("style-problem", "", False, False)
    method = ENTRIES[procedure.get_name()][1]

    check = _region_problem if method == "regions" else _style_problem

    def refresh(*_):
        problem = check(config, Gimp.RunMode.INTERACTIVE, method, image)
        problem_label.set_text(f"To start: {problem}" if problem else "")
        problem_label.set_visible(bool(problem))
        dialog.set_response_sensitive(Gtk.ResponseType.OK, problem is None)
        return problem

    return dialog, refresh


def _run_dialog(dialog, refresh):
    """Run the dialog until Cancel, or OK with a usable style (the file may have gone since it
    was chosen); True for OK."""
    refresh()
    while dialog.run():
        if refresh() is None:
            return True
    return False


def _show_dialog(procedure, config, image, drawables):
    """Paint Like a Painting's dialog. True when the user pressed OK."""
    dialog, refresh = _new_dialog(procedure, config, "Neural Style")
    _fill_advanced(dialog)
    dialog.fill(["style-file", "style-layer", "fast-style", "style-problem", "strength", "preserve-color",
                 "quality", "size", "seed", "advanced"])
    for name in ("style-file", "style-layer", "fast-style"):
        config.connect(f"notify::{name}", refresh)
    try:
        return _run_dialog(dialog, refresh)
    finally:
        dialog.destroy()


def _fill_advanced(dialog):
    """The "Advanced" expander of an optimization's dialog."""
    dialog.fill_box("advanced-box", ["iterations", "tv-weight", "model"])
    dialog.get_label("advanced-label", "Advanced", False, False)
    dialog.fill_expander("advanced", "advanced-label", False, "advanced-box")


def _show_region_dialog(procedure, config, image, drawables):
    """Paint by Region's dialog: "Painting N [file] on [region]" rows, the region chosen from a
    list of the image's selection, channels and layer masks (a GTK combo box that writes the
    region string into the config), the rest, and a line that says what OK will do. True when the
    user pressed OK."""
    from gi.repository import Gtk

    dialog, refresh = _new_dialog(procedure, config, "Paint by Region", image)
    choices = bridge.region_choices([channel.get_name() for channel in image.get_channels()],
                                    [layer.get_name() for layer in _all_layers(image) if layer.get_mask() is not None],
                                    selection_empty=not _selection_active(image))
    specs = list(choices)
    for number in range(1, bridge.REGION_SLOTS + 1):
        name = f"region-{number}"
        row = dialog.fill_box(f"slot-{number}", [f"painting-{number}"])
        row.set_orientation(Gtk.Orientation.HORIZONTAL)
        row.set_spacing(8)
        combo = Gtk.ComboBoxText()
        for label in choices.values():
            combo.append_text(label)
        current = config.get_property(name) or ""
        if current not in choices:  # remembered from another image
            current = bridge.REGION_UNUSED
            config.set_property(name, current)
        combo.set_active(specs.index(current))
        combo.set_tooltip_text(f"Where painting {number} goes: the current selection, a saved selection "
                               "(Select > Save to Channel) or a layer's mask; with no painting, the region keeps "
                               "the photo")
        combo.connect("changed", lambda box, name=name: config.set_property(name, specs[max(0, box.get_active())]))
        on = Gtk.Label(label="on")
        row.pack_start(on, False, False, 0)
        row.pack_start(combo, False, False, 0)
        on.show()
        combo.show()
    rest = dialog.fill_box("rest-box", ["rest", "rest-file"])
    rest.set_orientation(Gtk.Orientation.HORIZONTAL)
    rest.set_spacing(8)
    rest_file = dialog.get_widget("rest-file", GObject.TYPE_NONE)
    summary = dialog.get_label("region-summary", "", False, False)
    summary.set_line_wrap(True)
    summary.set_max_width_chars(60)
    _fill_advanced(dialog)
    dialog.fill([f"slot-{number}" for number in range(1, bridge.REGION_SLOTS + 1)]
                + ["rest-box", "region-summary", "style-problem", "strength", "preserve-color", "quality", "size",
                   "seed", "advanced"])

    def changed(*_):
        rest_file.set_sensitive(config.get_property("rest") == "paint")
        regions, rest_mode, rest_path = _region_settings(config)
        summary.set_text(bridge.region_summary(regions, rest_mode, rest_path) if regions else "")
        refresh()

    names = [f"{kind}-{number}" for number in range(1, bridge.REGION_SLOTS + 1) for kind in ("painting", "region")]
    for name in names + ["rest", "rest-file"]:
        config.connect(f"notify::{name}", changed)
    changed()
    try:
        return _run_dialog(dialog, refresh)
    finally:
        dialog.destroy()


def _show_instant_dialog(procedure, config, image, drawables):
    """Instant Style's dialog: the settings on the right, the preview of the first selected
    layer on the left. True when the user pressed OK."""
    dialog, refresh = _new_dialog(procedure, config, "Instant Style")
    from gi.repository import Gtk
    settings = dialog.fill_box("instant-settings", ["style-file", "style-layer", "style-problem", "strength",
                                                    "preserve-color"])
    settings.set_size_request(360, -1)
    main = dialog.fill_box("instant-main", ["instant-settings"])
    main.set_orientation(Gtk.Orientation.HORIZONTAL)
    main.set_spacing(12)
    layers = [layer for layer in map(_layer_of, drawables or []) if layer is not None]
    preview = _Preview(image, layers[0] if layers else None)
    main.pack_start(preview.widget, False, False, 0)
    main.reorder_child(preview.widget, 0)
    dialog.fill(["instant-main"])

    def changed(*_):
        problem = refresh()
        preview.change(config, problem)

    for name in ("style-file", "style-layer", "strength", "preserve-color"):
        config.connect(f"notify::{name}", changed)
    preview.change(config, refresh())
    try:
        return _run_dialog(dialog, refresh)
    finally:
        dialog.destroy()  # gone from the screen first; then the server
        preview.close()


class _Preview:
    """Instant Style's preview area: the GTK side of ``bridge.PreviewSession``.

    Opening it exports the layer (at most ``bridge.PREVIEW_SIZE`` px) once, shows it, and starts
    one ``nst-core serve`` in the background ("starting nst-core..." until it is ready). Each
    :meth:`change` exports a style layer if one is chosen (once per layer) and hands the settings
    to the session; a 50 ms GLib timer sends the request when due; the server's events come on
    its reader thread and are handed to the main loop with ``GLib.idle_add``. A result is
    loaded into a GdkPixbuf; an error is shown as its one line, and the dialog stays usable.
    """

    def __init__(self, image, layer):
        gi.require_version("GdkPixbuf", "2.0")
        from gi.repository import GdkPixbuf, Gtk

        self.GdkPixbuf = GdkPixbuf
        self.image = image
        self.closed = False
        self.opened = time.monotonic()
        self.server = None
        self.style_exports = {}
        self.workdir = tempfile.mkdtemp(prefix=bridge.temp_prefix())
        self.session = bridge.PreviewSession(self._send, self.workdir)
        self.picture = Gtk.Image()
        self.picture.set_size_request(bridge.PREVIEW_SIZE, bridge.PREVIEW_SIZE)
        self.status = Gtk.Label(label="")
        self.status.set_line_wrap(True)
        self.status.set_max_width_chars(48)
        box = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, spacing=6)
        box.set_border_width(6)
        box.pack_start(self.picture, False, False, 0)
        box.pack_start(self.status, False, False, 0)
        self.widget = Gtk.Frame(label="Preview")
        self.widget.add(box)
        self.widget.show_all()
        self.timer = GLib.timeout_add(50, self._tick)
        self.content = None
        self.layer_name = layer.get_name() if layer is not None else ""
        if layer is None:
            self._fail("select a layer to see the preview")
            return
        try:
            self.content = os.path.join(self.workdir, "layer.png")
            _export(layer, self.content, 8, limit=bridge.PREVIEW_SIZE)
            self._show_picture(self.content)
        except Exception as error:  # noqa: BLE001 - no preview, but the dialog stays usable
            self.content = None
            self._fail(f"no preview: {type(error).__name__}: {error}")
            return
        try:
            self.server = bridge.ServeProcess(bridge.find_cli(HERE), on_event=self._from_reader,
                                              stderr_path=os.path.join(self.workdir, "serve-stderr.txt"))
            self.server.start()
        except bridge.CliError as error:
            self._fail(str(error))
            return
        self.status.set_text("Starting nst-core...")
        bridge.log(f"preview: nst-core serve started (pid {self.server.pid})")

    def _fail(self, message):
        self.session.failed = message
        self.status.set_text(message)
        bridge.log(f"preview: error: {message}")

    def _send(self, message):
        return self.server is not None and self.server.send(message)

    def _show_picture(self, path):
        self.picture.set_from_pixbuf(self.GdkPixbuf.Pixbuf.new_from_file(path))

    def change(self, config, problem):
        """The settings changed (``problem``: why no run can start, or None)."""
        if self.closed or self.content is None:
            return
        style = None
        options = _options(config, Gimp.RunMode.INTERACTIVE, "instant")
        try:
            if problem is None:
                style = options.style or self._style_layer_file(config.get_property("style-layer"))
            self.session.change(self.content, style, options)
        except Exception as error:  # noqa: BLE001 - a layer that cannot be read, a refused setting
            self.status.set_text(bridge.one_line(f"no preview: {error}"))
            return
        if not self.session.failed:
            self.status.set_text(problem or ("Painting..." if self.session.ready else "Starting nst-core..."))

    def _style_layer_file(self, layer):
        key = layer.get_id()
        if key not in self.style_exports:
            path = os.path.join(self.workdir, f"style-{len(self.style_exports)}.png")
            _export(layer, path, 8, limit=bridge.PREVIEW_STYLE_SIZE)
            self.style_exports[key] = path
        return self.style_exports[key]

    def _tick(self):
        if self.closed:
            return False
        if self.session.tick() is not None:
            self.status.set_text("Painting...")
        return True

    def _from_reader(self, event):  # on the server's reader thread
        GLib.idle_add(self._on_event, event)

    def _on_event(self, event):
        if self.closed:
            return False
        if event.get("event") == "ready":
            bridge.log(f"preview: nst-core serve ready {time.monotonic() - self.opened:.2f} s after the dialog opened")
        update = self.session.handle(event)
        if update is None:
            return False
        if update.kind == "drawn":
            try:
                self._show_picture(update.path)
            except GLib.Error as error:
                self.status.set_text(bridge.one_line(f"cannot show the preview: {error.message}"))
                return False
            pixbuf = self.picture.get_pixbuf()
            self.status.set_text(f"{self.layer_name} at {pixbuf.get_width()} × {pixbuf.get_height()} px")
            bridge.log(f"preview: request {update.request} drawn {update.since_change:.2f} s after the change "
                       f"(nst-core {update.request_seconds:.2f} s); image layers: {len(self.image.get_layers())}")
        elif update.kind == "error":
            self.status.set_text(update.text)
            bridge.log(f"preview: error: {update.text}")
        else:
            self.status.set_text(update.text)
        return False

    def close(self):
        """Stop the server (quit, then SIGKILL) and remove the preview's files."""
        self.closed = True
        GLib.source_remove(self.timer)
        if self.server is not None:
            started = time.monotonic()
            code = self.server.close(ready=self.session.ready)
            bridge.log(f"preview: nst-core serve (pid {self.server.pid}) stopped in "
                       f"{time.monotonic() - started:.2f} s, exit code {code}")
        bridge.cleanup_dir(self.workdir)


#: The settings read from a procedure's config (each entry has some of them).
_OPTION_NAMES = ("strength", "preserve-color", "quality", "size", "seed", "iterations", "tv-weight", "model")


def _options(config, run_mode, method):
    names = {spec.name for spec in config.list_properties()}
    values = {name: config.get_property(name) for name in _OPTION_NAMES if name in names}
    if "style-file" in names:
        style_path = config.get_property("style-path") if run_mode != Gimp.RunMode.INTERACTIVE else ""
        values["style"] = _path(config.get_property("style-file")) or style_path or ""
    if "fast-style" in names:
        fast_style = config.get_property("fast-style")
        fast_path = config.get_property("fast-model-path") if run_mode != Gimp.RunMode.INTERACTIVE else ""
        values["fast_model"] = fast_style if fast_style and fast_style != bridge.NO_FAST_MODEL else (fast_path or "")
    values["method"] = method
    return bridge.Options.from_mapping(values)


def _path(file):
    """A Gio.File argument's local path, or ""."""
    return (file.get_path() or "") if file is not None else ""


def _region_settings(config):
    """Paint by Region's (regions used, rest mode, rest painting file) from its config."""
    slots = range(1, bridge.REGION_SLOTS + 1)
    regions = bridge.used_regions([_path(config.get_property(f"painting-{n}")) for n in slots],
                                  [config.get_property(f"region-{n}") or "" for n in slots])
    return regions, config.get_property("rest"), _path(config.get_property("rest-file"))


def _region_problem(config, run_mode, method, image=None):
    return bridge.region_problem(*_region_settings(config),
                                 selection_empty=image is not None and not _selection_active(image))


def _style_problem(config, run_mode, method, image=None):
    options = _options(config, run_mode, method)
    return bridge.style_problem(options.style, style_layer=config.get_property("style-layer") is not None,
                                fast_model=options.fast_model,
                                missing=bridge.NO_PAINTING if method == "instant" else bridge.NO_STYLE)


def _layer_of(drawable):
    if isinstance(drawable, Gimp.LayerMask):
        return Gimp.Layer.from_mask(drawable)
    if isinstance(drawable, Gimp.Layer):
        return drawable
    return None


def _export(drawable, path, bit_depth, limit=0):
    """Write the drawable's pixels (perceptual sRGB) to a PNG, at most ``limit`` px on the long
    side when ``limit`` is set (GEGL scales them); return (width, height)."""
    scale, width, height = 1.0, drawable.get_width(), drawable.get_height()
    if limit:
        scale, width, height = bridge.preview_size(width, height, limit)
    alpha = drawable.has_alpha()
    channels = 4 if alpha else 3
    babl_format = ("R'G'B'A" if alpha else "R'G'B'") + (" u8" if bit_depth == 8 else " u16")
    rect = Gegl.Rectangle.new(0, 0, width, height)
    pixels = drawable.get_buffer().get(rect, scale, babl_format, Gegl.AbyssPolicy.CLAMP)
    bridge.write_png(path, bytes(pixels), width, height, channels, bit_depth)
    return width, height


def _all_layers(image):
    """Every layer of the image, those inside layer groups too."""
    found, todo = [], list(image.get_layers())
    while todo:
        layer = todo.pop(0)
        found.append(layer)
        if layer.is_group():
            todo[:0] = layer.get_children()
    return found


def _export_region(image, layer, spec, path):
    """Write a region (see ``bridge.parse_region``) as a grayscale 8-bit PNG mask of ``layer``'s
    size and place: the region's linear values ("Y u8", 0-255 = 0-1), 0 outside it."""
    kind, name = bridge.parse_region(spec)
    origin_x = origin_y = 0
    if kind == bridge.REGION_SELECTION:
        drawable = image.get_selection()
    elif kind == "channel":
        drawable = image.get_channel_by_name(name)
        if drawable is None:
            raise bridge.CliError(f"the image has no channel named {name!r}")
    else:
        owner = image.get_layer_by_name(name)
        if owner is None:
            raise bridge.CliError(f"the image has no layer named {name!r}")
        drawable = owner.get_mask()
        if drawable is None:
            raise bridge.CliError(f"the layer {name!r} has no layer mask")
        _, origin_x, origin_y = owner.get_offsets()
    _, offset_x, offset_y = layer.get_offsets()
    width, height = layer.get_width(), layer.get_height()
    rect = Gegl.Rectangle.new(offset_x - origin_x, offset_y - origin_y, width, height)
    values = bytes(drawable.get_buffer().get(rect, 1.0, "Y u8", Gegl.AbyssPolicy.NONE))
    if not any(values):
        raise bridge.CliError(f"{bridge.region_label(spec)} covers nothing of the layer {layer.get_name()!r}")
    bridge.write_png(path, values, width, height, 1, 8)


def _selection_active(image):
    return not Gimp.Selection.is_empty(image)


def _run(procedure, run_mode, image, drawables, config, data):
    """Every entry's run function: the dialog (interactive), then one new layer per selected layer."""
    method = ENTRIES[procedure.get_name()][1]
    if run_mode == Gimp.RunMode.INTERACTIVE:
        show = {"instant": _show_instant_dialog, "regions": _show_region_dialog}.get(method, _show_dialog)
        if not show(procedure, config, image, drawables):
            return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, None)

    layers = []
    for drawable in drawables or []:
        layer = _layer_of(drawable)
        if layer is None:
            return _error(procedure, "Neural Style works on layers; select one or more layers")
        if layer not in layers:
            layers.append(layer)
    if not layers:
        return _error(procedure, "no layer selected")

    options = _options(config, run_mode, method)
    problem = (_region_problem if method == "regions" else _style_problem)(config, run_mode, method, image)
    if problem:
        return _error(procedure, problem)
    try:
        options.validate()
        cli = bridge.find_cli(HERE)
    except (ValueError, bridge.CliError) as error:
        return _error(procedure, str(error))

    bridge.sweep_stale_temp_dirs()
    workdir = tempfile.mkdtemp(prefix=bridge.temp_prefix())
    previous = {}
    for signum in (signal.SIGTERM, signal.SIGINT):
        try:
            previous[signum] = signal.signal(signum, lambda *_: _STOP_REQUESTED.append(True))
        except (ValueError, OSError):
            pass
    try:
        bit_depth = bridge.bit_depth_for_precision(image.get_precision().value_name)
        job = _region_job if method == "regions" else _style_job
        style_name, command_for = job(image, config, options, cli, workdir, bit_depth)

        Gimp.progress_init(f"Neural Style: {style_name}")
        results = []
        count = len(layers)
        for index, layer in enumerate(layers):
            content = os.path.join(workdir, f"content-{index}.png")
            output = os.path.join(workdir, f"result-{index}.png")
            width, height = _export(layer, content, bit_depth)
            command = command_for(layer, index, content, output, width, height)
            bridge.log(f"run: {bridge.command_text(command)}")
            label = "Neural Style" if count == 1 else f"Neural Style ({index + 1}/{count})"

            def on_update(fraction, text, index=index):
                if fraction is not None:
                    Gimp.progress_update((index + fraction) / count)
                if text:
                    Gimp.progress_set_text(text)

            bridge.run_cli(command, on_update=on_update, should_cancel=lambda: bool(_STOP_REQUESTED),
                           tracker=bridge.ProgressTracker(label),
                           stderr_path=os.path.join(workdir, f"stderr-{index}.txt"))
            if not os.path.isfile(output):
                raise bridge.CliError(f"nst-core wrote no result for layer {layer.get_name()!r}")
            results.append((layer, output))

        # Everything worked: now change the image, in one undo group.
        selection = _selection_active(image) and method != "regions"  # regions: nst-core keeps the rest
        image.undo_group_start()
        try:
            for layer, output in results:
                _add_result_layer(image, layer, output, style_name, selection)
        finally:
            image.undo_group_end()
        Gimp.progress_update(1.0)
        Gimp.displays_flush()
    except bridge.CliError as error:
        return _error(procedure, str(error))
    except Exception as error:  # noqa: BLE001 - report, never leave a traceback as the only trace
        return _error(procedure, f"Neural Style failed: {type(error).__name__}: {error}")
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        bridge.cleanup_dir(workdir)
    return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())


def _style_job(image, config, options, cli, workdir, bit_depth):
    """One painting (a file, a fast style or a layer, exported here): (its name, the function that
    makes a layer's command line)."""
    style_path = None
    if options.uses_fast_model:
        style_name = bridge.style_label(bridge.resolve_fast_model(options.fast_model))
    elif options.style:
        style_path = options.style
        style_name = bridge.style_label(style_path)
    else:
        style_layer = config.get_property("style-layer")
        style_path = os.path.join(workdir, "style.png")
        _export(style_layer, style_path, bit_depth)
        style_name = bridge.style_label(None, style_layer.get_name())

    def command_for(layer, index, content, output, width, height):
        return bridge.build_command(cli, content, style_path, output, options, width, height)

    return style_name, command_for


def _region_job(image, config, options, cli, workdir, bit_depth):
    """Paint by Region: (the paintings' names, the function that exports a layer's masks and makes
    its command line)."""
    regions, rest_mode, rest_file = _region_settings(config)
    rest = bridge.rest_painting(rest_mode, rest_file)

    def command_for(layer, index, content, output, width, height):
        masks = [os.path.join(workdir, f"mask-{index}-{number}.png") for number in range(len(regions))]
        for region, mask in zip(regions, masks):
            _export_region(image, layer, region.region, mask)
        return bridge.build_region_command(cli, content, regions, masks, output, options, width, height, rest=rest)

    return bridge.region_style_label(regions, rest), command_for


def _add_result_layer(image, layer, path, style_name, selection):
    new = Gimp.file_load_layer(Gimp.RunMode.NONINTERACTIVE, image, Gio.File.new_for_path(path))
    if new is None:
        raise bridge.CliError(f"GIMP could not load nst-core's result {os.path.basename(path)}")
    new.set_name(bridge.result_layer_name(layer.get_name(), style_name))
    image.insert_layer(new, layer.get_parent(), image.get_item_position(layer))
    width, height = layer.get_width(), layer.get_height()
    if (new.get_width(), new.get_height()) != (width, height):
        new.scale(width, height, False)
    _, offset_x, offset_y = layer.get_offsets()
    new.set_offsets(offset_x, offset_y)
    if selection:
        new.add_mask(new.create_mask(Gimp.AddMaskType.SELECTION))
    return new


#: The entries of Filters > Neural Style: procedure name -> (define its settings, its method in
#: bridge.METHODS: which dialog and command line :func:`_run` uses). Their menu labels are in
#: nst_gimp_bridge.MENU_LABELS.
ENTRIES = {
    "python-fu-nst-neural-style": (_define_paint, "optimize"),
    "python-fu-nst-instant-style": (_define_instant, "instant"),
    "python-fu-nst-region-style": (_define_regions, "regions"),
}


class NeuralStyle(Gimp.PlugIn):
    def do_query_procedures(self):
        return list(ENTRIES)

    def do_set_i18n(self, name):
        return False

    def do_create_procedure(self, name):
        define, _ = ENTRIES[name]
        procedure = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, _run, None)
        procedure.set_image_types("RGB*, GRAY*")
        procedure.set_sensitivity_mask(
            Gimp.ProcedureSensitivityMask.DRAWABLE | Gimp.ProcedureSensitivityMask.DRAWABLES)
        procedure.set_menu_label(bridge.MENU_LABELS[name])
        procedure.add_menu_path(bridge.MENU_PATH)
        procedure.set_attribution("nst-core", "nst-core contributors", "2026")
        define(procedure)
        return procedure


if __name__ == "__main__":
    Gimp.main(NeuralStyle.__gtype__, sys.argv)
