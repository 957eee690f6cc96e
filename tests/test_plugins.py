"""The plugin system: built-ins register through the hooks, third-party plugins join them."""

import textwrap

import pluggy
import pytest
import torch

from nst_core import Config, ConfigError, PluginError, hookimpl, stylize
from nst_core import hookspecs
from nst_core.plugins import DISABLE_AUTOLOAD_ENV, build_registries, get_plugin_manager, make_plugin_manager
from nst_core.color import NoColorPreservation
from nst_core.registry import ExtractorSpec


def test_builtins_register_through_the_hooks():
    registries = build_registries(make_plugin_manager(load_entry_points=False))
    assert {"vgg16", "vgg19"} <= set(registries.extractors.names())
    assert registries.losses.names() == ["content", "style", "tv", "regions"]
    assert "none" in registries.color_methods
    assert {"content", "noise", "image"} <= set(registries.init_methods.names())


def test_every_hook_is_documented():
    names = [n for n in dir(hookspecs) if n.startswith("nst_")]
    assert len(names) >= 9
    for name in names:
        doc = getattr(hookspecs, name).__doc__ or ""
        assert len(doc.strip().splitlines()) >= 3, name


def test_a_misspelled_hook_is_rejected():
    class Typo:
        @hookimpl
        def nst_progres(self, progress):  # missing "s"
            pass

    pm = make_plugin_manager(load_entry_points=False)
    pm.register(Typo())
    with pytest.raises(pluggy.PluginValidationError):
        pm.check_pending()


def test_a_hook_with_a_wrong_argument_is_rejected():
    class Wrong:
        @hookimpl
        def nst_progress(self, progress, extra):
            pass

    with pytest.raises(pluggy.PluginValidationError):
        make_plugin_manager(load_entry_points=False).register(Wrong())


def test_duplicate_and_invalid_registrations_are_plugin_errors():
    class Duplicate:
        @hookimpl
        def nst_register_color_methods(self, register):
            register("none", NoColorPreservation())

    pm = make_plugin_manager(load_entry_points=False)
    pm.register(Duplicate())
    with pytest.raises(PluginError, match="two plugins register a colour method named 'none'"):
        build_registries(pm)

    class NotAMethod:
        @hookimpl
        def nst_register_color_methods(self, register):
            register("broken", 42)

    pm = make_plugin_manager(load_entry_points=False)
    pm.register(NotAMethod())
    with pytest.raises(PluginError, match="is not an object with prepare"):
        build_registries(pm)


def test_unknown_names_list_the_choices(random_weights, small_pair):
    content, style = small_pair
    with pytest.raises(ConfigError, match="unknown colour method 'sepia'; choose one of: none"):
        stylize(content, [style], config=Config(preserve_color="sepia", size=32, iterations=1))
    with pytest.raises(ConfigError, match="unknown feature extractor 'alexnet'"):
        stylize(content, [style], config=Config(model="alexnet", size=32, iterations=1))


class Recorder:
    """A run-hook plugin that records what the engine reports."""

    def __init__(self, cancel_at=None):
        self.progress, self.notices, self.results, self.intermediates = [], [], [], []
        self.cancel_at = cancel_at

    @hookimpl
    def nst_progress(self, progress):
        self.progress.append(progress)

    @hookimpl
    def nst_notice(self, message):
        self.notices.append(message)

    @hookimpl
    def nst_should_cancel(self, progress):
        return True if self.cancel_at and progress.step >= self.cancel_at else None

    @hookimpl
    def nst_intermediate(self, image, progress):
        self.intermediates.append((image.copy(), progress.step))

    @hookimpl
    def nst_result(self, result):
        self.results.append(result)


def test_run_hooks_report_progress_intermediates_and_result(random_weights, small_pair):
    recorder = Recorder()
    result = stylize(*small_pair[:1], [small_pair[1]], config=Config(size=32, iterations=6, save_every=3),
                     plugins=[recorder])
    assert [p.step for p in recorder.progress] == [1, 2, 3, 4, 5, 6]
    assert all(p.total == 6 for p in recorder.progress)
    elapsed = [p.elapsed for p in recorder.progress]
    assert elapsed == sorted(elapsed)
    assert {"content", "style", "tv", "total"} <= set(recorder.progress[-1].losses)
    assert [step for _, step in recorder.intermediates] == [3, 6]
    assert recorder.intermediates[0][0].shape == result.image.shape
    assert recorder.results == [result]
    assert any("vgg16" in notice and "weights" in notice for notice in recorder.notices)
    # the listener took part in this run only
    assert not get_plugin_manager().is_registered(recorder)


def test_cancel_hook_stops_early_and_returns_best(random_weights, small_pair):
    recorder = Recorder(cancel_at=3)
    result = stylize(small_pair[0], [small_pair[1]], config=Config(size=32, iterations=50), plugins=[recorder])
    assert result.cancelled
    assert result.steps == 3
    assert 1 <= result.best_step <= 3


class TinyExtractor(torch.nn.Module):
    """A two-layer random network: the smallest thing that can carry a style."""

    def __init__(self, layers):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.requested = set(layers)
        self.requires_grad_(False)

    def forward(self, image):
        conv = self.conv(image)
        out = {"conv": conv, "relu": torch.relu(conv)}
        return {name: out[name] for name in self.requested}


class TinyPlugin:
    """Registers an extractor, a colour method, an init method and a loss through the hooks."""

    @hookimpl
    def nst_register_feature_extractors(self, register):
        register("tiny", ExtractorSpec(layer_names=("conv", "relu"), build=lambda *, config, layers, device: TinyExtractor(layers)))

    @hookimpl
    def nst_register_color_methods(self, register):
        class Invert:
            description = "invert the output (a test method)"

            def prepare(self, content, styles, *, config):
                return content, list(styles), "state"

            def finish(self, output, content, state, *, config):
                assert state == "state"
                return 1.0 - output

        register("invert", Invert())

    @hookimpl
    def nst_register_init_methods(self, register):
        register("grey", lambda *, content, config, generator: torch.full_like(content, 0.5))

    @hookimpl
    def nst_register_losses(self, register):
        class Brightness:
            weight, layers = 1.0, ()

            def set_content_targets(self, features):
                pass

            def set_style_targets(self, features, blend):
                pass

            def __call__(self, image, features):
                return (image.mean() - 0.5) ** 2

        register("brightness", lambda config: Brightness() if config.extra.get("brightness") else None)


def test_third_party_parts_take_part_in_a_run(small_pair):
    plugin = TinyPlugin()
    config = Config(model="tiny", content_layers=("relu",), style_layers=("conv", "relu"), size=24,
                    iterations=4, init="grey", preserve_color="invert", extra={"brightness": True})
    recorder = Recorder()
    result = stylize(small_pair[0], [small_pair[1]], config=config, plugins=[plugin, recorder])
    assert "brightness" in recorder.progress[-1].losses
    assert result.image.shape[:2] == (18, 24)
    assert result.info["model"] == "tiny"
    # without the plugin its names are unknown again
    with pytest.raises(ConfigError):
        stylize(small_pair[0], [small_pair[1]], config=config)


def test_entry_point_plugins_are_found_and_autoload_can_be_disabled(tmp_path, monkeypatch):
    package = tmp_path / "nst_sepia_plugin"
    package.mkdir()
    (package / "__init__.py").write_text(textwrap.dedent("""
        import nst_core

        class Sepia:
            description = "sepia tones"
            def prepare(self, content, styles, *, config):
                return content, list(styles), None
            def finish(self, output, content, state, *, config):
                return output.mean(axis=2, keepdims=True).repeat(3, axis=2)

        @nst_core.hookimpl
        def nst_register_color_methods(register):
            register("sepia", Sepia())
    """))
    dist = tmp_path / "nst_sepia_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: nst-sepia-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[nst_core]\nsepia = nst_sepia_plugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv(DISABLE_AUTOLOAD_ENV, raising=False)
    assert "sepia" in build_registries(make_plugin_manager()).color_methods
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")
    assert "sepia" not in build_registries(make_plugin_manager()).color_methods


def test_two_runs_in_two_threads_each_hear_only_their_own_progress(random_weights, small_pair):
    import threading

    recorders = {3: Recorder(), 5: Recorder(cancel_at=4)}
    results, errors = {}, []

    def work(iterations):
        try:
            config = Config(size=32 if iterations == 3 else 24, iterations=iterations)
            results[iterations] = stylize(small_pair[0], [small_pair[1]], config=config,
                                          plugins=[recorders[iterations]])
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(n,)) for n in recorders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors
    # each run's listener heard its own steps only, and one run's cancel did not stop the other
    assert [p.step for p in recorders[3].progress] == [1, 2, 3]
    assert {p.size for p in recorders[3].progress} == {"32x24"}
    assert [p.step for p in recorders[5].progress] == [1, 2, 3, 4]
    assert {p.size for p in recorders[5].progress} == {"24x18"}
    assert not results[3].cancelled and results[5].cancelled
    assert recorders[3].results == [results[3]] and recorders[5].results == [results[5]]


def test_one_plugins_false_does_not_hide_anothers_cancel(random_weights, small_pair):
    class NeverCancels:
        @hookimpl
        def nst_should_cancel(self, progress):
            return False

    for plugins in ([NeverCancels(), Recorder(cancel_at=2)], [Recorder(cancel_at=2), NeverCancels()]):
        result = stylize(small_pair[0], [small_pair[1]], config=Config(size=32, iterations=8), plugins=plugins)
        assert result.cancelled and result.steps == 2


def test_a_run_publishes_its_plan_before_the_first_step(random_weights, small_pair):
    class PlanLog(Recorder):
        def __init__(self):
            super().__init__()
            self.events = []

        @hookimpl
        def nst_plan(self, plan):
            self.events.append(("plan", plan))

        @hookimpl
        def nst_progress(self, progress):
            self.events.append(("progress", progress))

    log = PlanLog()
    stylize(small_pair[0], [small_pair[1]], config=Config(size=128, scales=2, iterations=3, coarse_iterations=2),
            plugins=[log])
    kind, plan = log.events[0]
    assert kind == "plan" and plan.method == "optimize"
    assert plan.stages == (("64x48", 2), ("128x96", 3)) and plan.total == 5
    assert [event for event, _ in log.events[1:]] == ["progress"] * 5
    assert all(progress.total == plan.total for _, progress in log.events[1:])


def test_registries_are_built_once_and_shared(monkeypatch):
    from nst_core import plugins as P

    first = P.shared_registries()
    assert P.shared_registries() is first
    # a run whose plugin registers nothing uses them; one whose plugin registers gets its own
    assert P.open_run([Recorder()]).registries is first
    own = P.open_run([TinyPlugin()]).registries
    assert own is not first and "tiny" in own.extractors and "tiny" not in first.extractors
