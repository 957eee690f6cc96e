"""The plugin manager: built-in parts, entry-point plugins, the registries they fill, and each
run's own hook relay.

* One process-wide :class:`pluggy.PluginManager` (:func:`get_plugin_manager`) holds nst-core's
  built-in parts and the entry-point plugins.
* Its registries are built once and shared, read-only, by every run (:func:`shared_registries`).
* Every run gets a :class:`RunContext` of its own (:func:`open_run`): a hook relay made of the
  process-wide plugins plus the plugins given to that run, so that two runs in one process
  (threads, a batch worker, a preview server) never hear each other's progress or cancel
  requests.
"""

from __future__ import annotations

import importlib
import os
import threading
import time
from collections.abc import Iterable
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
    "nst_core.regions",  # before losses: pluggy calls the last registered first, and the terms
    "nst_core.losses",  # (and the losses of progress events) then come content, style, tv, regions
    "nst_core.color",
    "nst_core.init_methods",
    "nst_core.methods",
    "nst_core.fast.folders",
)

#: The registration hooks, in the order :func:`build_registries` calls them.
REGISTRATION_HOOKS = (
    "nst_register_feature_extractors",
    "nst_register_losses",
    "nst_register_color_methods",
    "nst_register_init_methods",
    "nst_register_methods",
    "nst_register_fast_model_folders",
)

_manager: pluggy.PluginManager | None = None
_shared: tuple[tuple[int, ...], Registries] | None = None
_lock = threading.RLock()


@dataclass(frozen=True)
class Registries:
    """Everything the plugins registered, by kind."""

    extractors: Registry[ExtractorSpec]
    losses: Registry[Any]
    color_methods: Registry[ColorMethod]
    init_methods: Registry[Any]
    #: Style-transfer methods (``nst_register_methods``): ``optimize``, ``fast`` …
    methods: Registry[Any]
    #: Folders of fast-style models (``nst_register_fast_model_folders``).
    model_folders: Registry[Any]


@dataclass(frozen=True, eq=False)
class RunContext:
    """One run's view of the plugins: its own hook relay, the registries, its start time."""

    #: ``hook.nst_progress(progress=…)`` etc. reach the process-wide plugins and this run's own.
    hook: Any
    registries: Registries
    #: ``time.perf_counter()`` when the run started (a time budget counts from here).
    started: float

    def cancelled(self, progress: Any) -> bool:
        """Whether any ``nst_should_cancel`` implementation answers ``True`` for ``progress``."""
        return any(answer is True for answer in self.hook.nst_should_cancel(progress=progress))


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, made on first use."""
    global _manager
    with _lock:
        if _manager is None:
            _manager = make_plugin_manager()
        return _manager


def make_plugin_manager(*, load_entry_points: bool | None = None) -> pluggy.PluginManager:
    """A new plugin manager with the built-in plugins and, unless disabled, entry-point plugins."""
    pm = _new_manager()
    for module_name in BUILTIN_PLUGINS:
        pm.register(importlib.import_module(module_name), name=module_name)
    if load_entry_points is None:
        load_entry_points = not os.environ.get(DISABLE_AUTOLOAD_ENV)
    if load_entry_points:
        pm.load_setuptools_entrypoints(hookspecs.PROJECT_NAME)
    pm.check_pending()
    return pm


def _new_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
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
        methods=Registry(
            "method",
            lambda x: callable(getattr(x, "run", None)) and isinstance(getattr(x, "uses_styles", None), bool),
            "an object with run() and uses_styles",
        ),
        model_folders=Registry("fast model folder", lambda x: isinstance(x, (str, os.PathLike)), "a path"),
    )
    pm.hook.nst_register_feature_extractors(register=registries.extractors.register)
    pm.hook.nst_register_losses(register=registries.losses.register)
    pm.hook.nst_register_color_methods(register=registries.color_methods.register)
    pm.hook.nst_register_init_methods(register=registries.init_methods.register)
    pm.hook.nst_register_methods(register=registries.methods.register)
    pm.hook.nst_register_fast_model_folders(register=registries.model_folders.register)
    return registries


def shared_registries() -> Registries:
    """The registries of the process-wide plugin manager, built once and then shared.

    Built again only when plugins are added to or removed from that manager.
    """
    global _shared
    pm = get_plugin_manager()
    with _lock:
        key = tuple(sorted(id(plugin) for plugin in pm.get_plugins()))
        if _shared is None or _shared[0] != key:
            _shared = (key, build_registries(pm))
        return _shared[1]


def open_run(plugins: Iterable[Any] = (), *, started: float | None = None) -> RunContext:
    """A :class:`RunContext` for one run with ``plugins`` (listeners, cancel checks, parts).

    The process-wide plugins take part too. When one of ``plugins`` registers something (a
    network, a loss, a method …), the run gets registries of its own that include it.
    """
    base = get_plugin_manager()
    own = [plugin for plugin in plugins if not base.is_registered(plugin)]
    pm = _new_manager()
    for name, plugin in base.list_name_plugin():
        if plugin is not None:
            pm.register(plugin, name=name)
    for plugin in own:
        if not pm.is_registered(plugin):
            pm.register(plugin)
    pm.check_pending()
    registers = any(callable(getattr(plugin, name, None)) for plugin in own for name in REGISTRATION_HOOKS)
    registries = build_registries(pm) if registers else shared_registries()
    return RunContext(hook=pm.hook, registries=registries,
                      started=time.perf_counter() if started is None else started)
