"""``nst-core run PHOTO A.jpg B.jpg --masks sky.png,houses.png [--rest PAINTING]``: the paintings
and masks of a command line as the engine's regions (:class:`nst_core.masks.Region`).

* one mask per painting, in order; a painting named ``none`` (exactly) keeps the photo in its
  mask's region. ``none`` is never a file: a file of that name is ``./none``;
* ``--rest PAINTING`` paints the pixels no mask covers (one of the paintings, or another file;
  ``none``, the default, keeps the photo there);
* a mask is a grayscale image, an RGB image (its luminance) or a PNG's alpha
  (:func:`nst_core.masks.load_mask`).

Every mistake is an :class:`nst_core.errors.InputError`: one line, exit 2, before any work.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

#: The painting name that keeps the photo.
NONE = "none"


def raw_paintings(args: argparse.Namespace) -> list[str]:
    """The painting arguments as given: ``--style`` files, else the positionals after CONTENT."""
    return list(args.style_files) if getattr(args, "style_files", None) else list(args.styles)


def paintings_and_regions(args: argparse.Namespace) -> tuple[list[Path], tuple[Any, ...]]:
    """The style files to load, and the regions that index them (none without ``--masks``)."""
    cached = getattr(args, "_paintings_and_regions", None)
    if cached is None:  # the config and the jobs both ask; the masks are read once
        cached = _paintings_and_regions(args)
        setattr(args, "_paintings_and_regions", cached)
    return cached


def _paintings_and_regions(args: argparse.Namespace) -> tuple[list[Path], tuple[Any, ...]]:
    from nst_core.errors import InputError
    from nst_core.masks import Region

    given = raw_paintings(args)
    masks = getattr(args, "masks", None)
    rest = getattr(args, "rest", None)
    if not masks:
        if rest is not None:
            raise InputError("--rest paints what no mask covers: it needs --masks MASK,MASK,...")
        if NONE in given:
            raise InputError(f"the painting '{NONE}' keeps the photo within a mask: it needs --masks "
                             f"(a file named '{NONE}' is ./{NONE})")
        return [Path(p) for p in given], ()
    if len(masks) != len(given):
        raise InputError(f"--masks gives {len(masks)} mask{'s' * (len(masks) != 1)} for {len(given)} "
                         f"painting{'s' * (len(given) != 1)}: give one mask per painting, in order")
    styles: list[Path] = []

    def index_of(painting: str) -> int | None:
        if painting == NONE:
            return None
        path = Path(painting)
        for number, known in enumerate(styles):
            if known == path:
                return number
        styles.append(path)
        return len(styles) - 1

    regions = [Region(mask=_mask(mask), style=index_of(painting), label=mask) for painting, mask in zip(given, masks)]
    if rest is not None and rest != NONE:
        regions.append(Region(mask=None, style=index_of(rest), label="rest"))
    if not styles:
        raise InputError(f"every region keeps the photo ('{NONE}'): give at least one painting, or --rest PAINTING")
    return styles, tuple(regions)


def _mask(path: str) -> Any:
    from nst_core.errors import InputError
    from nst_core.masks import load_mask

    try:
        return load_mask(path)
    except InputError as error:
        raise InputError(f"--masks: {error}") from None


def describe(regions: tuple[Any, ...], styles: list[Path] | tuple[Path, ...]) -> list[dict[str, Any]]:
    """The regions for a JSON ``start`` event: mask, painting (``none``) and weight of each."""
    return [{"mask": region.label or ("rest" if region.mask is None else f"mask {number}"),
             "painting": NONE if region.style is None else str(styles[region.style]),
             "weight": region.weight} for number, region in enumerate(regions, 1)]


def mask_list(text: str) -> tuple[str, ...]:
    """``--masks a.png,b.png``: mask files, comma-separated (empty names refused)."""
    items = tuple(item.strip() for item in text.split(","))
    if not all(items):
        raise argparse.ArgumentTypeError(f"expected mask files separated by commas, got {text!r}")
    return items
