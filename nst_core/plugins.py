"""The plugin manager: built-in parts, entry-point plugins, and the registries they fill."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pluggy

from . import hookspecs
from .registry import ColorMethod, ExtractorSpec, Registry

#: Set this environment variable (to anything non-empty) to skip entry-point plugins.
DISABLE_AUTOLOAD_ENV = "NST_CORE_DISABLE_PLUGIN_AUTOLOAD"

#: Modules of nst-core that are plugins themselves, registered before any third-party plugin.
BUILTIN_PLUGINS = (
    "nst_core.features",
    "nst_core.losses",
    "nst_core.color",
    "nst_core.init_methods",
    "nst_core.fast.folders",
)

_manager: pluggy.PluginManager | None = None


@dataclass(frozen=True)
class Registries:
    """Everything the plugins registered, by kind."""

    extractors: Registry[ExtractorSpec]
    losses: Registry[Any]
    color_methods: Registry[ColorMethod]
    init_methods: Registry[Any]
    #: Folders of fast-style models (``nst_register_fast_model_folders``).
    model_folders: Registry[Any]


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, made on first use."""
    global _manager
    if _manager is None:
        _manager = make_plugin_manager()
    return _manager


def make_plugin_manager(*, load_entry_points: bool | None = None) -> pluggy.PluginManager:
    """A new plugin manager with the built-in plugins and, unless disabled, entry-point plugins."""
    import importlib

    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    for module_name in BUILTIN_PLUGINS:
        pm.register(importlib.import_module(module_name), name=module_name)
    if load_entry_points is None:
        load_entry_points = not os.environ.get(DISABLE_AUTOLOAD_ENV)
    if load_entry_points:
        pm.load_setuptools_entrypoints(hookspecs.PROJECT_NAME)
    pm.check_pending()
    return pm


def build_registries(pm: pluggy.PluginManager) -> Registries:
    """Call every registration hook of ``pm`` and collect what was registered."""
    registries = Registries(
        extractors=Registry("feature extractor", lambda x: isinstance(x, ExtractorSpec), "an ExtractorSpec"),
        losses=Registry("loss", callable, "a factory function"),
        color_methods=Registry(
            "colour method",
            lambda x: callable(getattr(x, "prepare", None)) and callable(getattr(x, "finish", None)),
            "an object with prepare() and finish()",
        ),
        init_methods=Registry("init method", callable, "a function"),
        model_folders=Registry("fast model folder", lambda x: isinstance(x, (str, os.PathLike)), "a path"),
    )
    pm.hook.nst_register_feature_extractors(register=registries.extractors.register)
    pm.hook.nst_register_losses(register=registries.losses.register)
    pm.hook.nst_register_color_methods(register=registries.color_methods.register)
    pm.hook.nst_register_init_methods(register=registries.init_methods.register)
    pm.hook.nst_register_fast_model_folders(register=registries.model_folders.register)
    return registries


@contextmanager
def plugins_registered(pm: pluggy.PluginManager, plugins: Iterable[Any]) -> Iterator[None]:
    """Register ``plugins`` (e.g. a front end's progress listener) for the duration of a block."""
    added = []
    try:
        for plugin in plugins:
            if not pm.is_registered(plugin):
                pm.register(plugin)
                added.append(plugin)
        pm.check_pending()
        yield
    finally:
        for plugin in added:
            pm.unregister(plugin)
