"""nst-core: neural style transfer (Gatys et al.) as a headless, pluggable engine.

Public API::

    from nst_core import Config, stylize, stylize_files
    result = stylize_files("photo.jpg", ["painting.jpg"], "out.png", config=Config(size=512))

The method is a setting: ``Config(method="optimize")`` (the default, Gatys et al.'s
optimization) or ``Config(method="fast", fast_model="starry_night")`` (a fast style: a network
trained once per style, then one pass per photo; training and models are in
:mod:`nst_core.fast`), or a plugin's method.
"""

from .malloc import huge_pages_for_tensors, reuse_freed_memory
from .openmp import prefer_passive_waits

prefer_passive_waits()  # before anything below imports PyTorch
huge_pages_for_tensors()
reuse_freed_memory()

from .config import Config  # noqa: E402
from .engine import stylize, stylize_files  # noqa: E402
from .errors import ConfigError, InputError, NstError, OptimizationError, PluginError, WeightsError  # noqa: E402
from .hookspecs import hookimpl, hookspec  # noqa: E402
from .masks import Mask, Region, load_mask  # noqa: E402
from .records import Progress, Result  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "Config",
    "ConfigError",
    "InputError",
    "Mask",
    "NstError",
    "OptimizationError",
    "PluginError",
    "Progress",
    "Region",
    "Result",
    "WeightsError",
    "hookimpl",
    "hookspec",
    "load_mask",
    "stylize",
    "stylize_files",
    "__version__",
]
