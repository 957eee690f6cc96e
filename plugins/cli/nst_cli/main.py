"""The ``nst-core`` command: files in, files out.

Exit codes: 0 success, 1 runtime failure, 2 bad input or usage, 130 stopped by Ctrl-C (SIGINT),
143 stopped by SIGTERM (the best image so far is written in both cases).
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()  # a time budget counts from here: start-up and loading included

import argparse  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

EXIT_OK, EXIT_RUNTIME, EXIT_USAGE = 0, 1, 2


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"nst-core: error: {message} (see '{self.prog} --help')\n")


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
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def build_parser() -> argparse.ArgumentParser:
    from nst_core import __version__
    from nst_core.config import (
        COLOR_MATCHES,
        DEFAULT_CONTENT_LAYERS,
        DEFAULT_PRESET,
        DEFAULT_STYLE_LAYERS,
        MEMORY_FORMATS,
        PRECISIONS,
        PRESETS,
        Config,
        describe_preset,
    )
    from nst_core.plugins import build_registries, get_plugin_manager

    registries = build_registries(get_plugin_manager())
    defaults = Config()

    parser = OneLineParser(
        prog="nst-core",
        description="Neural style transfer: paint a photo in the style of a painting.",
    )
    parser.add_argument("--version", action="version", version=f"nst-core {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    commands.required = True

    run = commands.add_parser(
        "run",
        help="stylize a photo with one or more paintings",
        description="Paint CONTENT in the style of STYLE (several styles are blended).",
        epilog="example: nst-core run photo.jpg starry_night.jpg -o out.png --size 512",
    )
    run.add_argument("content", metavar="CONTENT", help="the photo to stylize")
    run.add_argument("styles", metavar="STYLE", nargs="+", help="painting(s) whose style to use")
    run.add_argument("-o", "--output", required=True, metavar="OUT",
                     help="where to write the result (.png, .jpg, .tif, .webp, .bmp); never an input file")

    size = run.add_argument_group("size")
    size.add_argument("--size", type=int, default=defaults.size, metavar="PX",
                      help=f"long side of the output in pixels, 0 for the photo's own size (default {defaults.size})")
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
    opt.add_argument("--time-budget", type=float, metavar="SECONDS",
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
    opt.add_argument("--init", default=defaults.init, choices=registries.init_methods.names(),
                     help="start from the photo (content, default), random noise, or --init-image (image)")
    opt.add_argument("--init-image", metavar="PATH", help="start image for --init image")
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
                    help="memory the run may use, e.g. 4G or 800M; larger images are then processed in "
                         "overlapping tiles (default: a safe share of the free RAM or GPU memory)")
    hw.add_argument("--memory-format", choices=MEMORY_FORMATS, default=defaults.memory_format,
                    help="network memory layout; auto measures which is faster here (default auto)")

    out = run.add_argument_group("output and progress")
    out.add_argument("--save-every", type=int, default=0, metavar="N",
                     help="also write the best image so far every N steps, as OUT_00050.png etc.")
    out.add_argument("--progress", choices=("auto", "bar", "json", "none"), default="auto",
                     help="auto: a bar on a terminal; json: one JSON object per line on stdout, for programs")
    out.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    out.add_argument("--set", dest="extra", type=_key_value, action="append", default=[], metavar="KEY=VALUE",
                     help="a setting for a third-party plugin (repeatable)")
    out.add_argument("--debug", action="store_true", help="show Python tracebacks")

    weights = commands.add_parser("weights", help="manage network weights",
                                  description="List or import VGG weights files (for offline use).")
    weights_commands = weights.add_subparsers(dest="weights_command", metavar="ACTION", parser_class=OneLineParser)
    weights_commands.required = True
    weights_commands.add_parser("list", help="show cached weights and which file a run would use")
    imp = weights_commands.add_parser("import", help="check a weights file and copy it into the cache")
    imp.add_argument("file", metavar="FILE", help="a torchvision VGG-16/VGG-19 state dict (.pth)")
    for sub in (weights, *weights_commands.choices.values()):
        sub.add_argument("--debug", action="store_true", help="show Python tracebacks")

    gimp = commands.add_parser("gimp", help="install the GIMP 3 plug-in (Filters > Artistic > Neural Style...)",
                               description="Install, remove or check the GIMP 3 plug-in.")
    gimp_commands = gimp.add_subparsers(dest="gimp_command", metavar="ACTION", parser_class=OneLineParser)
    gimp_commands.required = True
    gimp_commands.add_parser("install", help="copy the plug-in into GIMP's plug-ins folder and record this nst-core")
    gimp_commands.add_parser("uninstall", help="remove the plug-in from GIMP's plug-ins folder")
    gimp_commands.add_parser("doctor", help="explain why GIMP shows no Neural Style menu entry")
    for sub in gimp_commands.choices.values():
        sub.add_argument("--gimp-dir", metavar="DIR",
                         help="GIMP 3's plug-ins folder (default: the usual one for this system)")
        sub.add_argument("--debug", action="store_true", help="show Python tracebacks")
    return parser


def config_from_args(args: argparse.Namespace):
    from nst_core.config import preset_config

    explicit = {name: getattr(args, name) for name in ("iterations", "scales", "coarse_iterations")
                if getattr(args, name) is not None}
    return preset_config(
        args.preset,
        **explicit,
        time_budget=_budget_left(args.time_budget),
        size=args.size or None,
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
        optimizer=args.optimizer,
        learning_rate=args.learning_rate,
        init=args.init,
        init_image=args.init_image,
        seed=args.seed,
        preserve_color=args.preserve_color,
        color_match=args.color_match,
        color_strength=args.color_strength,
        device=args.device,
        precision=args.precision,
        memory_format=args.memory_format,
        max_memory=args.max_memory,
        save_every=args.save_every,
        extra=dict(args.extra),
    )


def _budget_left(budget: float | None) -> float | None:
    """The time budget less what start-up (importing PyTorch, ~2–3 s) has used of it already."""
    if budget is None or budget <= 0:
        return budget  # Config reports the bad value
    return max(0.1, budget - (time.perf_counter() - STARTED))


def command_run(args: argparse.Namespace) -> int:
    from nst_core import stylize_files

    from .reporters import BarReporter, Canceller, JsonReporter, SnapshotWriter, emit_json

    config = config_from_args(args)
    mode = "none" if args.quiet else args.progress
    if mode == "auto":
        mode = "bar" if sys.stderr.isatty() else "none"
    output = Path(args.output)
    inputs = [Path(args.content), *map(Path, args.styles)]
    canceller = Canceller()
    plugins: list[Any] = [canceller]
    if mode == "bar":
        plugins.append(BarReporter())
    elif mode == "json":
        plugins.append(JsonReporter())
        total = config.iterations + (config.scales - 1) * config.coarse_iterations
        emit_json(sys.stdout, "start", total=total, content=args.content,
                  styles=args.styles, output=str(output))
    if config.save_every:
        plugins.append(SnapshotWriter(output, inputs))

    def request_stop(signum: int, frame: Any) -> None:
        if canceller.requested is not None:  # a second signal: stop at once
            raise KeyboardInterrupt
        canceller.requested = signum

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        result = stylize_files(args.content, args.styles, output, config=config, plugins=plugins)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if mode == "json":
        emit_json(sys.stdout, "done", output=str(output), steps=result.steps, best_step=result.best_step,
                  cancelled=result.cancelled, elapsed=round(result.elapsed, 3), losses=dict(result.losses),
                  info=dict(result.info))
    elif mode == "bar":
        state = "stopped early" if result.cancelled else "done"
        print(f"{state}: wrote {output} ({result.steps} steps, {result.elapsed:.1f} s)", file=sys.stderr)
    if canceller.requested is not None:
        return 128 + canceller.requested
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
        target = gimp_install.install(args.gimp_dir, cli)
        print(f"installed the GIMP plug-in into {target}; it runs {cli}")
        print("restart GIMP 3, then use Filters > Artistic > Neural Style...")
        return EXIT_OK
    if args.gimp_command == "uninstall":
        removed = gimp_install.uninstall(args.gimp_dir)
        print("removed the GIMP plug-in" if removed else "the GIMP plug-in was not installed")
        return EXIT_OK
    checks = gimp_install.doctor(args.gimp_dir)
    for ok, message in checks:
        print(("ok       " if ok else "PROBLEM  ") + message)
    return EXIT_OK if all(ok for ok, _ in checks) else EXIT_RUNTIME


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    json_mode = _json_mode(argv)
    try:
        from nst_core.errors import NstError
    except Exception as error:  # noqa: BLE001 - a broken installation
        print(f"nst-core: error: cannot import nst_core ({error})", file=sys.stderr)
        return EXIT_RUNTIME
    try:
        args = build_parser().parse_args(argv)
        if args.command == "run":
            return command_run(args)
        if args.command == "weights":
            return command_weights(args)
        if args.command == "gimp":
            return command_gimp(args)
        raise AssertionError(args.command)
    except NstError as error:
        if debug:
            raise
        return _fail(str(error), error.exit_code, json_mode)
    except KeyboardInterrupt:
        return _fail("interrupted", 130, json_mode)
    except Exception as error:  # noqa: BLE001 - the one place that turns bugs into one line
        if debug:
            raise
        message = f"internal error: {type(error).__name__}: {error} (run with --debug for details)"
        return _fail(" ".join(message.split()), EXIT_RUNTIME, json_mode)


def _json_mode(argv: Sequence[str]) -> bool:
    return "--progress=json" in argv or any(a == "--progress" and b == "json" for a, b in zip(argv, argv[1:]))


def _fail(message: str, code: int, json_mode: bool) -> int:
    if json_mode:
        from .reporters import emit_json

        emit_json(sys.stdout, "error", message=message, exit_code=code)
    print(f"nst-core: error: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
