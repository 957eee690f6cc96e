"""The GIMP-free half of the nst-core GIMP plug-in.

Everything here is plain Python (no ``gi``, no numpy, no Pillow: GIMP's own Python may have
neither), so it is unit-tested without GIMP (``tests/gimp/test_bridge.py``):

* the procedure's settings (:class:`Options`) and their translation into an ``nst-core run``
  command line (:func:`build_command`), driven by small tables so that adding a choice or an
  option is one line (:data:`QUALITY_PRESETS`, :data:`COLOR_MODES`, :data:`MODELS`, :data:`FLAGS`);
* the fast-style models found in nst-core's models folder (:func:`list_fast_models`), offered
  as an alternative to a style image (``nst-core run --fast-model``);
* the instant method (``nst-core run --method instant``, :data:`INSTANT_FLAGS`) and its dialog's
  preview: one ``nst-core serve`` process per dialog (:class:`ServeProcess`) and the preview's
  debounce and supersede logic (:class:`PreviewSession`);
* Paint by Region's painting/region pairs (:class:`Region`, region strings such as
  ``channel:sky``) and their ``nst-core run PHOTO A B --masks MA,MB [--rest R]`` command line
  (:func:`build_region_command`), the dialog's region list and its one-line problem and summary;
* the style-strength slider's mapping onto ``--style-weight`` (:func:`style_weight_for_strength`);
* parsing ``--progress json`` lines into a progress fraction and a status text
  (:class:`ProgressTracker`);
* running the CLI in a subprocess with cancellation and clean-up (:func:`run_cli`);
* writing the layer's pixels as an 8- or 16-bit PNG (:func:`write_png`);
* finding the ``nst-core`` executable (:func:`find_cli`).

The result is read back by GIMP itself (``Gimp.file_load_layer``), so no PNG decoder is needed.
"""

from __future__ import annotations

import json
import math
import os
import queue
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from array import array
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

#: File written at install time next to the plug-in: the absolute path of ``nst-core``.
CLI_PATH_FILE = "nst-core-path.txt"
#: Environment variable that overrides the recorded path (for tests and unusual setups).
CLI_ENV = "NST_GIMP_CLI"
CLI_NAME = "nst-core"

# --------------------------------------------------------------------------------------------
# The menu: a "Neural Style" submenu directly under Filters, one entry per procedure.

#: GIMP's menu path of every entry (GIMP makes the submenu).
MENU_PATH = "<Image>/Filters/Neural Style"
#: The entries: procedure name -> menu label. nst_gimp.py's ``ENTRIES`` gives each one its
#: settings and run function (a test checks that the two tables name the same procedures).
MENU_LABELS: dict[str, str] = {
    "python-fu-nst-neural-style": "Paint Like a Painting...",
    "python-fu-nst-instant-style": "Instant Style...",
    "python-fu-nst-region-style": "Paint by Region...",
}


def menu_text(procedure: str | None = None) -> str:
    """Where a user finds an entry, in words: ``Filters > Neural Style > Paint Like a Painting...``;
    without ``procedure``, the submenu and every entry of it."""
    submenu = " > ".join(MENU_PATH.split("/")[1:])
    if procedure is None:
        return f"{submenu} ({', '.join(label.rstrip('.') for label in MENU_LABELS.values())})"
    return f"{submenu} > {MENU_LABELS[procedure]}"

# --------------------------------------------------------------------------------------------
# Choices. Each is one line: value -> (label shown in GIMP, what it means for the CLI).


@dataclass(frozen=True)
class Preset:
    label: str
    cli_preset: str  # nst-core's --preset: its plan of sizes and steps
    max_size: int  # processing size cap (long side, px); 0 = no cap


#: Quality presets: nst-core's preset and the largest processing size (the result is scaled to
#: the layer's size afterwards).
QUALITY_PRESETS: dict[str, Preset] = {
    "preview": Preset("Preview (fast)", cli_preset="preview", max_size=512),
    "balanced": Preset("Balanced", cli_preset="balanced", max_size=1024),
    "best": Preset("Best (slow)", cli_preset="best", max_size=2048),
    # any size: nst-core computes large layers small first, then refines them in tiles that fit
    # the memory (a 4000x3000 layer takes most of an hour on a 2-core CPU)
    "full": Preset("Full size (slowest, any size)", cli_preset="balanced", max_size=0),
}
DEFAULT_QUALITY = "balanced"

#: Colour preservation, passed through as ``--preserve-color VALUE``.
COLOR_MODES: dict[str, str] = {
    "none": "None (use the style's colours)",
    "luminance": "Luminance (keep the layer's colours)",
    "histogram": "Histogram (match the layer's colours)",
}
DEFAULT_COLOR = "none"

#: Network; "auto" leaves ``--model`` out (the engine picks the weights file's network).
MODELS: dict[str, str] = {
    "auto": "Automatic",
    "vgg16": "VGG-16 (faster)",
    "vgg19": "VGG-19 (the paper's)",
}
DEFAULT_MODEL = "auto"

#: Engine default of ``--style-weight`` (``nst_core.Config().style_weight``; GIMP's Python cannot
#: import nst_core, so it is repeated here and a test checks that the two agree), reached at 50.
DEFAULT_STYLE_WEIGHT = 5.0
#: Strength points per decade of style weight: 0 -> 0.05, 25 -> 0.5, 50 -> 5, 75 -> 50, 100 -> 500.
STRENGTH_POINTS_PER_DECADE = 25.0
#: The slider's mapping in words, for the procedure's help (a test evaluates it against the code).
STRENGTH_FORMULA = f"{DEFAULT_STYLE_WEIGHT:g} * 10^((s - 50) / {STRENGTH_POINTS_PER_DECADE:g})"
#: Smallest processing size the engine accepts.
MIN_SIZE = 16


#: How the layers are painted: "optimize" (``nst-core run``'s default: Gatys et al.), "instant"
#: (``--method instant``: any painting in one network pass, Ghiasi et al. 2017) or "regions" (the
#: optimization with a painting per region of the image: ``--masks``, see :func:`region_arguments`).
METHODS = ("optimize", "instant", "regions")
#: The Instant Style entry's strength slider default: the painting's full style.
INSTANT_DEFAULT_STRENGTH = 100.0


def instant_strength(strength: float) -> float:
    """The Instant Style slider (0-100 %) as ``--style-strength`` (0-1): 0 paints the layer in its
    own style, 100 in the painting's; in between the two style vectors are mixed linearly."""
    return min(100.0, max(0.0, float(strength))) / 100.0


def style_weight_for_strength(strength: float) -> float:
    """Map the 0-100 "style strength" slider onto ``--style-weight`` (logarithmically).

    ``weight = 5 * 10 ** ((strength - 50) / 25)``: 50 gives the engine's default 5.0 and every
    25 points multiply the weight by ten (0 -> 0.05, 100 -> 500), so equal slider steps make
    similar-looking changes anywhere on the slider.
    """
    strength = min(100.0, max(0.0, float(strength)))
    return DEFAULT_STYLE_WEIGHT * 10.0 ** ((strength - 50.0) / STRENGTH_POINTS_PER_DECADE)


def strength_for_style_weight(weight: float) -> float:
    """Inverse of :func:`style_weight_for_strength` (unclamped)."""
    return 50.0 + STRENGTH_POINTS_PER_DECADE * math.log10(weight / DEFAULT_STYLE_WEIGHT)


# --------------------------------------------------------------------------------------------
# Options -> command line


# --------------------------------------------------------------------------------------------
# Fast-style models

#: nst-core's cache folder variable and the models folder inside it (``nst_core.weights.cache_dir``
#: and ``nst_core.fast.default_models_folder``; GIMP's Python cannot import nst_core, so the rule is
#: repeated here and a test checks that the two agree).
CACHE_ENV = "NST_CORE_CACHE_DIR"
MODELS_SUBDIR = "models"
MODEL_SUFFIX = ".nst"
#: The "fast style" choice that means: no model, use the style image.
NO_FAST_MODEL = "none"


def models_folder(environ: Mapping[str, str] | None = None) -> Path:
    """nst-core's models folder: ``<cache>/models``, the cache found as nst-core finds it."""
    env = os.environ if environ is None else environ
    override = env.get(CACHE_ENV, "").strip()
    if override:
        cache = Path(override).expanduser()
    elif os.name == "nt" and env.get("LOCALAPPDATA", "").strip():
        cache = Path(env["LOCALAPPDATA"].strip()) / "nst-core"
    elif env.get("XDG_CACHE_HOME", "").strip() and os.path.isabs(env["XDG_CACHE_HOME"].strip()):
        cache = Path(env["XDG_CACHE_HOME"].strip()) / "nst-core"
    else:
        cache = Path.home() / ".cache" / "nst-core"
    return cache / MODELS_SUBDIR


def list_fast_models(folder: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """``{choice name: model file path}`` of the ``*.nst`` files in the models folder, sorted.

    Choice names are the file names without ``.nst``, with characters other than letters,
    digits, ``-`` and ``_`` replaced by ``-`` (GIMP stores them in its settings).
    """
    base = Path(folder) if folder is not None else models_folder()
    try:
        files = sorted(p for p in base.iterdir() if p.suffix == MODEL_SUFFIX and p.is_file())
    except OSError:
        return {}
    models: dict[str, str] = {}
    for path in files:
        name = "".join(c if c.isalnum() or c in "-_" else "-" for c in path.stem) or "model"
        if name != NO_FAST_MODEL and name not in models:
            models[name] = str(path)
    return models


def fast_model_choices(folder: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """The dialog's "Fast style" choices: none (use the style image), then every model found."""
    choices = {NO_FAST_MODEL: "None (use the style image)"}
    choices.update({name: f"{name} (fast)" for name in list_fast_models(folder)})
    return choices


@dataclass
class Options:
    """The procedure's settings, as plain values (the plug-in fills it from its config)."""

    style: str = ""  # style image file; empty when a style layer is used instead
    strength: float = 50.0  # 0..100, see style_weight_for_strength
    preserve_color: str = DEFAULT_COLOR
    quality: str = DEFAULT_QUALITY
    size: int = 0  # processing long side in px; 0 = the layer's size (capped by the preset)
    seed: int = 0
    iterations: int = 0  # steps at full size; 0 = from the quality preset
    tv_weight: float = -1.0  # < 0 = the engine's default
    model: str = DEFAULT_MODEL
    #: A fast-style model (a .nst path, or a name in nst-core's models folder); empty or "none":
    #: optimize with the style image instead.
    fast_model: str = ""
    #: "optimize" or "instant" (see METHODS); a fast model wins over both.
    method: str = "optimize"
    extra: list[str] = field(default_factory=list)  # more CLI arguments, appended verbatim

    @property
    def uses_fast_model(self) -> bool:
        return bool(self.fast_model) and self.fast_model != NO_FAST_MODEL

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "Options":
        """Build from a mapping that may use GIMP's dashed names (``preserve-color``)."""
        known = {f.name for f in fields(cls)}
        kwargs = {}
        for key, value in values.items():
            name = key.replace("-", "_")
            if name in known:
                kwargs[name] = value
        return cls(**kwargs)

    def validate(self) -> None:
        """Raise ValueError with a one-line message for settings the CLI would refuse."""
        for name, table in (("quality", QUALITY_PRESETS), ("preserve_color", COLOR_MODES), ("model", MODELS)):
            value = getattr(self, name)
            if value not in table:
                raise ValueError(f"unknown {name.replace('_', ' ')} {value!r}; choose one of {', '.join(table)}")
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        if not 0 <= float(self.strength) <= 100:
            raise ValueError(f"style strength must be between 0 and 100, got {self.strength}")
        if int(self.size) < 0 or 0 < int(self.size) < MIN_SIZE:
            raise ValueError(f"output size must be 0 (the layer's size) or at least {MIN_SIZE} px, got {self.size}")
        if int(self.iterations) < 0:
            raise ValueError(f"iterations must be 0 (from the quality preset) or more, got {self.iterations}")

    def processing_size(self, width: int, height: int) -> int:
        """Long side to compute at, or 0 for the layer's own size.

        An explicit ``size`` wins; otherwise the layer's long side, capped by the preset.
        """
        if int(self.size) > 0:
            return int(self.size)
        cap = QUALITY_PRESETS[self.quality].max_size
        long_side = max(int(width), int(height))
        if cap and long_side > cap:
            return cap
        return 0


def _number(value: float) -> str:
    return f"{float(value):.6g}"


#: Options -> CLI flags, one line each: (flag, function of (options, layer width, layer height)
#: returning the flag's value as a string, or None to leave the flag out).
FLAGS: list[tuple[str, Callable[[Options, int, int], "str | None"]]] = [
    ("--size", lambda o, w, h: str(o.processing_size(w, h))),
    ("--preset", lambda o, w, h: QUALITY_PRESETS[o.quality].cli_preset),
    ("--iterations", lambda o, w, h: str(int(o.iterations)) if int(o.iterations) > 0 else None),
    ("--style-weight", lambda o, w, h: f"{style_weight_for_strength(o.strength):.6g}"),
    ("--tv-weight", lambda o, w, h: None if float(o.tv_weight) < 0 else _number(o.tv_weight)),
    ("--seed", lambda o, w, h: str(int(o.seed))),
    ("--model", lambda o, w, h: None if o.model == "auto" else o.model),
    ("--preserve-color", lambda o, w, h: o.preserve_color),
]


#: The flags of a fast-style run (no optimization: only size and colours matter). With a fast
#: model the layer is processed at its own size unless a size is set (one network pass is quick).
FAST_FLAGS: list[tuple[str, Callable[[Options, int, int], "str | None"]]] = [
    ("--size", lambda o, w, h: str(int(o.size))),
    ("--preserve-color", lambda o, w, h: o.preserve_color),
]


#: The flags of an instant run: the slider as --style-strength (linear, 0-1), the colours, and the
#: layer's own size unless a size is set (one network pass; large layers go in tiles).
INSTANT_FLAGS: list[tuple[str, Callable[[Options, int, int], "str | None"]]] = [
    ("--method", lambda o, w, h: "instant"),
    ("--style-strength", lambda o, w, h: f"{instant_strength(o.strength):.6g}"),
    ("--size", lambda o, w, h: str(int(o.size))),
    ("--preserve-color", lambda o, w, h: o.preserve_color),
]


def resolve_fast_model(name: str, folder: str | os.PathLike[str] | None = None) -> str:
    """The path to pass as ``--fast-model``: a choice name's file, else ``name`` as it is."""
    return list_fast_models(folder).get(name, name)


def build_command(
    cli: Sequence[str] | str,
    content: str | os.PathLike[str],
    style: str | os.PathLike[str] | None,
    output: str | os.PathLike[str],
    options: Options,
    width: int,
    height: int,
) -> list[str]:
    """The ``nst-core run`` command line for one layer (``width`` x ``height`` px).

    With :attr:`Options.fast_model` set, ``style`` is not used: ``nst-core run CONTENT
    --fast-model MODEL -o OUT``.
    """
    command = [cli] if isinstance(cli, str) else list(cli)
    return [*command, "run", *run_arguments(content, style, output, options, width, height), "--progress", "json",
            *(str(arg) for arg in options.extra)]


def run_arguments(content: str | os.PathLike[str], style: str | os.PathLike[str] | None,
                  output: str | os.PathLike[str], options: Options, width: int, height: int) -> list[str]:
    """The arguments of ``nst-core run`` for these settings (the plug-in's command line, and the
    preview's ``nst-core serve`` requests): ``CONTENT STYLE -o OUT --flag value ...``."""
    options.validate()
    if options.uses_fast_model:
        args = [os.fspath(content), "--fast-model", resolve_fast_model(options.fast_model), "-o", os.fspath(output)]
        flags = FAST_FLAGS
    else:
        if not style:
            raise ValueError("choose a style image (or a style layer, or a fast style)")
        args = [os.fspath(content), os.fspath(style), "-o", os.fspath(output)]
        flags = INSTANT_FLAGS if options.method == "instant" else FLAGS
    return args + _flag_arguments(flags, options, width, height)


def _flag_arguments(flags: Sequence[tuple[str, Callable[[Options, int, int], "str | None"]]], options: Options,
                    width: int, height: int) -> list[str]:
    args: list[str] = []
    for flag, value_of in flags:
        value = value_of(options, int(width), int(height))
        if value is not None:
            args += [flag, value]
    return args


# --------------------------------------------------------------------------------------------
# Regions (Paint by Region...): a painting per region of the image, in one run
# (``nst-core run PHOTO A B --masks MA,MB [--rest R] -o OUT``)

#: How many painting/region pairs the dialog offers.
REGION_SLOTS = 3
#: A region is a string, so scripts can name it and GIMP can remember it: "" (not used),
#: "selection" (the current selection), "channel:NAME" (a saved selection) or
#: "layer-mask:NAME" (the mask of the layer NAME).
REGION_UNUSED = ""
REGION_SELECTION = "selection"
REGION_KINDS = {"channel": "channel", "layer-mask": "layer mask of"}
#: What paints the pixels that no region covers.
REST_MODES: dict[str, str] = {
    "unchanged": "Leave the rest unchanged",
    "paint": "Paint the rest with...",
}
DEFAULT_REST = "unchanged"
#: The CLI's painting for a region that keeps the photo.
KEEP_PHOTO = "none"
NO_REGION = "give a painting a region (a selection, a channel or a layer mask)"
EMPTY_SELECTION = "the selection is empty: select an area, or choose another region"


@dataclass(frozen=True)
class Region:
    """One painting and its region: ``painting`` a file, or "" to keep the photo there;
    ``region`` a region string (see :data:`REGION_SELECTION`)."""

    painting: str
    region: str


def parse_region(spec: str) -> tuple[str, str]:
    """``(kind, name)`` of a region string: ("selection", ""), ("channel", NAME),
    ("layer-mask", NAME); ValueError for anything else (or "" : no region)."""
    spec = str(spec or "")
    if spec == REGION_SELECTION:
        return REGION_SELECTION, ""
    kind, sep, name = spec.partition(":")
    if sep and kind in REGION_KINDS and name:
        return kind, name
    raise ValueError(f"unknown region {spec!r}; use 'selection', 'channel:NAME' or 'layer-mask:NAME'")


def region_label(spec: str) -> str:
    """The region in words: ``the selection``, ``channel 'sky'``, ``layer mask of 'houses'``."""
    kind, name = parse_region(spec)
    return "the selection" if kind == REGION_SELECTION else f"{REGION_KINDS[kind]} {name!r}"


def region_choices(channels: Iterable[str], masked_layers: Iterable[str], *,
                   selection_empty: bool = False) -> dict[str, str]:
    """The dialog's region list for an image: ``{region string: label}``, "not used" first."""
    choices = {REGION_UNUSED: "(not used)",
               REGION_SELECTION: "Current selection" + (" (empty now)" if selection_empty else "")}
    choices.update({f"channel:{name}": f"Channel: {name}" for name in channels})
    choices.update({f"layer-mask:{name}": f"Layer mask of: {name}" for name in masked_layers})
    return choices


def used_regions(paintings: Sequence[str], regions: Sequence[str]) -> list[Region]:
    """The pairs of the dialog's slots that have a region (a painting without one is not used)."""
    return [Region(str(painting or ""), str(region)) for painting, region in zip(paintings, regions)
            if region and region != REGION_UNUSED]


def rest_painting(rest_mode: str, rest_file: str) -> str:
    """The ``--rest`` painting: ``rest_file`` when the rest is painted, else ""."""
    return str(rest_file or "") if rest_mode == "paint" else ""


def region_problem(regions: Sequence[Region], rest_mode: str = DEFAULT_REST, rest_file: str = "", *,
                   selection_empty: bool = False) -> str | None:
    """Why a region run cannot start, in one line (the dialog shows it and keeps OK disabled;
    scripts get it before nst-core starts); None when it can. ``selection_empty``: the image has
    no selection (a problem when a region is the selection)."""
    if rest_mode not in REST_MODES:
        return f"unknown rest {rest_mode!r}; choose one of {', '.join(REST_MODES)}"
    if not regions:
        return NO_REGION
    for number, region in enumerate(regions, 1):
        try:
            parse_region(region.region)
        except ValueError as error:
            return f"painting {number}: {error}"
        if region.painting and not os.path.isfile(region.painting):
            return f"the painting {region.painting} does not exist"
        if region.region == REGION_SELECTION and selection_empty:
            return EMPTY_SELECTION
    if rest_mode == "paint":
        if not rest_file:
            return "choose the painting for the rest"
        if not os.path.isfile(rest_file):
            return f"the painting {rest_file} does not exist"
    elif not any(region.painting for region in regions):
        return "nothing to paint: choose a painting for a region, or paint the rest"
    return None


def region_summary(regions: Sequence[Region], rest_mode: str = DEFAULT_REST, rest_file: str = "") -> str:
    """What the run will do, in words, for the dialog: ``channel 'sky': starry_night; the
    selection: kept; the rest: unchanged``."""
    parts = []
    for region in regions:
        try:
            where = region_label(region.region)
        except ValueError:
            where = repr(region.region)
        parts.append(f"{where}: {style_label(region.painting) if region.painting else 'kept'}")
    painted = rest_painting(rest_mode, rest_file)
    parts.append(f"the rest: {style_label(painted) if painted else 'unchanged'}")
    return "; ".join(parts)


def region_style_label(regions: Sequence[Region], rest: str = "") -> str:
    """The style part of the new layer's name: the paintings, each once, in order
    (``starry_night + picasso``)."""
    names: list[str] = []
    for painting in [region.painting for region in regions] + [rest]:
        if painting and style_label(painting) not in names:
            names.append(style_label(painting))
    return " + ".join(names) or "regions"


def region_arguments(content: str | os.PathLike[str], regions: Sequence[Region],
                     masks: Sequence[str | os.PathLike[str]], output: str | os.PathLike[str], options: Options,
                     width: int, height: int, *, rest: str | os.PathLike[str] = "") -> list[str]:
    """``CONTENT A B --masks MA,MB [--rest R] -o OUT --flag value ...``: one mask file per region,
    in order; a region without a painting is ``none`` (it keeps the photo)."""
    options.validate()
    if not regions:
        raise ValueError(NO_REGION)
    if len(masks) != len(regions):
        raise ValueError(f"{len(regions)} regions but {len(masks)} mask files")
    masks = [os.fspath(mask) for mask in masks]
    if any("," in mask for mask in masks):  # --masks is a comma-separated list
        raise ValueError(f"a mask file's path has a comma: {next(m for m in masks if ',' in m)}")
    args = [os.fspath(content), *(os.fspath(region.painting) or KEEP_PHOTO for region in regions),
            "--masks", ",".join(masks)]
    if rest:
        args += ["--rest", os.fspath(rest)]
    return args + ["-o", os.fspath(output), *_flag_arguments(FLAGS, options, width, height)]


def build_region_command(cli: Sequence[str] | str, content: str | os.PathLike[str], regions: Sequence[Region],
                         masks: Sequence[str | os.PathLike[str]], output: str | os.PathLike[str], options: Options,
                         width: int, height: int, *, rest: str | os.PathLike[str] = "") -> list[str]:
    """The ``nst-core run`` command line of a region run for one layer (see :func:`region_arguments`)."""
    command = [cli] if isinstance(cli, str) else list(cli)
    return [*command, "run", *region_arguments(content, regions, masks, output, options, width, height, rest=rest),
            "--progress", "json", *(str(arg) for arg in options.extra)]


# --------------------------------------------------------------------------------------------
# Progress


def parse_event(line: str | bytes) -> dict[str, Any] | None:
    """One ``--progress json`` line as a dict, or None for anything that is not such a line."""
    if isinstance(line, bytes):
        line = line.decode("utf-8", "replace")
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        event = json.loads(line)
    except ValueError:
        return None
    if not isinstance(event, dict) or not isinstance(event.get("event"), str):
        return None
    return event


def _seconds(value: Any) -> str:
    try:
        seconds = int(round(float(value)))
    except (TypeError, ValueError):
        return "?"
    minutes, seconds = divmod(max(0, seconds), 60)
    return f"{minutes}:{seconds:02d}" if minutes else f"{seconds} s"


class ProgressTracker:
    """Turns events into (fraction, text) and remembers the outcome.

    ``feed(event)`` returns ``(fraction or None, text or None)`` for the plug-in to show with
    ``Gimp.progress_update`` / ``Gimp.progress_set_text``, or None when nothing changes.
    """

    def __init__(self, label: str = "Neural Style") -> None:
        self.label = label
        self.total: int | None = None
        self.step = 0
        self.error: str | None = None
        self.output: str | None = None
        self.notices: list[str] = []
        self.done = False

    def feed(self, event: Mapping[str, Any]) -> tuple[float | None, str | None] | None:
        kind = event.get("event")
        if kind == "start":
            total = event.get("total")
            if isinstance(total, (int, float)) and total > 0:
                self.total = int(total)
            return 0.0, f"{self.label}: starting"
        if kind == "progress":
            total = event.get("total", self.total)
            if isinstance(total, (int, float)) and total > 0:
                self.total = int(total)
            step = event.get("step")
            if isinstance(step, (int, float)):
                self.step = int(step)
            fraction = min(1.0, self.step / self.total) if self.total else None
            if isinstance(event.get("fraction"), (int, float)):  # by time: later sizes' steps cost more
                fraction = min(1.0, max(0.0, float(event["fraction"])))
            text = f"{self.label}: step {self.step}/{self.total or '?'}"
            if isinstance(event.get("scales"), int) and event["scales"] > 1 and event.get("size"):
                text += f" at {event['size']}"
            if isinstance(event.get("tiles"), int) and event["tiles"] > 0 and isinstance(event.get("tile"), int):
                text += f", tile {event['tile']}/{event['tiles']}"
            if event.get("eta") is not None:
                text += f", {_seconds(event['eta'])} left"
            return fraction, text
        if kind == "notice":
            message = str(event.get("message", "")).strip()
            if message:
                self.notices.append(message)
                return None, f"{self.label}: {message}"
            return None
        if kind == "done":
            self.done = True
            self.output = event.get("output") or self.output
            return 1.0, f"{self.label}: done"
        if kind == "error":
            self.error = one_line(str(event.get("message") or "unknown error"))
            return None
        return None


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def error_from_stderr(stderr: str) -> str | None:
    """The message of the last ``nst-core: error: ...`` line (or the last line) of stderr."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in reversed(lines):
        marker = "error: "
        if line.startswith("nst-core") and marker in line:
            return one_line(line.split(marker, 1)[1])
    return one_line(lines[-1]) if lines else None


# --------------------------------------------------------------------------------------------
# Running the CLI


class CliError(Exception):
    """The CLI failed; ``str(error)`` is its one-line message."""

    def __init__(self, message: str, returncode: int | None = None) -> None:
        super().__init__(message)
        self.returncode = returncode


class Cancelled(CliError):
    """The run was cancelled (the CLI was stopped)."""


def child_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The CLI's environment: GIMP's, less the variables that point Python at GIMP's own Python."""
    env = dict(os.environ if base is None else base)
    for name in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONEXECUTABLE", "PYTHONNOUSERSITE",
                 "PYTHONSAFEPATH"):
        env.pop(name, None)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    return env


PR_SET_PDEATHSIG = 1


def _parent_death_kill() -> Callable[[], None] | None:
    """Linux: a ``preexec_fn`` that has the kernel SIGKILL the CLI the moment the plug-in dies.

    GIMP kills (SIGKILL) a plug-in whose progress the user cancels; the plug-in cannot pass
    that on. SIGKILL, not SIGTERM: nst-core answers SIGTERM by finishing its current step and
    writing its best image, which takes seconds and then fails on the closed pipe. ctypes is
    loaded here, in the parent: the child between fork and exec only makes the two calls.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:  # pragma: no cover - runs in the child between fork and exec
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the plug-in died before prctl: nobody would stop us
            os._exit(1)

    return preexec


def run_cli(
    command: Sequence[str],
    *,
    on_update: Callable[[float | None, str | None], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    env: Mapping[str, str] | None = None,
    stderr_path: str | os.PathLike[str] | None = None,
    poll_interval: float = 0.2,
    timeout: float | None = None,
    tracker: ProgressTracker | None = None,
) -> ProgressTracker:
    """Run the CLI, report progress, and return the tracker of a successful run.

    ``on_update(fraction, text)`` is called from this (the calling) thread for every progress
    line; ``should_cancel()`` is polled every ``poll_interval`` seconds. Raises
    :class:`Cancelled` when cancelled (the CLI is stopped: SIGINT, then SIGKILL after 10 s) and
    :class:`CliError` with the CLI's one-line message when it fails. The subprocess never
    outlives this call.
    """
    tracker = tracker or ProgressTracker()
    lines: "queue.Queue[bytes | None]" = queue.Queue()
    # stderr goes to a file, not a pipe: no deadlock, and it is read only on failure
    stderr_file = open(stderr_path, "w+b") if stderr_path else tempfile.TemporaryFile("w+b")
    kwargs: dict[str, Any] = {}
    preexec = _parent_death_kill()
    if preexec is not None:
        kwargs["preexec_fn"] = preexec
    elif os.name == "nt":
        kwargs["creationflags"] = getattr(subprocess, "CREATE_NO_WINDOW", 0) | getattr(
            subprocess, "CREATE_NEW_PROCESS_GROUP", 0)
    try:
        try:
            process = subprocess.Popen(
                list(command), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr_file,
                env=child_env(env), **kwargs)
        except OSError as error:
            raise CliError(f"cannot start {command[0]}: {error.strerror or error}") from None

        def pump() -> None:
            for raw in iter(process.stdout.readline, b""):
                lines.put(raw)
            lines.put(None)

        reader = threading.Thread(target=pump, name="nst-core-stdout", daemon=True)
        reader.start()
        started = time.monotonic()
        finished = False
        try:
            while not finished:
                if should_cancel is not None and should_cancel():
                    raise Cancelled("cancelled")
                if timeout is not None and time.monotonic() - started > timeout:
                    raise CliError(f"nst-core did not finish within {timeout:.0f} s")
                try:
                    raw = lines.get(timeout=poll_interval)
                except queue.Empty:
                    continue
                while raw is not None:
                    event = parse_event(raw)
                    if event is not None:
                        update = tracker.feed(event)
                        if update is not None and on_update is not None:
                            on_update(*update)
                    try:
                        raw = lines.get_nowait()
                    except queue.Empty:
                        break
                else:
                    finished = True
            returncode = process.wait()
        finally:
            if process.poll() is None:
                _stop(process)
            reader.join(timeout=5)
            if process.stdout:
                process.stdout.close()
        if returncode != 0 or tracker.error:
            stderr_file.seek(0)
            stderr_text = stderr_file.read().decode("utf-8", "replace")
            message = tracker.error or error_from_stderr(stderr_text)
            if returncode in (130, 143, -signal.SIGINT, -signal.SIGTERM) and not tracker.error:
                raise Cancelled(message or "stopped", returncode)
            raise CliError(message or f"nst-core failed with exit code {returncode}", returncode)
        return tracker
    finally:
        stderr_file.close()


def _stop(process: subprocess.Popen) -> None:
    """Ask the CLI to stop (it writes its best image so far), then force it."""
    try:
        if os.name == "nt":
            process.terminate()
        else:
            process.send_signal(signal.SIGINT)
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    except OSError:
        pass


# --------------------------------------------------------------------------------------------
# The Instant Style dialog's preview: one `nst-core serve` per dialog

#: Long side of the preview, in pixels (the layer is exported this small once per dialog).
PREVIEW_SIZE = 384
#: Long side of a style layer exported for the preview (the painting's central square is read
#: at 256x256 by nst-core, so this is plenty).
PREVIEW_STYLE_SIZE = 1024
#: Seconds without a change before the preview is redrawn (a dragged slider sends one request).
PREVIEW_DELAY = 0.3
#: Environment variable naming a file the plug-in appends its log lines to (tests read it).
LOG_ENV = "NST_GIMP_LOG"


def log(message: str, *, environ: Mapping[str, str] | None = None) -> None:
    """Append one line to ``$NST_GIMP_LOG`` when it is set (never raises)."""
    path = (os.environ if environ is None else environ).get(LOG_ENV, "").strip()
    if not path:
        return
    try:
        with open(path, "a", encoding="utf-8") as out:
            out.write(f"{time.strftime('%H:%M:%S')} nst-gimp[{os.getpid()}]: {one_line(message)}\n")
    except OSError:
        pass


def preview_size(width: int, height: int, limit: int = PREVIEW_SIZE) -> tuple[float, int, int]:
    """``(scale, width, height)`` of a layer shown at most ``limit`` px on its long side (never
    enlarged): what the plug-in asks GEGL for (``buffer.get(rect, scale, ...)``)."""
    width, height = max(1, int(width)), max(1, int(height))
    scale = min(1.0, limit / max(width, height))
    return scale, max(1, round(width * scale)), max(1, round(height * scale))


class ServeProcess:
    """One ``nst-core serve`` process: requests in on its stdin, events out (JSON lines).

    ``on_event(event)`` is called on a reader thread for every event line (the plug-in hands it
    to GTK's main loop with ``GLib.idle_add``) and, when the process has ended, once with
    ``{"event": "exited", "exit_code": N, "message": LINE}`` (LINE: nst-core's error, else "").
    :meth:`start` returns at once: the ``ready`` event comes when torch is loaded (seconds).
    The process dies with the plug-in (Linux: parent-death signal), and :meth:`close` makes
    sure it is gone.
    """

    def __init__(self, cli: Sequence[str] | str, *, on_event: Callable[[dict[str, Any]], None],
                 env: Mapping[str, str] | None = None, stderr_path: str | os.PathLike[str] | None = None) -> None:
        self.command = [cli, "serve"] if isinstance(cli, str) else [*cli, "serve"]
        self.on_event = on_event
        self.env = env
        self.stderr_path = stderr_path
        self.process: subprocess.Popen | None = None
        self.exit_code: int | None = None
        self._reader: threading.Thread | None = None
        self._write_lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def start(self) -> None:
        """Start the process (raises :class:`CliError` when it cannot be started)."""
        kwargs: dict[str, Any] = {}
        preexec = _parent_death_kill()
        if preexec is not None:
            kwargs["preexec_fn"] = preexec
        elif os.name == "nt":
            kwargs["creationflags"] = getattr(subprocess, "CREATE_NO_WINDOW", 0)
        stderr = open(self.stderr_path, "w+b") if self.stderr_path else tempfile.TemporaryFile("w+b")
        try:
            self.process = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                            stderr=stderr, env=child_env(self.env), **kwargs)
        except OSError as error:
            stderr.close()
            raise CliError(f"cannot start {self.command[0]}: {error.strerror or error}") from None
        self._reader = threading.Thread(target=self._read, args=(stderr,), name="nst-core-serve", daemon=True)
        self._reader.start()

    def _read(self, stderr: Any) -> None:
        process = self.process
        assert process is not None and process.stdout is not None
        for raw in iter(process.stdout.readline, b""):
            event = parse_event(raw)
            if event is not None:
                self.on_event(event)
        code = process.wait()
        message = ""
        if code != 0:
            stderr.seek(0)
            message = error_from_stderr(stderr.read().decode("utf-8", "replace")) or ""
        stderr.close()
        self.exit_code = code
        self.on_event({"event": "exited", "exit_code": code, "message": message})

    def send(self, message: Mapping[str, Any]) -> bool:
        """Write one request line; False when the process is gone (its stdin closed)."""
        process = self.process
        if process is None or process.stdin is None or process.poll() is not None:
            return False
        try:
            with self._write_lock:
                process.stdin.write((json.dumps(dict(message)) + "\n").encode("utf-8"))
                process.stdin.flush()
        except (OSError, ValueError):  # a broken pipe, or stdin already closed
            return False
        return True

    def close(self, timeout: float = 3.0, *, ready: bool = True) -> int | None:
        """Stop the process and wait for it: ``{"quit": true}`` and the end of its stdin, then
        SIGKILL after ``timeout`` seconds (at once when it is not ``ready``: it is still loading
        torch and has nothing to finish). Returns its exit code (None if it never started)."""
        process = self.process
        if process is None:
            return None
        if ready and self.send({"quit": True}):
            try:
                process.stdin.close()
            except OSError:
                pass
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        if process.poll() is None:
            process.kill()
        code = process.wait()
        if self._reader is not None:
            self._reader.join(timeout=5)
        for stream in (process.stdin, process.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        self.exit_code = code
        return code


@dataclass
class PreviewUpdate:
    """What the preview area shows next: ``kind`` "status" (``text`` under the picture), "drawn"
    (the picture ``path``; ``since_change`` seconds after the change that asked for it, of which
    ``request_seconds`` in nst-core) or "error" (``text``, one line)."""

    kind: str
    text: str = ""
    path: str = ""
    request: int = 0
    since_change: float = 0.0
    request_seconds: float = 0.0


@dataclass
class _Request:
    generation: int
    changed_at: float
    sent_at: float
    output: str
    error: str = ""


class PreviewSession:
    """The preview's logic, without GTK (the plug-in calls it from GTK's main loop).

    * :meth:`change` (the painting, strength or colours changed) records the settings; a
      change equal to the last one is ignored, and one made while a request runs supersedes it
      (``{"cancel": id}`` is sent and its result is dropped).
    * :meth:`tick` (called every few tens of ms) sends the latest settings as one request
      ``{"id": N, "run": [ARGS of nst-core run]}`` once the server is ready, no request is
      running and no change came for :data:`PREVIEW_DELAY` seconds (the debounce).
    * :meth:`handle` takes the server's events and returns the :class:`PreviewUpdate` to show,
      or None. Each request writes ``preview-N.png`` in ``workdir``; the one shown last is kept,
      the others are removed.
    """

    def __init__(self, send: Callable[[Mapping[str, Any]], bool], workdir: str | os.PathLike[str], *,
                 delay: float = PREVIEW_DELAY, clock: Callable[[], float] = time.monotonic) -> None:
        self.send = send
        self.workdir = os.fspath(workdir)
        self.delay = delay
        self.clock = clock
        self.ready = False
        self.failed: str | None = None
        self.generation = 0
        self.wanted: list[str] | None = None  # the run arguments of the latest change (output left out)
        self.pending: tuple[str, str, Options, float] | None = None  # content, style, options, changed at
        self.running: int | None = None
        self.requests: dict[int, _Request] = {}
        self.next_id = 1
        self.shown: str | None = None
        self.drawn = 0

    def change(self, content: str | None, style: str | None, options: Options | None) -> None:
        """New settings (``style`` None: nothing to preview). Raises ValueError for settings the
        CLI would refuse (the dialog's own check comes first)."""
        if content and style and options is not None:
            key = run_arguments(content, style, "-", options, 0, 0)
        else:
            key = None
        if key == self.wanted:
            return
        self.wanted = key
        self.generation += 1
        self.pending = (content, style, options, self.clock()) if key is not None else None
        if self.running is not None:
            self.send({"cancel": self.running})

    def tick(self) -> int | None:
        """Send the pending request when it is due; returns its id, or None."""
        if (self.pending is None or not self.ready or self.failed or self.running is not None
                or self.clock() - self.pending[3] < self.delay):
            return None
        content, style, options, changed_at = self.pending
        request_id = self.next_id
        self.next_id += 1
        output = os.path.join(self.workdir, f"preview-{request_id}.png")
        args = run_arguments(content, style, output, options, 0, 0)
        if not self.send({"id": request_id, "run": args}):
            self.failed = "nst-core serve is not running"
            return None
        self.pending = None
        self.running = request_id
        self.requests[request_id] = _Request(self.generation, changed_at, self.clock(), output)
        return request_id

    def handle(self, event: Mapping[str, Any]) -> PreviewUpdate | None:
        kind = event.get("event")
        if kind == "ready":
            self.ready = True
            return PreviewUpdate("status", "Painting...") if self.pending is not None else None
        if kind == "exited":
            self.ready = False
            self.running = None
            code = event.get("exit_code")
            self.failed = one_line(str(event.get("message") or "")) or f"nst-core serve stopped (exit code {code})"
            return PreviewUpdate("error", self.failed)
        request = self.requests.get(event.get("id"))  # type: ignore[arg-type]
        if kind == "error" and request is None:
            return PreviewUpdate("error", one_line(str(event.get("message") or "nst-core: unknown error")))
        if request is None:
            return None
        if kind == "error":
            request.error = one_line(str(event.get("message") or ""))
        if kind != "finished":
            return None
        request_id = int(event["id"])
        del self.requests[request_id]
        if self.running == request_id:
            self.running = None
        if request.generation != self.generation:  # superseded: the settings changed since
            _remove(request.output)
            return None
        now = self.clock()
        if event.get("exit_code") == 0 and os.path.isfile(request.output):
            if self.shown:
                _remove(self.shown)
            self.shown = request.output
            self.drawn += 1
            return PreviewUpdate("drawn", path=request.output, request=request_id,
                                 since_change=now - request.changed_at, request_seconds=now - request.sent_at)
        _remove(request.output)
        return PreviewUpdate("error", request.error or f"nst-core failed (exit code {event.get('exit_code')})",
                             request=request_id)


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


# --------------------------------------------------------------------------------------------
# PNG writing (the layer's pixels -> the CLI's input)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bytes(pixels: bytes, width: int, height: int, channels: int, bit_depth: int,
              *, little_endian_samples: bool = sys.byteorder == "little") -> bytes:
    """Encode raw interleaved pixels as a PNG (filter type 0 on every row).

    ``channels``: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA. ``bit_depth``: 8 or 16. 16-bit samples
    are taken in native byte order (as GEGL's "u16" formats give them) unless
    ``little_endian_samples`` says otherwise, and are written big-endian as PNG requires.
    """
    color_types = {1: 0, 2: 4, 3: 2, 4: 6}
    if channels not in color_types or bit_depth not in (8, 16):
        raise ValueError(f"unsupported PNG layout: {channels} channels, {bit_depth}-bit")
    stride = width * channels * bit_depth // 8
    if len(pixels) != stride * height:
        raise ValueError(f"expected {stride * height} bytes of pixels, got {len(pixels)}")
    if bit_depth == 16 and little_endian_samples:  # PNG wants big-endian samples
        samples = array("H")
        samples.frombytes(bytes(pixels))
        samples.byteswap()
        pixels = samples.tobytes()
    raw = b"".join(b"\x00" + pixels[row * stride:(row + 1) * stride] for row in range(height))
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_types[channels], 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"sRGB", b"\x00")
            + _chunk(b"IDAT", zlib.compress(raw, 6)) + _chunk(b"IEND", b""))


def write_png(path: str | os.PathLike[str], pixels: bytes, width: int, height: int, channels: int,
              bit_depth: int = 8) -> None:
    """Write :func:`png_bytes` to ``path``."""
    with open(path, "wb") as out:
        out.write(png_bytes(pixels, width, height, channels, bit_depth))


def bit_depth_for_precision(precision_name: str) -> int:
    """8 for GIMP's 8-bit precisions (``U8_NON_LINEAR``...), else 16."""
    return 8 if "U8" in str(precision_name).upper() else 16


# --------------------------------------------------------------------------------------------
# Finding the CLI and the style's name


def find_cli(plugin_dir: str | os.PathLike[str] | None = None, *, environ: Mapping[str, str] | None = None) -> str:
    """The ``nst-core`` executable: ``$NST_GIMP_CLI``, else the path recorded at install time in
    ``nst-core-path.txt`` next to the plug-in, else ``nst-core`` on PATH.

    Raises :class:`CliError` with advice when none is found.
    """
    environ = os.environ if environ is None else environ
    override = environ.get(CLI_ENV, "").strip()
    if override:
        if _is_executable(override):
            return override
        raise CliError(f"${CLI_ENV} names {override}, which is not an executable file")
    recorded_note = ""
    if plugin_dir is not None:
        record = Path(plugin_dir) / CLI_PATH_FILE
        if record.is_file():
            recorded = record.read_text(encoding="utf-8").strip()
            if recorded and _is_executable(recorded):
                return recorded
            recorded_note = f" (the recorded {recorded or 'empty path'} is not an executable file)"
    found = shutil.which(CLI_NAME, path=environ.get("PATH"))
    if found:
        return found
    raise CliError(f"cannot find the nst-core program{recorded_note}; install it and run "
                   "'nst-core gimp install' again")


def _is_executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def style_label(style_path: str | None, layer_name: str | None = None) -> str:
    """A short name for the style: the file's stem, else the style layer's name."""
    if style_path:
        return Path(style_path).stem or Path(style_path).name
    return layer_name or "style"


def result_layer_name(layer_name: str, style_name: str) -> str:
    """The new layer's name: its source layer's, then the style's: ``Background (starry_night)``."""
    return f"{layer_name} ({style_name})"


NO_STYLE = "choose a style image, a style layer or a fast style"
#: The same for Instant Style (no fast styles there).
NO_PAINTING = "choose a style image or a style layer"


def style_problem(style_path: str, *, style_layer: bool = False, fast_model: str = "",
                  missing: str = NO_STYLE) -> str | None:
    """Why a run cannot start with this style, in one line (the dialog shows it and keeps OK
    disabled); None when it can. A fast model wins over a style image, which wins over a layer.
    ``missing`` is the line for no style at all."""
    if fast_model and fast_model != NO_FAST_MODEL:
        return None
    if style_path:
        if not os.path.isfile(style_path):
            return f"the style image {style_path} does not exist"
        return None
    return None if style_layer else missing


TEMP_PREFIX = "nst-gimp-"


def temp_prefix() -> str:
    """Prefix of this process's temporary folders: ``nst-gimp-<pid>-``."""
    return f"{TEMP_PREFIX}{os.getpid()}-"


def sweep_stale_temp_dirs(tmp: str | os.PathLike[str] | None = None) -> list[Path]:
    """Remove temporary folders left by plug-in processes that no longer run (GIMP kills a
    plug-in whose progress is cancelled, before it can clean up). Returns what was removed."""
    removed = []
    base = Path(tmp or tempfile.gettempdir())
    try:
        candidates = list(base.glob(TEMP_PREFIX + "*"))
    except OSError:
        return removed
    for path in candidates:
        pid_text = path.name[len(TEMP_PREFIX):].split("-", 1)[0]
        if not pid_text.isdigit() or not path.is_dir() or _pid_alive(int(pid_text)):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if os.name == "nt":  # pragma: no cover - no cheap check; keep the folder
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def cleanup_dir(path: str | os.PathLike[str] | None) -> None:
    """Remove a temporary directory and everything in it; never raises."""
    if path:
        shutil.rmtree(path, ignore_errors=True)


def command_text(command: Iterable[str]) -> str:
    """The command for a log line, quoted for a POSIX shell."""
    import shlex

    return " ".join(shlex.quote(str(part)) for part in command)
