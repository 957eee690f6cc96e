"""The ``nst-core`` command: files in, files out.

Subcommands: ``run`` (stylize with any method — the optimization, the instant network or a
trained fast-style model; one file or a batch, in this process or on Dask), ``serve`` (``run``
requests from stdin, one process for a front end), ``train`` (train a fast-style model),
``models`` (list fast-style models), ``weights`` and ``gimp``.

Exit codes: 0 success, 1 runtime failure, 2 bad input or usage, 130 stopped by Ctrl-C (SIGINT),
143 stopped by SIGTERM (once a run has made a step, the best image so far is written first). A
batch ends with 0 when every photo was painted, else 1 if one failed at run time, else 2.
"""

from __future__ import annotations

from .launch import started

STARTED = started()  # a time budget counts from here (the command's first start): start-up and loading included

import argparse  # noqa: E402
import contextlib  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from .region_args import describe as describe_regions  # noqa: E402
from .region_args import mask_list, paintings_and_regions  # noqa: E402

EXIT_OK, EXIT_RUNTIME, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """A command line that cannot be understood (exit 2); :func:`main` reports it like any error."""

    exit_code = EXIT_USAGE


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr (and a JSON event with
    ``--progress json``) and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


_UNITS = {"": 1, "B": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def _bytes(text: str) -> int:
    """``4G``, ``800M``, ``1.5GB``, ``123456`` → bytes (binary units)."""
    cleaned = text.strip().upper().removesuffix("IB").removesuffix("B")
    number, unit = (cleaned[:-1], cleaned[-1]) if cleaned[-1:] in _UNITS and cleaned[-1:] else (cleaned, "")
    try:
        value = float(number) * _UNITS[unit]
    except (ValueError, KeyError):
        value = -1.0
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a size such as 4G, 800M or 1.5GB, got {text!r}")
    return int(value)


def _names(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated layer names, got {text!r} "
                                         "(to leave a loss out, set its weight to 0)")
    return names


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}")
    return value


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


RUN_DESCRIPTION = """\
Paint CONTENT in the style of STYLE (several styles are blended), or with a trained fast-style model.

Which positionals are photos:
  nst-core run CONTENT STYLE... -o OUT              the first is the content, the rest are styles
  nst-core run FOLDER STYLE... --out-dir DIR        every image in FOLDER, the rest are styles
  nst-core run CONTENT... --style STYLE --out-dir DIR    with --style: every positional is a content
  nst-core run CONTENT... --fast-model MODEL --out-dir DIR   with --fast-model: every positional is a content
A content may be a file or a folder of images. One content file writes -o OUT; several, or a folder,
write DIR/NAME.png (--out-dir, --out-format); existing results are replaced, inputs never.

examples:
  nst-core run photo.jpg starry_night.jpg -o out.png --size 512
  nst-core run photo.jpg --fast-model starry_night -o out.png
  nst-core run photo.jpg starry_night.jpg none --masks sky.png,faces.png -o out.png   # a style per region
  nst-core run frames/ --fast-model starry.nst --out-dir styled/ --out-format jpg
"""


def build_parser() -> argparse.ArgumentParser:
    from nst_core import __version__
    from nst_core.config import (
        COLOR_MATCHES,
        CONVOLUTIONS,
        DEFAULT_CONTENT_LAYERS,
        DEFAULT_PRESET,
        DEFAULT_STYLE_LAYERS,
        MEMORY_FORMATS,
        PRECISIONS,
        PRESETS,
        Config,
        describe_preset,
    )
    from nst_core.malloc import ALLOCATOR_SETTING
    from nst_core.plugins import shared_registries

    registries = shared_registries()
    defaults = Config()

    parser = OneLineParser(
        prog="nst-core",
        description="Neural style transfer: paint a photo in the style of a painting.",
        epilog=f"On Linux the command runs under the mimalloc allocator; {ALLOCATOR_SETTING}=system keeps the "
               "C library's malloc.",
    )
    parser.add_argument("--version", action="version", version=f"nst-core {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    commands.required = True

    run = commands.add_parser(
        "run",
        help="stylize photos with paintings (optimization or instant), by region, or with a trained fast-style model",
        description=RUN_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("content", metavar="CONTENT", help="the photo to stylize, or a folder of photos")
    run.add_argument("styles", metavar="STYLE", nargs="*",
                     help="painting(s) whose style to use; with --style or --fast-model: more CONTENTs")
    run.add_argument("-o", "--output", metavar="OUT",
                     help="where to write the result (.png, .jpg, .tif, .webp, .bmp); never an input file")
    batch = run.add_argument_group("method and batch")
    batch.add_argument("--method", choices=registries.methods.names(),
                       help="how to paint: " + "; ".join(f"{name}: {method.description}"
                                                        for name, method in registries.methods.items())
                       + f" (default {defaults.method}; --fast-model implies fast)")
    batch.add_argument("--fast-model", metavar="MODEL",
                       help="stylize with a trained fast-style model (a .nst file, or the name of one in the "
                            "models folders, see 'nst-core models list') in one network pass, instead of "
                            "optimizing; every positional is then a content")
    batch.add_argument("--style", dest="style_files", action="append", default=[], metavar="STYLE",
                       help="a style image (repeatable); every positional is then a content")
    batch.add_argument("--out-dir", metavar="DIR",
                       help="write each content's result as DIR/NAME.FORMAT (made if missing); for several "
                            "contents or a folder")
    batch.add_argument("--out-format", default="png", choices=("png", "jpg", "tif", "webp", "bmp"),
                       help="file type of the results in --out-dir (default png)")
    batch.add_argument("--resume", action="store_true",
                       help="with --out-dir: skip the photos whose result the folder's manifest (.nst-core-batch.json) "
                            "shows complete and made with the same inputs and settings")
    dask = run.add_argument_group("batches on Dask (pip install 'nst-core[cluster]')")
    dask.add_argument("--workers", type=int, metavar="N",
                      help="run the batch on a local Dask cluster of N worker processes")
    dask.add_argument("--cluster", metavar="ADDRESS",
                      help="run the batch on the workers of an existing Dask scheduler, e.g. tcp://host:8786")
    dask.add_argument("--threads-per-worker", type=int, metavar="T",
                      help="PyTorch threads of each worker (default: the cores divided by the workers)")
    dask.add_argument("--write-on-workers", action="store_true",
                      help="workers write the results into the output folder themselves (a shared filesystem); "
                           "default: they send them back and nst-core writes them")

    size = run.add_argument_group("size")
    size.add_argument("--size", type=int, metavar="PX",
                      help="long side of the output in pixels, 0 for the photo's own size "
                           f"(default {defaults.size}; with --fast-model or --method instant the photo's own size)")
    size.add_argument("--style-scale", type=float, default=defaults.style_scale, metavar="X",
                      help="size of the style image relative to the output; smaller gives finer brush strokes "
                           f"(default {defaults.style_scale})")

    look = run.add_argument_group("look")
    look.add_argument("--style-weight", type=float, default=defaults.style_weight, metavar="W",
                      help=f"how strongly to apply the style (default {defaults.style_weight})")
    look.add_argument("--content-weight", type=float, default=defaults.content_weight, metavar="W",
                      help=f"how closely to keep the photo's shapes (default {defaults.content_weight})")
    look.add_argument("--tv-weight", type=float, default=defaults.tv_weight, metavar="W",
                      help=f"smoothing against pixel noise, 0 to turn off (default {defaults.tv_weight})")
    look.add_argument("--style-blend", type=_floats, metavar="W,W,...",
                      help="relative weights of several styles, e.g. 0.7,0.3 (default: equal)")
    look.add_argument("--style-strength", type=float, default=defaults.style_strength, metavar="S",
                      help="--method instant: 0 paints the photo in its own style, 1 in the painting's, in between "
                           f"a mix (default {defaults.style_strength:g})")
    look.add_argument("--preserve-color", default=defaults.preserve_color,
                      choices=registries.color_methods.names(),
                      help="keep the photo's colours: " + "; ".join(
                          f"{name}: {method.description}" for name, method in registries.color_methods.items()))
    look.add_argument("--color-match", choices=COLOR_MATCHES, default=defaults.color_match,
                      help="how histogram and histogram-post match colours: chol, pca or sym (linear transfers "
                           f"of mean and covariance) or histogram (per channel) (default {defaults.color_match})")
    look.add_argument("--color-strength", type=float, default=defaults.color_strength, metavar="S",
                      help="0: the painting's colours ... 1: the photo's colours fully kept "
                           f"(default {defaults.color_strength:g})")

    regions = run.add_argument_group("a style per region (Gatys et al. 2017, guided Gram matrices; "
                                     "--method instant: style vectors mixed per pixel)")
    regions.add_argument("--masks", type=mask_list, metavar="MASK,MASK",
                         help="one mask per STYLE, in order (grayscale, RGB luminance or a PNG's alpha; soft "
                              "edges blend the styles); a STYLE named 'none' keeps the photo in its mask "
                              "(a file named none: ./none)")
    regions.add_argument("--rest", metavar="PAINTING",
                         help="paint the pixels no mask covers with PAINTING (default: none, keep the photo)")
    net = run.add_argument_group("network")
    net.add_argument("--model", choices=registries.extractors.names(),
                     help="network; default: the weights file's, else vgg19 (the paper's)")
    net.add_argument("--weights", metavar="PATH",
                     help="weights file (also $NST_CORE_WEIGHTS), or 'torchvision' for PyTorch's re-trained "
                          "weights (0.5 GB download); default: the embedded original VGG weights (8-bit)")
    net.add_argument("--pooling", choices=("avg", "max"), default=defaults.pooling,
                     help="pooling layers: avg (smoother, as the paper recommends) or max (default avg)")
    net.add_argument("--content-layers", type=_names, default=DEFAULT_CONTENT_LAYERS, metavar="L,L",
                     help=f"layers that hold the photo's shapes (default {','.join(DEFAULT_CONTENT_LAYERS)})")
    net.add_argument("--style-layers", type=_names, default=DEFAULT_STYLE_LAYERS, metavar="L,L",
                     help=f"layers that hold the style (default {','.join(DEFAULT_STYLE_LAYERS)})")
    net.add_argument("--style-layer-weights", type=_floats, metavar="W,W",
                     help="relative weight of each style layer (default: equal)")

    opt = run.add_argument_group("optimization")
    opt.add_argument("--preset", choices=tuple(PRESETS), default=DEFAULT_PRESET,
                     help="speed against quality: " + "; ".join(
                         f"{name}: {describe_preset(name)}" for name in PRESETS) + f" (default {DEFAULT_PRESET})")
    opt.add_argument("--time-budget", type=_seconds, metavar="SECONDS",
                     help="finish within this many seconds on this machine: the steps of each size are planned "
                          "to fit and the best image reached is written")
    opt.add_argument("-n", "--iterations", type=int, metavar="N",
                     help="steps (network passes) at the output size; more is slower and closer to the style "
                          "(default: the preset's)")
    opt.add_argument("--scales", type=int, metavar="N",
                     help="sizes to optimize at, coarse to fine, each twice the last; 1: the output size only "
                          "(default: the preset's)")
    opt.add_argument("--coarse-iterations", type=int, metavar="N",
                     help="steps at each size before the last (default: the preset's)")
    opt.add_argument("--optimizer", choices=("lbfgs", "adam"), default=defaults.optimizer,
                     help="lbfgs: best result per step (default); adam: steadier, uses less memory")
    opt.add_argument("--learning-rate", type=float, default=defaults.learning_rate, metavar="LR",
                     help=f"Adam's step size in pixel units (default {defaults.learning_rate})")
    opt.add_argument("--lbfgs-smoothing", type=float, default=defaults.lbfgs_smoothing, metavar="G",
                     help="how strongly L-BFGS's steps favour broad areas over fine detail: the same objective, "
                          f"mostly reached in fewer steps; 0: plain L-BFGS (default {defaults.lbfgs_smoothing:g})")
    opt.add_argument("--init", choices=registries.init_methods.names(),
                     help="start from the photo (content), random noise, --init-image (image), or the instant "
                          "method's result (instant) (default: instant; with --masks, content; with --init-image, image)")
    opt.add_argument("--init-image", metavar="PATH", help="start from this image (implies --init image)")
    opt.add_argument("--seed", type=int, default=defaults.seed,
                     help=f"random seed: the same seed on the same device gives the same output (default {defaults.seed})")

    hw = run.add_argument_group("hardware")
    hw.add_argument("--device", default=defaults.device,
                    help="auto (a CUDA GPU when present, default), cpu, cuda, cuda:1 ...")
    hw.add_argument("--precision", choices=PRECISIONS, default=defaults.precision,
                    help="network precision; auto uses bf16 only where the hardware has fast bf16 (AMX, "
                         "AVX512-BF16, recent GPUs) and a short measurement confirms it, else fp32 "
                         f"(default {defaults.precision})")
    hw.add_argument("--max-memory", type=_bytes, metavar="SIZE",
                    help="memory the run may use besides PyTorch and the network (~0.7 GB), e.g. 4G or 800M; "
                         "larger images are computed in overlapping tiles, and long runs keep freed memory for the next "
                         "step only where it leaves room (default: half the free RAM, at most 4.5G, or half the free "
                         "GPU memory)")
    hw.add_argument("--memory-format", choices=MEMORY_FORMATS, default=defaults.memory_format,
                    help="network memory layout; auto measures which is faster here (default auto)")
    hw.add_argument("--convolution", choices=CONVOLUTIONS, default=defaults.convolution,
                    help="3x3 convolutions: standard, or winograd (NNPACK's Winograd transform: CPU, fp32; "
                         "about 1.4x faster steps on AVX2); auto measures which is faster here (default auto)")

    out = run.add_argument_group("output and progress")
    out.add_argument("--save-every", type=int, default=0, metavar="N",
                     help="also write the best image so far every N steps, as OUT_00050.png etc.")
    out.add_argument("--progress", choices=("auto", "bar", "json", "none"), default="auto",
                     help="auto: a bar on a terminal; json: one JSON object per line on stdout, for programs")
    out.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    out.add_argument("--set", dest="extra", type=_key_value, action="append", default=[], metavar="KEY=VALUE",
                     help="a setting for a third-party plugin (repeatable)")
    out.add_argument("--debug", action="store_true", help="show Python tracebacks")

    _add_train_parser(commands, registries)
    from .video_command import add_parser as add_video_parser

    add_video_parser(commands, run)
    serve = commands.add_parser(
        "serve", help="run 'run' requests from stdin in one process (JSON lines; for front ends such as GIMP)",
        description="Read requests as JSON lines on stdin, {\"id\": 1, \"run\": [ARGS of nst-core run]}, "
                    "{\"cancel\": 1} or {\"quit\": true}, and answer with the JSON events of 'run --progress json', "
                    "each tagged with its request's id, then {\"event\": \"finished\", \"id\": 1, \"exit_code\": 0}. "
                    "PyTorch and the networks load once, so a preview costs only its own work.")
    serve.add_argument("--debug", action="store_true", help="show Python tracebacks")
    models = commands.add_parser("models", help="list fast-style models",
                                 description="Fast-style models (.nst) in the models folders; "
                                             "'nst-core run --fast-model NAME' uses one by name.")
    models_commands = models.add_subparsers(dest="models_command", metavar="ACTION", parser_class=OneLineParser)
    models_commands.required = True
    listing = models_commands.add_parser("list", help="show the models folders and the models in them")
    listing.add_argument("--json", action="store_true", help="one JSON object per model on stdout, for programs")
    for sub in (models, listing):
        sub.add_argument("--debug", action="store_true", help="show Python tracebacks")

    weights = commands.add_parser("weights", help="manage network weights",
                                  description="List or import VGG weights files (for offline use).")
    weights_commands = weights.add_subparsers(dest="weights_command", metavar="ACTION", parser_class=OneLineParser)
    weights_commands.required = True
    weights_commands.add_parser("list", help="show cached weights and which file a run would use")
    imp = weights_commands.add_parser("import", help="check a weights file and copy it into the cache")
    imp.add_argument("file", metavar="FILE", help="a torchvision VGG-16/VGG-19 state dict (.pth)")
    for sub in (weights, *weights_commands.choices.values()):
        sub.add_argument("--debug", action="store_true", help="show Python tracebacks")

    gimp = commands.add_parser("gimp", help="install the GIMP 3 plug-in (Filters > Neural Style)",
                               description="Install, remove or check the GIMP 3 plug-in (Filters > Neural Style).")
    gimp_commands = gimp.add_subparsers(dest="gimp_command", metavar="ACTION", parser_class=OneLineParser)
    gimp_commands.required = True
    gimp_install_parser = gimp_commands.add_parser(
        "install", help="copy the plug-in into GIMP's plug-ins folder and record this nst-core")
    gimp_install_parser.add_argument(
        "--force", action="store_true", help="install even before GIMP 3's first start (it then does not copy "
        "GIMP 2's settings) or into a folder that is not a GIMP plug-ins folder")
    gimp_commands.add_parser("uninstall", help="remove the plug-in from GIMP's plug-ins folder")
    gimp_commands.add_parser("doctor", help="explain why GIMP shows no Neural Style menu")
    for sub in gimp_commands.choices.values():
        sub.add_argument("--gimp-dir", metavar="DIR", help="GIMP 3's plug-ins folder, or its profile folder such as "
                         "~/.config/GIMP/3.0 (default: the usual one for this system)")
        sub.add_argument("--debug", action="store_true", help="show Python tracebacks")
    return parser


def config_from_args(args: argparse.Namespace, started: float = STARTED):
    from nst_core.config import preset_config

    explicit = {name: getattr(args, name) for name in ("iterations", "scales", "coarse_iterations")
                if getattr(args, name) is not None}
    method = args.method or ("fast" if args.fast_model else None)
    return preset_config(
        args.preset,
        **explicit,
        **({"method": method} if method else {}),
        fast_model=args.fast_model,
        time_budget=_budget_left(args.time_budget, started),
        size=_size_of(args, method or "optimize"),
        style_scale=args.style_scale,
        model=args.model,
        weights=args.weights,
        pooling=args.pooling,
        content_layers=args.content_layers,
        style_layers=args.style_layers,
        style_layer_weights=args.style_layer_weights,
        content_weight=args.content_weight,
        style_weight=args.style_weight,
        tv_weight=args.tv_weight,
        style_blend=args.style_blend,
        style_strength=args.style_strength,
        optimizer=args.optimizer,
        learning_rate=args.learning_rate,
        lbfgs_smoothing=args.lbfgs_smoothing,
        # the presets start from the instant result, which has one style everywhere: with masks
        # from the photo; an --init-image alone means start from it
        **({"init": args.init} if args.init else {"init": "image"} if args.init_image
           else {"init": "content"} if args.masks else {}),
        init_image=args.init_image,
        seed=args.seed,
        preserve_color=args.preserve_color,
        color_match=args.color_match,
        color_strength=args.color_strength,
        device=args.device,
        precision=args.precision,
        memory_format=args.memory_format,
        convolution=args.convolution,
        max_memory=args.max_memory,
        save_every=args.save_every,
        extra=dict(args.extra),
        regions=paintings_and_regions(args)[1],
    )


def _size_of(args: argparse.Namespace, method: str) -> int | None:
    """``--size``: 0 is the photo's size; left out, 512 for the optimization, the photo's size
    for a method that paints at any size in one pass (fast, instant: ``Method.full_size``)."""
    if args.size is None:
        from nst_core.config import Config
        from nst_core.plugins import shared_registries

        full_size = getattr(shared_registries().methods.get(method), "full_size", False)
        return None if full_size else Config().size
    return args.size or None


def _budget_left(budget: float | None, started: float) -> float | None:
    """The time budget less what has gone since ``started`` (start-up: importing PyTorch, ~2–3 s)."""
    if budget is None or budget <= 0:
        return budget  # Config reports the bad value
    return max(0.1, budget - (time.perf_counter() - started))


def _add_train_parser(commands: Any, registries: Any) -> None:
    from nst_core.config import PRECISIONS
    from nst_core.fast import DEFAULT_SHAPE, TrainingSettings, training_config

    defaults, settings = training_config(), TrainingSettings()
    train = commands.add_parser(
        "train",
        help="train a fast-style model for one painting (then: nst-core run PHOTO --fast-model NAME)",
        description="Train an image-transformation network (Johnson et al. 2016) to paint any photo in the style "
                    "of STYLE in one pass, on random crops of the photos in --images, with the same content, "
                    "style and smoothness losses as 'nst-core run'. The model file is rewritten every "
                    "--checkpoint-every steps and when stopped (Ctrl-C); --resume continues it.",
        epilog="example: nst-core train starry_night.jpg --images photos/ --steps 2000 "
               "(writes starry_night.nst into the models folder; see 'nst-core models list')",
    )
    train.add_argument("style", metavar="STYLE", help="the painting whose style to learn")
    train.add_argument("--images", required=True, metavar="DIR", help="folder of photos to train on (jpg, png, ...)")
    train.add_argument("-o", "--output", metavar="MODEL",
                       help="model file to write (default: the models folder's STYLE.nst); never an input file")
    train.add_argument("--name", metavar="NAME", help="style name stored in the model (default: STYLE's file name)")
    train.add_argument("--resume", action="store_true",
                       help="continue the training stored in MODEL (its settings) up to --steps")
    plan = train.add_argument_group("training")
    plan.add_argument("--steps", type=int, default=settings.steps, metavar="N",
                      help=f"steps to reach in all (default {settings.steps})")
    plan.add_argument("--batch-size", type=int, default=settings.batch_size, metavar="N",
                      help=f"random crops per step (default {settings.batch_size})")
    plan.add_argument("--crop-size", type=int, default=settings.crop_size, metavar="PX",
                      help=f"side of the square crops (default {settings.crop_size})")
    plan.add_argument("--style-size", type=int, default=settings.style_size, metavar="PX",
                      help=f"long side of the style image; larger gives larger brush strokes (default {settings.style_size})")
    plan.add_argument("--learning-rate", type=float, default=settings.learning_rate, metavar="LR",
                      help=f"Adam's learning rate (default {settings.learning_rate:g})")
    plan.add_argument("--checkpoint-every", type=int, default=settings.checkpoint_every, metavar="N",
                      help=f"rewrite the model file every N steps, 0: only at the end (default {settings.checkpoint_every})")
    plan.add_argument("--seed", type=int, default=defaults.seed, help=f"random seed (default {defaults.seed})")
    plan.add_argument("--channels", type=_ints, default=DEFAULT_SHAPE.channels, metavar="C1,C2,C3",
                      help="network width at full, half and quarter size; wider is slower to apply "
                           f"(default {','.join(map(str, DEFAULT_SHAPE.channels))}; Johnson's: 32,64,128)")
    plan.add_argument("--residual-blocks", type=int, default=DEFAULT_SHAPE.residual_blocks, metavar="N",
                      help=f"residual blocks (default {DEFAULT_SHAPE.residual_blocks})")
    look = train.add_argument_group("losses")
    look.add_argument("--style-weight", type=float, default=defaults.style_weight, metavar="W",
                      help=f"how strongly to apply the style (default {defaults.style_weight:g})")
    look.add_argument("--content-weight", type=float, default=defaults.content_weight, metavar="W",
                      help=f"how closely to keep the photo's shapes (default {defaults.content_weight:g})")
    look.add_argument("--tv-weight", type=float, default=defaults.tv_weight, metavar="W",
                      help=f"smoothing against pixel noise (default {defaults.tv_weight:g})")
    look.add_argument("--model", choices=registries.extractors.names(), default=defaults.model,
                      help=f"loss network (default {defaults.model}, as Johnson et al.)")
    look.add_argument("--weights", metavar="PATH", help="weights file of the loss network (as for 'run')")
    look.add_argument("--content-layers", type=_names, default=defaults.content_layers, metavar="L,L",
                      help=f"content layers (default {','.join(defaults.content_layers)})")
    look.add_argument("--style-layers", type=_names, default=defaults.style_layers, metavar="L,L",
                      help=f"style layers (default {','.join(defaults.style_layers)})")
    hw = train.add_argument_group("hardware and output")
    hw.add_argument("--device", default=defaults.device, help="auto (a CUDA GPU when present, default), cpu, cuda ...")
    hw.add_argument("--precision", choices=PRECISIONS, default=defaults.precision,
                    help="network precision; auto uses bf16 only where the hardware has fast bf16 and a "
                         "measurement confirms it, else fp32 (default auto)")
    hw.add_argument("--progress", choices=("auto", "bar", "json", "none"), default="auto",
                    help="auto: a bar on a terminal; json: one JSON object per line on stdout")
    hw.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    hw.add_argument("--debug", action="store_true", help="show Python tracebacks")


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got {text!r}") from None


def _progress_mode(args: argparse.Namespace) -> str:
    mode = "none" if args.quiet else args.progress
    if mode == "auto":
        mode = "bar" if sys.stderr.isatty() else "none"
    return mode


class Stopped(KeyboardInterrupt):
    """A signal that stops the command at once (exit 128 + its number)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class _Signals:
    """SIGINT/SIGTERM ask the canceller to stop (a second signal stops at once) within a block."""

    def __init__(self, canceller: Any) -> None:
        self.canceller = canceller
        self.previous: dict = {}

    def __enter__(self) -> "_Signals":
        def request_stop(signum: int, frame: Any) -> None:
            if self.canceller.requested is not None or not self.canceller.stepping:
                # a second signal, or one before the first step (loading, probing: no image yet)
                raise Stopped(signum)
            self.canceller.requested = signum

        self.previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def run_jobs(args: argparse.Namespace, config: Any) -> list[Any]:
    """The jobs (:class:`nst_core.batch.Job`) of a ``run`` command line, checked.

    Raises :class:`nst_core.errors.InputError` for an ambiguous or impossible batch: no style,
    ``-o`` with several contents, both or neither of ``-o`` and ``--out-dir``, two contents with
    the same name, an output (or a ``--save-every`` snapshot) that is an input, an output that
    cannot be written.
    """
    from nst_core.batch import Job
    from nst_core.errors import InputError
    from nst_core.image import check_save_path
    from nst_core.plugins import shared_registries

    positionals = [Path(args.content), *map(Path, args.styles)]
    if args.fast_model and args.style_files:
        raise InputError("--fast-model and --style are two methods; use one")
    uses_styles = shared_registries().methods.get(config.method).uses_styles
    if not uses_styles or args.style_files:
        if not uses_styles and args.style_files:
            raise InputError(f"the {config.method} method paints without style images; leave out --style")
        content_args, styles = positionals, (paintings_and_regions(args)[0] if args.style_files else [])
    else:
        content_args, styles = positionals[:1], paintings_and_regions(args)[0]
        if not styles:
            raise InputError("no style: give STYLE after CONTENT, --style STYLE, or --fast-model MODEL")
    contents: list[Path] = []
    for item in content_args:
        contents += _images_in(item) if item.is_dir() else [item]
    if args.output and args.out_dir:
        raise InputError("give -o OUT (one content) or --out-dir DIR (several), not both")
    if not args.output and not args.out_dir:
        raise InputError("no output: give -o/--output OUT, or --out-dir DIR for several contents or a folder")
    if args.resume and not args.out_dir:
        raise InputError("--resume works with --out-dir DIR, whose manifest says which results are complete")
    if args.output:
        if len(contents) != 1 or any(item.is_dir() for item in content_args):
            raise InputError(f"-o writes one file, but there are {len(contents)} contents; use --out-dir DIR")
        pairs = [(contents[0], Path(args.output))]
    else:
        out_dir = Path(args.out_dir)
        if out_dir.exists() and not out_dir.is_dir():
            raise InputError(f"--out-dir '{out_dir}' is not a folder")
        names: dict[str, Path] = {}
        for content in contents:
            if content.stem in names:
                raise InputError(f"two contents would write the same result '{content.stem}.{args.out_format}': "
                                 f"'{names[content.stem]}' and '{content}'; rename one")
            names[content.stem] = content
        out_dir.mkdir(parents=True, exist_ok=True)
        pairs = [(content, out_dir / f"{content.stem}.{args.out_format}") for content in contents]
    protect = [*contents, *styles] + ([Path(args.fast_model)] if args.fast_model else [])
    for _, output in pairs:  # fail before any work, not after the first file
        check_save_path(output, protect=protect)
        if config.save_every:
            _check_snapshots(output, protect)
    return [Job(content=content, output=output, styles=tuple(styles), config=config, index=index, count=len(pairs))
            for index, (content, output) in enumerate(pairs, 1)]


def _check_snapshots(output: Path, protect: list[Path]) -> None:
    """Refuse ``--save-every`` when one of its snapshots (``OUT_00050.png`` …) would be an input."""
    import re

    from nst_core.errors import InputError
    from nst_core.image import same_file

    pattern = re.compile(re.escape(output.stem) + r"_\d{5}" + re.escape(output.suffix))
    for item in protect:
        if pattern.fullmatch(item.name) and same_file(output.with_name(item.name), item):
            raise InputError(f"--save-every would overwrite input file '{item}' with a snapshot of '{output}'; "
                             "choose another output name")


def _images_in(folder: Path) -> list[Path]:
    from nst_core.errors import InputError
    from nst_core.fast.training import PHOTO_SUFFIXES

    images = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES)
    if not images:
        raise InputError(f"folder '{folder}' holds no images ({', '.join(PHOTO_SUFFIXES)})")
    return images


def command_run(args: argparse.Namespace) -> int:
    from .reporters import Canceller

    canceller = Canceller()
    with _Signals(canceller):
        code = run_command(args, canceller, STARTED)
    if canceller.requested is not None:
        return 128 + canceller.requested
    return code


def run_command(args: argparse.Namespace, canceller: Any, started: float) -> int:
    """What ``nst-core run`` does with parsed ``args``: one photo, or a batch that goes on past a
    bad photo; ``canceller`` stops it, and a time budget counts from ``started``. The exit code."""
    from nst_core import stylize_files
    from nst_core.batch import DONE, FAILED, SKIPPED, run_batch

    from .reporters import BarReporter, BatchBar, JsonReporter, SnapshotWriter
    from .streams import emit_json, say

    config = config_from_args(args, started)
    mode = _progress_mode(args)
    jobs = run_jobs(args, config)
    executor = _executor(args)
    batch = len(jobs) > 1 or executor is not None or args.resume
    bar = (BatchBar(len(jobs)) if batch else BarReporter()) if mode == "bar" else None
    json_reporters: list[Any] = []

    def plugins_for(job: Any) -> list[Any]:
        plugins: list[Any] = [canceller] + ([bar.for_job(job) if batch else bar] if bar else [])
        if mode == "json":
            json_reporters.append(JsonReporter(_job_fields(job)))
            plugins.append(json_reporters[-1])
        if config.save_every:
            plugins.append(SnapshotWriter(job.output, [job.content, *job.styles]))
        return plugins

    def report(job: Any, result: Any) -> None:
        if mode == "json":
            emit_json("done", output=str(job.output), steps=result.steps, best_step=result.best_step,
                      cancelled=result.cancelled, elapsed=round(result.elapsed, 3), losses=dict(result.losses),
                      info=dict(result.info), **_batch_fields(job))
        elif mode == "bar":
            state = "stopped early" if result.cancelled else "done"
            where = f" [{job.index}/{job.count}]" if job.count > 1 else ""
            how = f"{result.steps} steps, " if result.steps else ""
            say(f"{state}{where}: wrote {job.output} ({how}{result.elapsed:.1f} s)")

    def on_outcome(outcome: Any) -> None:
        job = outcome.job
        for reporter in json_reporters:
            reporter.flush()
        if isinstance(bar, BatchBar):
            bar.job_finished(job)
        if outcome.status == DONE:
            report(job, outcome.result)
        elif outcome.status == FAILED:
            message = outcome.message(spell_setting)
            if mode == "json":
                emit_json("failed", message=message, exit_code=outcome.exit_code, content=str(job.content),
                          output=str(job.output), attempts=outcome.attempts, **_batch_fields(job))
            say(f"nst-core: error: [{job.index}/{job.count}] {job.content}: {message}")
        elif outcome.status == SKIPPED and mode == "json":
            emit_json("skipped", reason=outcome.note or "stopped", content=str(job.content), output=str(job.output),
                      **_batch_fields(job))

    if not batch:  # one photo: its error is the command's error
        job = jobs[0]
        try:
            result = stylize_files(job.content, job.styles, job.output, config=config, plugins=plugins_for(job))
        finally:
            for reporter in json_reporters:
                reporter.flush()
        report(job, result)
        return EXIT_OK
    with executor or contextlib.nullcontext():
        summary = run_batch(jobs, executor=executor, resume=args.resume, plugins_for=plugins_for,
                            on_outcome=on_outcome, stop_requested=lambda: canceller.requested is not None)
    counts = {status: summary.count(status) for status in ("done", "failed", "skipped", "retried")}
    if mode == "json":
        emit_json("summary", **counts, count=len(jobs), exit_code=summary.exit_code)
    if mode != "none" or counts["failed"]:
        if isinstance(bar, BatchBar):
            bar.close()
        say(f"batch: {counts['done']} done, {counts['failed']} failed, {counts['skipped']} skipped, "
            f"{counts['retried']} retried of {len(jobs)}")
    return summary.exit_code


def _executor(args: argparse.Namespace) -> Any:
    """The Dask executor ``--workers`` or ``--cluster`` asks for, else ``None`` (this process)."""
    from nst_core.errors import InputError

    if args.workers is None and args.cluster is None:
        for flag, value in (("--threads-per-worker", args.threads_per_worker), ("--write-on-workers",
                                                                                args.write_on_workers)):
            if value:
                raise InputError(f"{flag} needs --workers N or --cluster ADDRESS")
        return None
    if args.workers is not None and args.cluster is not None:
        raise InputError("give --workers N (a local cluster) or --cluster ADDRESS (an existing one), not both")
    from nst_core.cluster import DaskExecutor

    return DaskExecutor(workers=args.workers, address=args.cluster, threads_per_worker=args.threads_per_worker,
                        write_on_workers=args.write_on_workers)


def _batch_fields(job: Any) -> dict[str, int]:
    return {"index": job.index, "count": job.count} if job.count > 1 else {}


def _job_fields(job: Any) -> dict[str, Any]:
    """What a job's JSON ``start`` event says of its files."""
    fields: dict[str, Any] = {"content": str(job.content), "styles": [str(s) for s in job.styles],
                              "output": str(job.output)}
    if job.config.regions:
        fields["regions"] = describe_regions(job.config.regions, job.styles)
    if job.config.fast_model:
        fields["fast_model"] = job.config.fast_model
    return {**fields, **_batch_fields(job)}


def spell_setting(name: str) -> str:
    """How the command line spells a setting an error message names: its option."""
    return "--" + name.replace("_", "-")


def command_train(args: argparse.Namespace) -> int:
    from nst_core.fast import NetworkShape, TrainingSettings, default_models_folder, train_files, training_config
    from nst_core.errors import ConfigError

    from .reporters import BarReporter, Canceller, JsonReporter
    from .streams import emit_json, say

    try:
        shape = NetworkShape(channels=args.channels, residual_blocks=args.residual_blocks)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    settings = TrainingSettings(
        steps=args.steps, batch_size=args.batch_size, crop_size=args.crop_size, style_size=args.style_size,
        learning_rate=args.learning_rate, checkpoint_every=args.checkpoint_every, network=shape,
    )
    config = training_config(
        model=args.model, weights=args.weights, content_layers=args.content_layers, style_layers=args.style_layers,
        content_weight=args.content_weight, style_weight=args.style_weight, tv_weight=args.tv_weight,
        seed=args.seed, device=args.device, precision=args.precision,
    )
    output = Path(args.output) if args.output else default_models_folder() / f"{Path(args.style).stem}.nst"
    if not args.output:
        output.parent.mkdir(parents=True, exist_ok=True)
    mode = _progress_mode(args)
    canceller = Canceller()
    plugins: list[Any] = [canceller]
    if mode == "bar":
        plugins.append(BarReporter())
    elif mode == "json":
        plugins.append(JsonReporter())
        emit_json("start", total=settings.steps, style=args.style, images=args.images, output=str(output))
    with _Signals(canceller):
        result = train_files(args.style, args.images, output, config=config, settings=settings, resume=args.resume,
                             style_name=args.name, plugins=plugins)
    if mode == "json":
        emit_json("done", output=str(output), steps=result.steps, cancelled=result.cancelled,
                  elapsed=round(result.elapsed, 3), losses=dict(result.losses), first_loss=result.first_loss,
                  last_loss=result.last_loss, info=dict(result.info))
    elif mode == "bar":
        state = "stopped, checkpoint written" if result.cancelled else "done"
        say(f"{state}: wrote {output} ({result.steps} steps, {result.elapsed:.0f} s; loss "
            f"{result.first_loss:.3g} -> {result.last_loss:.3g})")
    if canceller.requested is not None:
        return 128 + canceller.requested
    return EXIT_OK


def command_models(args: argparse.Namespace) -> int:
    import json

    from nst_core.fast import list_models, model_folders

    models = list_models()
    if args.json:
        for info in models:
            print(json.dumps({"name": info.name, "path": str(info.path), "style": info.style_name,
                              "steps": info.step, "problem": info.problem}))
        return EXIT_OK
    for folder in model_folders():
        print(f"folder: {folder}{'' if folder.is_dir() else ' (not made yet)'}")
    for info in models:
        state = f"unusable: {info.problem}" if info.problem else f"{info.style_name}, {info.step} steps"
        print(f"  {info.name}: {state} ({info.path})")
    if not models:
        print("no fast-style models yet; train one with 'nst-core train STYLE --images DIR'")
    return EXIT_OK


def command_weights(args: argparse.Namespace) -> int:
    from nst_core import weights

    if args.weights_command == "import":
        loaded = weights.import_weights(args.file)
        print(f"imported {loaded.model} weights into {loaded.path}")
        return EXIT_OK
    cached = {info.model: info for info in weights.list_cached_weights()}
    explicit = os.environ.get(weights.WEIGHTS_ENV)
    print(f"cache: {weights.cache_dir() / 'weights'}")
    if explicit:
        print(f"${weights.WEIGHTS_ENV}: {explicit} (used by every run)")
    for model in ("vgg16", "vgg19"):
        info = cached.get(model)
        where = f"{info.path} ({info.size_bytes / 1e6:.0f} MB)" if info else "not cached"
        sources = weights.weights_sources(model)
        used = next((source for source in sources if source.used), None)
        print(f"{model}: {where}; a run would use {used.source if used else 'nothing (no weights; pass --weights)'}")
        for number, source in enumerate(sources, 1):
            size = f" ({source.size_bytes / 1e6:.1f} MB)" if source.size_bytes is not None else ""
            state = {"explicit": "", "embedded": "" if source.present else "missing: ",
                     "cache": "" if source.present else "not cached: ",
                     "torchvision": "downloaded: " if source.present else "not downloaded: "}[source.kind]
            path = f"{source.path}{size}; " if source.path is not None else ""
            mark = "  <- used" if source.used else ""
            print(f"  {number}. {source.kind + ':':<12} {state}{path}{source.description}{mark}")
    return EXIT_OK


def command_gimp(args: argparse.Namespace) -> int:
    from . import gimp_install

    if args.gimp_command == "install":
        cli = Path(sys.argv[0]).resolve() if Path(sys.argv[0]).name == "nst-core" else None
        cli = cli or Path(sys.executable).with_name("nst-core")
        target = gimp_install.install(args.gimp_dir, cli, force=args.force)
        print(f"installed the GIMP plug-in into {target}; it runs {cli}")
        print(f"restart GIMP 3, then use {gimp_install.menu_text()}")
        return EXIT_OK
    if args.gimp_command == "uninstall":
        removed = gimp_install.uninstall(args.gimp_dir)
        for path in removed:
            print(f"removed {path}")
        if not removed:
            where = gimp_install.plugins_dir(args.gimp_dir) if args.gimp_dir else " or ".join(
                str(folder) for folder in gimp_install.default_gimp_plugin_dirs())
            print(f"the GIMP plug-in is not installed in {where}; nothing removed")
        return EXIT_OK
    checks = gimp_install.doctor(args.gimp_dir)
    for ok, message in checks:
        print(("ok       " if ok else "PROBLEM  ") + message)
    return EXIT_OK if all(ok for ok, _ in checks) else EXIT_RUNTIME


def _check_allocator_setting() -> None:
    """A value of ``NST_CORE_MALLOC`` that :mod:`nst_cli.launch` would not understand is bad input."""
    from nst_core.malloc import ALLOCATOR_SETTING, ALLOCATORS, chosen_allocator

    chosen = chosen_allocator(os.environ)
    if chosen not in ALLOCATORS:
        raise UsageError(f"{ALLOCATOR_SETTING} must be {' or '.join(ALLOCATORS)}, not {chosen!r}")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    json_mode = _json_mode(argv)
    # until a run installs its own handlers, SIGTERM stops at once like Ctrl-C (importing PyTorch
    # takes seconds, and a signal then must not end in a traceback or a death by the signal)
    signal.signal(signal.SIGTERM, _stop_now)
    try:
        try:
            from nst_core.errors import NstError
        except Exception as error:  # noqa: BLE001 - a broken installation
            return _fail(f"cannot import nst_core ({error})", EXIT_RUNTIME, json_mode)
        try:
            _check_allocator_setting()
            args = build_parser().parse_args(argv)
            return _COMMANDS[args.command](args)
        except NstError as error:
            if debug:
                raise
            return _fail(error.render(spell_setting), error.exit_code, json_mode)
        except UsageError as error:
            return _fail(str(error), error.exit_code, json_mode)
        except Stopped:
            raise
        except Exception as error:  # noqa: BLE001 - the one place that turns bugs into one line
            if debug:
                raise
            message = f"internal error: {type(error).__name__}: {error} (run with --debug for details)"
            return _fail(" ".join(message.split()), EXIT_RUNTIME, json_mode)
    except Stopped as stop:
        name = "Ctrl-C" if stop.signum == signal.SIGINT else signal.Signals(stop.signum).name
        return _fail(f"stopped by {name}", 128 + stop.signum, json_mode)
    except KeyboardInterrupt:
        return _fail("stopped by Ctrl-C", 128 + signal.SIGINT, json_mode)


def command_video(args: argparse.Namespace) -> int:
    from .video_command import command_video as video

    return video(args)


def command_serve(args: argparse.Namespace) -> int:
    from .serve import command_serve as serve

    return serve(args)


_COMMANDS = {"run": command_run, "train": command_train, "serve": command_serve, "models": command_models,
             "weights": command_weights, "gimp": command_gimp, "video": command_video}


def _stop_now(signum: int, frame: Any) -> None:
    raise Stopped(signum)


def _json_mode(argv: Sequence[str]) -> bool:
    return "--progress=json" in argv or any(a == "--progress" and b == "json" for a, b in zip(argv, argv[1:]))


def _fail(message: str, code: int, json_mode: bool) -> int:
    from .streams import emit_json, say

    if json_mode:
        emit_json("error", message=message, exit_code=code)
    say(f"nst-core: error: {message}")
    return code


if __name__ == "__main__":
    sys.exit(main())
