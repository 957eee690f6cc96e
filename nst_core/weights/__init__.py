"""Finding, checking, caching and importing VGG-16 / VGG-19 weights.

Where a run's weights come from (:func:`load_weights`), first match wins:

1. an explicit file: ``Config.weights``, else ``$NST_CORE_WEIGHTS`` (:func:`explicit_weights_path`);
2. the weights embedded in the package (:func:`embedded_weights_path`): the original VGG weights
   of Simonyan & Zisserman, 8-bit quantized, in ``nst_core/data`` — so a fresh install works with
   no network and no weights file;
3. nst-core's cache, ``cached_weights_path(model)`` (filled by :func:`import_weights`, that is
   ``nst-core weights import FILE``), used when the embedded file is missing from an installation.

``Config.weights == "torchvision"`` (or ``$NST_CORE_WEIGHTS=torchvision``) asks for PyTorch's
re-trained ImageNet weights instead: the file imported into nst-core's cache if there is one,
else torchvision's own download machinery and cache (``$TORCH_HOME/hub/checkpoints``; a file
downloaded before is used without network). Nothing is ever downloaded unless asked for this way.

The modules, one job each:

* :mod:`.locations` — where the files are (explicit, embedded, cache, torchvision's), no reading;
* :mod:`.weights_file` — reading and checking one file, once per process (``.pth`` with
  ``weights_only=True``, ``.npz`` without pickles; only regular files);
* :mod:`.state_dict` — the accepted state-dict layouts and the architecture check;
* :mod:`.npz_format` — the ``.npz`` format with quantized tensors, and writing the embedded files;
* :mod:`.resolve` — the resolution order above (:func:`load_weights`, :func:`chosen_source`,
  :func:`weights_sources`, :func:`infer_model`);
* :mod:`.cache` — importing into nst-core's cache and listing it.

Anything wrong is a :class:`~nst_core.errors.WeightsError` with a one-line message that names the file.
"""

from __future__ import annotations

import torch  # noqa: F401 - ``weights.torch``: callers patch ``torch.save`` through it

from .cache import LoadedWeightsInfo, import_weights, list_cached_weights
from .locations import (
    CACHE_ENV,
    EMBEDDED_FILES,
    MODELS,
    TORCHVISION,
    WEIGHTS_ENV,
    cache_dir,
    cached_weights_path,
    embedded_weights_path,
    explicit_weights_path,
    wants_torchvision,
)
from .npz_format import CODEBOOK_SIZE, CODEBOOK_SUFFIX, CODES_SUFFIX, EMBEDDED_FORMAT, write_embedded_file
from .resolve import (
    EMBEDDED_SOURCE,
    WeightsSource,
    chosen_source,
    infer_model,
    load_embedded_weights,
    load_weights,
    weights_sources,
)
from .state_dict import check_state_dict
from .weights_file import LoadedWeights, read_weights_file

__all__ = [
    "CACHE_ENV",
    "CODEBOOK_SIZE",
    "CODEBOOK_SUFFIX",
    "CODES_SUFFIX",
    "EMBEDDED_FILES",
    "EMBEDDED_FORMAT",
    "EMBEDDED_SOURCE",
    "MODELS",
    "TORCHVISION",
    "WEIGHTS_ENV",
    "LoadedWeights",
    "LoadedWeightsInfo",
    "WeightsSource",
    "cache_dir",
    "cached_weights_path",
    "check_state_dict",
    "chosen_source",
    "embedded_weights_path",
    "explicit_weights_path",
    "import_weights",
    "infer_model",
    "list_cached_weights",
    "load_embedded_weights",
    "load_weights",
    "read_weights_file",
    "wants_torchvision",
    "weights_sources",
    "write_embedded_file",
]
