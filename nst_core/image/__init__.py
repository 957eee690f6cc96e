"""Image files in and out, resizing, and conversion between numpy arrays and tensors.

Arrays are ``H×W×3`` (colour) or ``H×W`` (alpha) ``float32`` in ``[0, 1]``; tensors are
``1×3×H×W``. Nothing here prints; every problem a user can cause (a missing, unreadable, corrupt,
truncated or oversized file, a named pipe or device instead of a file, an unsupported output
type, an output path that is an input, an output folder that cannot be written) raises
:class:`~nst_core.errors.InputError` with a one-line message naming the file.

The modules, one job each:

* :mod:`.read` — :func:`load_image`: opening, limits, choosing a decoder;
* :mod:`.pillow_decode` — 8-bit images (and Pillow's exact deeper modes) through Pillow;
* :mod:`.png16` — 16-bit PNG, decoder and encoder (Pillow reduces such files to 8 bits);
* :mod:`.tiff` — TIFF deeper than 8 bits or float, read and written with tifffile;
* :mod:`.orientation` — EXIF orientation;
* :mod:`.decoded` — what decoders return, and their errors;
* :mod:`.write` — :func:`save_image` and :func:`check_save_path`;
* :mod:`.arrays` — :func:`long_side_size`, :func:`resize_to`, :func:`to_tensor`, :func:`to_array`.
"""

from __future__ import annotations

from ..file_checks import same_file
from .arrays import long_side_size, resize_to, to_array, to_tensor
from .read import DEFAULT_MAX_PIXELS, LoadedImage, load_image
from .write import SAVE_SUFFIXES, check_save_path, save_image

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "SAVE_SUFFIXES",
    "check_save_path",
    "LoadedImage",
    "load_image",
    "long_side_size",
    "resize_to",
    "same_file",
    "save_image",
    "to_array",
    "to_tensor",
]
