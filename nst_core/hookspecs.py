"""Hook specifications: every way a plugin can extend nst-core or listen to a run.

A plugin is a module or object with functions named like the hooks below, decorated with
:data:`hookimpl`. nst-core's own parts (the VGG networks, the losses, the colour and init methods)
are plugins too and register through these same hooks. Third-party plugins are found through the
``nst_core`` entry-point group unless ``NST_CORE_DISABLE_PLUGIN_AUTOLOAD`` is set.

Two kinds of hooks:

* **registration hooks** (``nst_register_*``) fill the registries (networks, losses, colour,
  init and style-transfer methods, model folders); each receives a ``register(name, thing)``
  callable, and registering a name twice is an error. The process-wide registries are built the
  first time a run or a front end needs them and then shared, read-only, by every run
  (:func:`nst_core.plugins.shared_registries`); a run whose own plugins register something gets
  registries of its own, built for it alone. So a registration hook may be called more than
  once per process: it must register the same things each time, cheaply.
* **run hooks** are called by the engine during a run; they receive immutable records and must
  not change them. The engine never prints: front ends listen to these hooks. Every run has its
  own hook relay: the plugins passed to one run (``stylize(..., plugins=[...])``) hear that run
  only, also when several runs go on at once in one process (threads, a batch worker, a preview
  server); plugins registered with the process-wide manager hear every run.

Example, a plugin that adds a colour method and logs progress::

    import nst_core

    @nst_core.hookimpl
    def nst_register_color_methods(register):
        register("sepia", SepiaMethod())

    @nst_core.hookimpl
    def nst_progress(progress):
        print(progress.step, progress.total, progress.losses["total"])
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import pluggy

if TYPE_CHECKING:
    from .records import Plan, Progress, Result

PROJECT_NAME = "nst_core"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


# -------------------------------------------------------------------------------------------------
# Registration hooks
# -------------------------------------------------------------------------------------------------


@hookspec
def nst_register_feature_extractors(register: Callable[[str, Any], None]) -> None:
    """Register feature extractors (networks) by name.

    :param register:
        Call ``register(name, spec)`` with a :class:`nst_core.registry.ExtractorSpec`: the
        extractor's layer names in network order and a ``build(*, config, layers, device)``
        function returning a frozen ``torch.nn.Module`` that maps a ``1×3×H×W`` RGB image in
        ``[0, 1]`` to a ``dict`` of the requested layers' activations.

    Called when registries are built (see the module doc). The built-in ``vgg16`` and ``vgg19``
    register here. ``Config.model`` selects an extractor by name.
    """


@hookspec
def nst_register_losses(register: Callable[[str, Any], None]) -> None:
    """Register loss terms by name.

    :param register:
        Call ``register(name, factory)`` where ``factory(config)`` returns a
        :class:`nst_core.registry.LossTerm` for this run, or ``None`` when the term is off
        (for example when its weight is zero).

    Called when registries are built (see the module doc). The built-in ``content``, ``style``
    and ``tv`` terms register here. Every registered term whose factory returns a term takes part in
    every run; the total loss is the sum of ``term.weight * term(...)``.
    """


@hookspec
def nst_register_color_methods(register: Callable[[str, Any], None]) -> None:
    """Register colour-preservation methods by name.

    :param register:
        Call ``register(name, method)`` with a :class:`nst_core.registry.ColorMethod`: its
        ``prepare`` may change the content and style images before the optimization, its
        ``finish`` changes the optimized image afterwards.

    Called when registries are built (see the module doc). ``Config.preserve_color`` selects one
    by name; the built-in ``none`` leaves colours alone.
    """


@hookspec
def nst_register_init_methods(register: Callable[[str, Any], None]) -> None:
    """Register ways to make the start image of the optimization.

    :param register:
        Call ``register(name, init)`` where ``init(*, content, config, generator)`` returns a
        float tensor shaped like ``content`` (``1×3×H×W``, values in ``[0, 1]``); ``generator``
        is a seeded ``torch.Generator`` to draw any randomness from. An ``init`` whose signature
        also names ``styles`` receives the style images (``H×W×3`` arrays) too.

    Called when registries are built (see the module doc). ``Config.init`` selects one by name;
    the built-ins are ``content``, ``noise``, ``image`` and ``instant`` (the instant method's
    result).
    """


@hookspec
def nst_register_fast_model_folders(register: Callable[[str, Any], None]) -> None:
    """Register folders that hold fast-style models (``*.nst`` files, see :mod:`nst_core.fast`).

    :param register:
        Call ``register(name, folder)`` with a path (``str`` or ``os.PathLike``); the folder need
        not exist yet.

    Called when registries are built (see the module doc). The built-in ``user`` folder is
    nst-core's cache's ``models`` folder (a path object that looks the cache up each time it is
    used, so it follows ``$NST_CORE_CACHE_DIR``). Front ends list the models of every folder
    (:func:`nst_core.fast.list_models`) and find one by name (:func:`nst_core.fast.find_model`).
    """


@hookspec
def nst_register_methods(register: Callable[[str, Any], None]) -> None:
    """Register ways to paint a photo (style-transfer methods) by name.

    :param register:
        Call ``register(name, method)`` with a :class:`nst_core.registry.Method`: an object with a
        ``description``, ``uses_styles`` (whether it needs painting images) and
        ``run(content, styles, *, config, run)`` returning a :class:`nst_core.records.Result`.

    Called when registries are built (see the module doc). ``Config.method`` selects one by
    name; the built-ins are ``optimize`` (Gatys et al.'s optimization), ``fast`` (a trained
    feed-forward network, ``Config.fast_model``) and ``instant`` (any painting in one pass). Batches, the GIMP plug-in and the command line
    reach every registered method the same way, through :func:`nst_core.stylize`.
    """


# -------------------------------------------------------------------------------------------------
# Run hooks
# -------------------------------------------------------------------------------------------------


@hookspec
def nst_notice(message: str) -> None:
    """Receive a one-line informational message from the engine.

    :param message: What a user may want to know, e.g. which weights a run uses.

    Called at any time during a run. Front ends decide whether to show it.
    """


@hookspec
def nst_plan(plan: Plan) -> None:
    """Receive the :class:`nst_core.records.Plan` of a run once it is known, before its first step.

    :param plan: The method, the sizes the run will work at with their steps, and the total
        number of steps (an estimate when a time budget decides).

    Called once per run, after the network is loaded and the sizes are planned. Front ends take
    their progress totals from here instead of working them out from the settings.
    """


@hookspec
def nst_progress(progress: Progress) -> None:
    """Receive a :class:`nst_core.records.Progress` record after each optimization step.

    Fast-style training (:func:`nst_core.fast.train`) reports its steps here too, with
    ``progress.stage == "train"``.

    :param progress: Step number, total steps, current losses and elapsed seconds.

    Called once per loss evaluation, in order, from the thread that runs the engine. Keep it
    cheap: it runs between network passes.
    """


@hookspec
def nst_should_cancel(progress: Progress) -> bool | None:
    """Ask whether the run should stop now.

    :param progress: The step just finished (or, on a size computed in tiles, the tile).
    :return: ``True`` to stop; ``None`` or ``False`` to go on.

    Called after each step, once :func:`nst_progress` has been called, and between the tiles of
    a tiled step. Every implementation is asked, and the run stops when any of them answers
    ``True``: one plugin's ``False`` never hides another's ``True``. A cancelled run still
    returns the best image reached, with ``Result.cancelled`` set.
    """


@hookspec
def nst_intermediate(image: Any, progress: Progress) -> None:
    """Receive the best image so far, every ``Config.save_every`` steps.

    :param image: ``H×W×3`` float32 ``numpy`` array in ``[0, 1]``, colour method applied.
    :param progress: The step at which it was taken.
    """


@hookspec
def nst_video_frame(progress: Progress) -> None:
    """Receive a :class:`nst_core.records.Progress` record after each finished frame of a clip.

    :param progress: ``stage == "video"``; ``step`` is the frame just finished (1-based),
        ``total`` the clip's frames, ``elapsed`` the seconds since the clip started and
        ``remaining`` (``eta``) the estimate for the frames left.

    Called by :func:`nst_core.video.stylize_video` once per painted frame, after the frame's file
    is written; each frame's own run reports its steps through :func:`nst_progress` as any run
    does. ``nst_should_cancel`` is asked with the same record next: a clip stops between frames,
    keeping the finished ones.
    """


@hookspec
def nst_result(result: Result) -> None:
    """Receive the :class:`nst_core.records.Result` of a finished (or cancelled) run.

    Called once, after the last step, before :func:`nst_core.stylize` returns.
    """
