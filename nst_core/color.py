"""Colour-preservation methods (built-in plugins).

A method's ``prepare`` may recolour the content and style images before the optimization and its
``finish`` may change the optimized image afterwards; see :class:`nst_core.registry.ColorMethod`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .config import Config
from .hookspecs import hookimpl


class NoColorPreservation:
    """Keep the style's colours: the images go through unchanged."""

    description = "keep the style's colours"

    def prepare(
        self, content: np.ndarray, styles: Sequence[np.ndarray], *, config: Config
    ) -> tuple[np.ndarray, list[np.ndarray], Any]:
        return content, list(styles), None

    def finish(self, output: np.ndarray, content: np.ndarray, state: Any, *, config: Config) -> np.ndarray:
        return output


@hookimpl
def nst_register_color_methods(register) -> None:
    register("none", NoColorPreservation())
