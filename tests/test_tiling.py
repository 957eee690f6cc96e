"""Huge images: memory plans, tile grids, and tiled evaluation that matches a whole-image pass."""

import json

import numpy as np
import pytest
import torch

from nst_core import hookimpl, stylize, winograd
from nst_core.config import Config
from nst_core.errors import ConfigError
from nst_core.features import build_vgg, build_vgg_layers
from nst_core.memory import NetworkCost, measure_network, plan_memory
from nst_core.parts import WHOLE, cuts, grid, shifted_offsets
from nst_core.plugins import build_registries, get_plugin_manager
from nst_core.schedule import plan_stages
from nst_core.tiling import TiledEvaluator, check_tileable

from .test_cli import one_line_error, run_cli
from .test_plugins import Recorder

#: Layers up to relu2_2 (stride 2): a network small enough that tests can force tiles on 128 px.
SHALLOW = dict(content_layers=("relu2_2",), style_layers=("relu1_1", "relu2_1"))
STRIDES = {"relu1_1": 1, "relu2_1": 2, "relu2_2": 2}


@pytest.mark.parametrize("hw", [(96, 128), (100, 77), (31, 64)])
def test_cores_partition_the_image_and_every_feature_map(hw):
    offsets = shifted_offsets(16, 2)
    for _ in range(5):
        parts = grid(hw, core=16, halo=6, offset=next(offsets), strides=STRIDES)
        for stride in (1, 2):
            covered = np.zeros((hw[0] // stride, hw[1] // stride), int)
            for part in parts:
                top, bottom, left, right = part.core
                o_top, o_bottom, o_left, o_right = part.outer
                assert o_top <= top < bottom <= o_bottom and o_left <= left < right <= o_right
                assert 8 <= bottom - top <= 24 or bottom - top == hw[0] or bottom == hw[0]
                name = "relu1_1" if stride == 1 else "relu2_1"
                view = part.crop(name, torch.from_numpy(covered))
                view += 1
            assert (covered == 1).all()


def test_seams_move_from_one_evaluation_to_the_next():
    offsets = shifted_offsets(256, 16)
    seams = [tuple(cuts(3000, 256, next(offsets)[0])) for _ in range(8)]
    assert len(set(seams)) == 8  # 16 possible places for a seam, 8 evaluations: none repeats
    assert all(seam[-1] == 3000 and all(128 <= b - a <= 384 for a, b in zip((0, *seam), seam)) for seam in seams)


def _terms(config):
    registries = build_registries(get_plugin_manager())
    return {name: term for name, factory in registries.losses.items() if (term := factory(config)) is not None}


def test_tiled_loss_and_gradient_equal_the_whole_images(small_pair):
    """With a halo wider than the network's reach, tiles give exactly the whole image's numbers."""
    torch.manual_seed(0)
    config = Config(**SHALLOW, tv_weight=0.5)
    layers = ("relu1_1", "relu2_1", "relu2_2")
    network = build_vgg("vgg16", build_vgg_layers("vgg16").state_dict(), layers=layers)
    content = torch.rand(1, 3, 60, 84)
    style = torch.rand(1, 3, 50, 50)
    point = torch.rand(1, 3, 60, 84) * 1.2 - 0.1  # some pixels outside [0, 1]: clipped as when saved
    assert whole_and_tiled_gradient_error(network, _terms(config), content, [style], point) < 1e-4


def whole_and_tiled_gradient_error(network, terms, content, styles, point) -> float:
    """Evaluate ``terms`` (styles weighted equally, content layer ``relu2_2``) at ``point`` over
    the whole image and over tiles of a 16-px core with a 12-px halo (targets from tiles too);
    check that each loss and the total agree to 1e-5 and return the gradients' relative difference."""
    weights = [1 / len(styles)] * len(styles)
    with torch.no_grad():
        for term in terms.values():
            term.set_content_targets(network(content))
            term.set_style_targets([network(style) for style in styles], weights)
    whole_point = point.clone().requires_grad_(True)
    image = whole_point.clamp(0, 1)
    features = network(image)
    whole_losses = {name: term.weight * term(image, features) for name, term in terms.items()}
    sum(whole_losses.values()).backward()

    tiles = TiledEvaluator(network, core=16, halo=12, strides=STRIDES)
    for term in terms.values():
        term.set_content_targets(tiles.whole_maps(content, ["relu2_2"]))
    statistics = [tiles.summed_statistics(style, terms) for style in styles]
    for name, term in terms.items():
        if term.layers:
            term.set_style_statistics([s[name] for s in statistics], weights)
    tiled_point = point.clone().requires_grad_(True)
    total, losses = tiles.objective(terms)(tiled_point)
    total.backward()

    assert len(tiles.grids_used[0]) >= 12
    for name, value in whole_losses.items():
        assert float(losses[name]) == pytest.approx(float(value.detach()), rel=1e-5), name
    assert float(total.detach()) == pytest.approx(float(sum(whole_losses.values()).detach()), rel=1e-5)
    return float((tiled_point.grad - whole_point.grad).norm() / whole_point.grad.norm())


def test_network_cost_is_measured_per_layer():
    network = build_vgg("vgg16", build_vgg_layers("vgg16").state_dict(), layers=("relu1_1", "relu3_1", "relu5_1"))
    cost = measure_network(network, ("relu3_1",), torch.device("cpu"))
    assert cost.strides == {"relu1_1": 1, "relu3_1": 4, "relu5_1": 16} and cost.align == 16
    assert 1500 < cost.train_bytes_per_pixel < 4000  # VGG-16 to relu5_1 keeps ~2 KB per pixel
    assert cost.target_bytes_per_pixel == pytest.approx(256 * 4 / 16)


def test_memory_plan_whole_when_it_fits_else_the_largest_tiles_that_do():
    cost = NetworkCost(train_bytes_per_pixel=2000, target_bytes_per_pixel=32, strides={"relu5_1": 16, "relu1_1": 1})
    small = plan_memory((384, 512), (384, 512), budget=4 * 2**30, cost=cost, history=50)
    assert not small.tiled and small.history == 50 and small.estimate <= 4 * 2**30
    huge = plan_memory((3000, 4000), (3000, 4000), budget=int(4.5 * 2**30), cost=cost, history=3)
    assert huge.tiled and huge.core % 16 == 0 and huge.halo == 48 and huge.history == 3
    assert huge.estimate <= 4.5 * 2**30
    larger_budget = plan_memory((3000, 4000), (3000, 4000), budget=8 * 2**30, cost=cost, history=3)
    assert larger_budget.core > huge.core
    squeezed = plan_memory((2000, 3000), (2000, 3000), budget=2 * 2**30, cost=cost, history=50)
    assert squeezed.tiled and 3 <= squeezed.history < 50
    with pytest.raises(ConfigError, match="a 4000x3000 result.*raise max_memory") as raised:
        plan_memory((3000, 4000), (3000, 4000), budget=2**30, cost=cost, history=3)
    assert "raise --max-memory or lower --size" in raised.value.render(lambda name: "--" + name.replace("_", "-"))


def test_large_outputs_are_found_small_and_refined_at_each_doubling():
    stages = plan_stages((3000, 4000), Config())
    assert [(s.label, s.iterations) for s in stages] == [
        ("500x375", 50), ("1000x750", 10), ("2000x1500", 5), ("4000x3000", 3)]
    assert [s.label for s in plan_stages((768, 1024), Config())] == ["1024x768"]
    assert len(plan_stages((3000, 4000), Config(scales=2))) == 2  # an explicit ladder is kept


def test_a_run_over_its_memory_budget_is_tiled_and_ends_close_to_a_whole_run(random_weights, small_pair):
    content, style = small_pair
    config = Config(size=128, iterations=4, memory_format="contiguous", **SHALLOW)
    whole = stylize(content, [style], config=config)
    recorder = Recorder()
    tiled = stylize(content, [style], config=config.replace(max_memory=16 * 2**20), plugins=[recorder])
    assert whole.info["tiling"] == "none" and tiled.info["tiling"].endswith("px halo")
    assert tiled.image.shape == whole.image.shape == (96, 128, 3)
    assert any("does not fit" in notice and "tiles" in notice for notice in recorder.notices)
    tile_events = [p for p in recorder.progress if p.tiles]
    assert tile_events and all(0 < p.tile <= p.tiles for p in tile_events)
    assert [p.step for p in recorder.progress if not p.tiles] == [1, 2, 3, 4]
    assert tiled.losses["total"] == pytest.approx(whole.losses["total"], rel=0.05)
    assert np.abs(tiled.image - whole.image).mean() < 0.02


def test_cancel_between_tiles_keeps_the_start_image(random_weights, small_pair):
    class CancelAtFirstTile(Recorder):
        @hookimpl
        def nst_should_cancel(self, progress):
            return True if progress.tiles else None

    recorder = CancelAtFirstTile()
    config = Config(size=128, iterations=4, memory_format="contiguous", max_memory=16 * 2**20, **SHALLOW)
    result = stylize(small_pair[0], [small_pair[1]], config=config, plugins=[recorder])
    assert result.cancelled and result.steps == 0 and result.image.shape == (96, 128, 3)
    assert len([p for p in recorder.progress if p.tiles]) == 1


def test_a_budget_too_small_for_one_tile_is_a_clear_error(random_weights, small_pair):
    with pytest.raises(ConfigError, match="not enough memory for a 128x96 result.*raise max_memory or lower size"):
        stylize(small_pair[0], [small_pair[1]], config=Config(size=128, iterations=1, max_memory=16 * 2**20))


def test_a_term_that_reads_features_without_statistics_cannot_be_tiled():
    class Opaque:
        layers = ("relu1_1",)

    check_tileable({"tv": type("TV", (), {"layers": ()})()})
    with pytest.raises(ConfigError, match="'opaque' cannot be computed in tiles"):
        check_tileable({"opaque": Opaque()})


def test_content_and_style_terms_give_the_same_loss_from_statistics_as_directly():
    terms = _terms(Config(**SHALLOW))
    features = {name: torch.rand(1, 8, 6, 5) for name in STRIDES}
    for term in terms.values():
        if term.layers:
            term.set_content_targets({name: torch.rand(1, 8, 6, 5) for name in STRIDES})
            term.set_style_targets([{name: torch.rand(1, 8, 6, 5) for name in STRIDES}], [1.0])
            direct = term(torch.rand(1, 3, 12, 10), features)
            assert torch.allclose(term.loss_from_statistics(term.partial_statistics(features, WHOLE)), direct)


@pytest.mark.parametrize("convolution", ["standard", "winograd"])
def test_cli_max_memory_tiles_and_reports_tiles_in_json(random_weights, small_files, tmp_path, convolution):
    if convolution == "winograd" and not winograd.available(torch.device("cpu")):
        pytest.skip("this PyTorch has no NNPACK")
    output = tmp_path / "tiled.png"
    proc = run_cli("run", *small_files, "-o", output, "--size", 128, "-n", 2, "--progress", "json",
                   "--max-memory", "16M", "--content-layers", "relu2_2", "--style-layers", "relu1_1,relu2_1",
                   "--convolution", convolution)  # NNPACK's workspace is counted, but as what this size needs
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert any(e["event"] == "progress" and e["tiles"] > 0 and 0 < e["tile"] <= e["tiles"] for e in events)
    assert events[-1]["event"] == "done" and events[-1]["info"]["tiling"] != "none"
    assert output.is_file()
    message = one_line_error(run_cli("run", *small_files, "-o", output, "--max-memory", "lots"), 2)
    assert "--max-memory" in message and "4G" in message


def test_tiles_work_with_colour_modes_alpha_and_a_time_budget(random_weights, small_pair, tmp_path):
    from PIL import Image

    from nst_core import stylize_files

    content = tmp_path / "rgba.png"
    rgba = np.dstack([small_pair[0], np.linspace(0, 1, small_pair[0].shape[1])[None, :].repeat(24, 0)])
    Image.fromarray((rgba * 255).round().astype(np.uint8), "RGBA").save(content)
    style = tmp_path / "style.png"
    Image.fromarray((small_pair[1] * 255).round().astype(np.uint8)).save(style)
    for mode, budget in (("luminance", 8.0), ("histogram", None)):  # a budget runs until it is spent
        output = tmp_path / f"{mode}.png"
        config = Config(size=128, iterations=2, memory_format="contiguous", max_memory=16 * 2**20,
                        preserve_color=mode, time_budget=budget, **SHALLOW)
        result = stylize_files(content, [style], output, config=config)
        assert result.info["tiling"] != "none" and result.steps >= 1
        saved = np.asarray(Image.open(output))
        assert saved.shape == (96, 128, 4)
        assert abs(saved[..., 3].astype(float).mean() / 255 - 0.5) < 0.05  # the ramp came back
