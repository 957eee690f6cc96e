"""The built-in style-transfer methods, registered like a plugin's (``nst_register_methods``).

* ``optimize``: :class:`nst_core.optimization.OptimizationMethod`, Gatys et al.'s optimization;
* ``fast``: :class:`nst_core.fast.apply.FastMethod`, a trained fast-style model;
* ``instant``: :class:`nst_core.instant.method.InstantMethod`, any painting in one pass.

Each is one object per process, so what it loads stays loaded between runs.
"""

from __future__ import annotations

from .hookspecs import hookimpl


@hookimpl
def nst_register_methods(register) -> None:
    from .fast.apply import FastMethod
    from .instant.method import InstantMethod
    from .optimization import OptimizationMethod

    register("optimize", _one(OptimizationMethod))
    register("fast", _one(FastMethod))
    register("instant", _one(InstantMethod))


_instances: dict[type, object] = {}


def _one(cls: type) -> object:
    """The process's one instance of a method class."""
    return _instances.setdefault(cls, cls())
