"""The engine end to end with a random-weight VGG-16 on 32-px images."""

import numpy as np
import pytest
from PIL import Image

from nst_core import Config, ConfigError, InputError, stylize, stylize_files
from nst_core.image import load_image

from .test_plugins import Recorder

FAST = dict(size=32, iterations=5)


def test_output_has_the_requested_size(random_weights, small_pair):
    content, style = small_pair
    result = stylize(content, [style], config=Config(**FAST))
    assert result.image.shape == (24, 32, 3) and result.image.dtype == np.float32
    assert 0.0 <= result.image.min() and result.image.max() <= 1.0
    assert result.steps == 5 and result.info["model"] == "vgg16"
    kept = stylize(content, [style], config=Config(size=None, iterations=1))
    assert kept.image.shape == content.shape


def test_optimization_lowers_the_loss(random_weights, small_pair):
    totals = []

    class Listener:
        from nst_core import hookimpl

        @hookimpl
        def nst_progress(self, progress):
            totals.append(progress.losses["total"])

    stylize(small_pair[0], [small_pair[1]], config=Config(size=32, iterations=20), plugins=[Listener()])
    assert totals[-1] < 0.8 * totals[0]


def test_same_seed_same_bytes_other_seed_other_image(random_weights, small_pair):
    config = Config(init="noise", seed=3, **FAST)
    first = stylize(small_pair[0], [small_pair[1]], config=config).image
    second = stylize(small_pair[0], [small_pair[1]], config=config).image
    other = stylize(small_pair[0], [small_pair[1]], config=config.replace(seed=4)).image
    assert first.tobytes() == second.tobytes()
    assert not np.array_equal(first, other)


def test_several_styles_blend_and_blend_length_is_checked(random_weights, small_pair):
    content, style = small_pair
    flipped = style[::-1].copy()
    one = stylize(content, [style], config=Config(**FAST)).image
    two = stylize(content, [style, flipped], config=Config(style_blend=(0.2, 0.8), **FAST)).image
    assert not np.array_equal(one, two)
    with pytest.raises(ConfigError, match="3 weights for 2 style images"):
        stylize(content, [style, flipped], config=Config(style_blend=(1, 1, 1), **FAST))


def test_init_from_image(random_weights, small_pair, tmp_path):
    start = tmp_path / "start.png"
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(start)
    result = stylize(small_pair[0], [small_pair[1]], config=Config(init="image", init_image=str(start), size=32, iterations=1))
    assert result.image.max() < 0.05  # one evaluation: the best image is the (resized, black) start


def test_bad_arrays_are_input_errors(random_weights, small_pair):
    with pytest.raises(InputError, match="H×W×3"):
        stylize(small_pair[0][..., 0], [small_pair[1]], config=Config(**FAST))
    with pytest.raises(InputError, match="at least one style"):
        stylize(small_pair[0], [], config=Config(**FAST))


def test_files_in_file_out_keeps_alpha(random_weights, small_files, tmp_path):
    content, style = small_files
    rgba = np.zeros((24, 32, 4), np.uint8)
    rgba[..., :3] = np.asarray(Image.open(content))
    rgba[..., 3] = 255
    rgba[:, :10, 3] = 0  # a transparent band on the left
    Image.fromarray(rgba, "RGBA").save(content)
    output = tmp_path / "out.png"
    result = stylize_files(content, [style], output, config=Config(size=64, iterations=2))
    written = load_image(output)
    assert written.rgb.shape == (48, 64, 3)
    assert written.alpha is not None
    assert written.alpha[:, :16].max() < 0.1 and written.alpha[:, 24:].min() > 0.9
    assert result.alpha is not None


def test_output_may_not_be_an_input_and_nothing_is_touched(random_weights, small_files):
    content, style = small_files
    before = content.read_bytes(), style.read_bytes()
    for target in (content, style):
        with pytest.raises(InputError, match="refusing to overwrite input file"):
            stylize_files(content, [style], target, config=Config(**FAST))
    assert (content.read_bytes(), style.read_bytes()) == before


def test_missing_output_folder_fails_before_any_work(random_weights, small_files, tmp_path):
    content, style = small_files
    with pytest.raises(InputError, match="does not exist"):
        stylize_files(content, [style], tmp_path / "nowhere" / "out.png", config=Config(**FAST))


def test_sixteen_bit_content_gives_sixteen_bit_output(random_weights, small_pair, small_files, tmp_path):
    from nst_core.image import save_image

    content16 = tmp_path / "content16.png"
    save_image(content16, small_pair[0], bit_depth=16)
    output = tmp_path / "out16.png"
    stylize_files(content16, [small_files[1]], output, config=Config(**FAST))
    assert load_image(output).bit_depth == 16


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_a_run_does_not_import_torch_dynamo(random_weights, optimizer):
    """torch.optim's optimizers import torch._dynamo (seconds of start-up); ours must not."""
    import subprocess
    import sys

    code = (
        "import sys, numpy as np\n"
        "from nst_core import Config, stylize\n"
        "image = np.random.default_rng(0).random((16, 16, 3), dtype=np.float32)\n"
        f"stylize(image, [image], config=Config(size=16, iterations=3, optimizer={optimizer!r}))\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


def test_an_output_that_cannot_be_written_fails_before_any_step(random_weights, small_files, tmp_path):
    content, style = small_files
    steps = []

    class Listener:
        from nst_core import hookimpl

        @hookimpl
        def nst_progress(self, progress):
            steps.append(progress.step)

    with pytest.raises(InputError, match="unsupported file type '.xyz'"):
        stylize_files(content, [style], tmp_path / "out.xyz", config=Config(**FAST), plugins=[Listener()])
    rgba = tmp_path / "rgba.png"
    Image.new("RGBA", (32, 24), (10, 20, 30, 128)).save(rgba)
    with pytest.raises(InputError, match="JPEG has no alpha channel"):
        stylize_files(rgba, [style], tmp_path / "out.jpg", config=Config(**FAST), plugins=[Listener()])
    assert steps == []


def test_coarse_to_fine_runs_each_size_in_turn(random_weights, small_pair):
    content, style = small_pair
    recorder = Recorder()
    config = Config(size=128, scales=2, coarse_iterations=3, iterations=2, optimizer="adam")
    result = stylize(content, [style], config=config, plugins=[recorder])
    assert result.image.shape == (96, 128, 3) and result.steps == 5
    assert [(p.scale, p.size) for p in recorder.progress] == [(1, "64x48")] * 3 + [(2, "128x96")] * 2
    assert [p.step for p in recorder.progress] == [1, 2, 3, 4, 5]
    assert all(p.total == 5 and p.scales == 2 and p.remaining is not None for p in recorder.progress)
    assert recorder.progress[-1].remaining == 0
    assert any("64x48 → 128x96" in notice for notice in recorder.notices)
    assert result.info["scales"] == "64x48 128x96"
    single = stylize(content, [style], config=config.replace(scales=1, iterations=5))
    assert not np.array_equal(single.image, result.image)


def test_a_spent_time_budget_still_returns_an_image_at_the_output_size(random_weights, small_pair):
    recorder = Recorder()
    config = Config(size=128, scales=2, time_budget=0.1, memory_format="contiguous")
    result = stylize(small_pair[0], [small_pair[1]], config=config, plugins=[recorder])
    assert result.image.shape == (96, 128, 3)
    assert result.steps == 1 and not result.cancelled  # one step at 64x48, then no time for 128x96
    assert any("time budget" in notice and "upscaled from 64x48" in notice for notice in recorder.notices)


def test_the_chosen_precision_and_layout_are_reported(random_weights, small_pair):
    recorder = Recorder()
    result = stylize(small_pair[0], [small_pair[1]], config=Config(**FAST), plugins=[recorder])
    assert result.info["precision"] == "fp32" or result.info["precision"] == "bf16"
    assert result.info["memory_format"] in ("contiguous", "channels_last")
    assert any(notice.startswith("network runs in ") and "per step" in notice for notice in recorder.notices)
