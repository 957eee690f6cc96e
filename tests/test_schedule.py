"""Coarse-to-fine plans and the time-budget clock (a fake clock: no timed tests)."""

import pytest

from nst_core import Config
from nst_core.config import PRESETS, preset_config
from nst_core.errors import ConfigError
from nst_core.records import Progress
from nst_core.schedule import MAX_BUDGET_SCALES, BudgetClock, Stage, plan_stages, remaining_seconds, scales_for_budget

from .test_cli import config_of


def test_sizes_halve_towards_the_start_and_end_at_the_output():
    stages = plan_stages((384, 512), Config(scales=3, iterations=40, coarse_iterations=70))
    assert [stage.hw for stage in stages] == [(96, 128), (192, 256), (384, 512)]
    assert [stage.iterations for stage in stages] == [70, 70, 40]
    assert [stage.number for stage in stages] == [1, 2, 3]


def test_sizes_too_small_to_mean_anything_are_dropped():
    assert [s.hw for s in plan_stages((75, 100), Config(scales=3))] == [(75, 100)]
    assert [s.hw for s in plan_stages((150, 200), Config(scales=4))] == [(75, 100), (150, 200)]
    assert len(plan_stages((384, 512), Config(scales=1))) == 1


def test_presets_are_configs_and_explicit_settings_win():
    for name in PRESETS:
        assert isinstance(preset_config(name), Config)
    assert preset_config("balanced") == Config(iterations=40, init="instant")
    assert all(preset_config(name).init == "instant" for name in PRESETS)  # measured over pairs
    assert preset_config("preview", iterations=7).iterations == 7
    assert preset_config("best").iterations > preset_config("preview").iterations
    with pytest.raises(ConfigError, match="preset"):
        preset_config("fastest")


@pytest.mark.parametrize("field, value", [("scales", 0), ("coarse_iterations", 0), ("time_budget", 0),
                                          ("time_budget", float("nan")), ("precision", "int8"),
                                          ("memory_format", "nhwc")])
def test_bad_plan_settings_are_config_errors(field, value):
    with pytest.raises(ConfigError, match=field):
        Config(**{field: value})


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_budget_shares_are_equal_and_steps_stop_in_time():
    stages = (Stage(1, (10, 10), 100), Stage(2, (20, 20), 50))
    clock = FakeClock()
    budget = BudgetClock(30.0, clock.now, stages, clock=clock)
    budget.start_stage(stages[0])
    assert budget.stage_deadline == pytest.approx(115.0)  # half of the 30 s: two stages left
    steps = 0
    while True:
        clock.now += 1.0  # each step takes 1 s
        steps += 1
        if budget.step_done():
            break
    assert steps == 15  # fifteen 1-s steps fit in the 15-s share; a 16th would end late
    assert budget.affordable(stages[1])  # set-up + a step: 2 × 1.6 × 4 s = 12.8 s of the 15 s left
    budget.start_stage(stages[1])
    assert budget.step_seconds == pytest.approx(4.0)  # pace scaled by the pixel ratio
    assert budget.stage_deadline == pytest.approx(130.0)  # the last stage gets all that is left
    clock.now = 120.0
    assert not budget.affordable(Stage(3, (40, 40), 10))  # 2 × 1.6 × 16 s estimated, 10 s left
    assert budget.left() == pytest.approx(10.0)


def test_a_budget_already_spent_still_allows_the_first_step_only():
    stages = (Stage(1, (10, 10), 10), Stage(2, (20, 20), 10))
    clock = FakeClock()
    budget = BudgetClock(1.0, clock.now, stages, clock=clock)
    clock.now += 5.0  # set-up took longer than the budget
    budget.start_stage(stages[0])
    clock.now += 0.5
    assert budget.step_done() is True
    assert not budget.affordable(stages[1])


def test_remaining_time_weighs_later_steps_by_their_pixels():
    stages = (Stage(1, (10, 10), 10), Stage(2, (20, 20), 5))
    assert remaining_seconds(stages, stages[0], 4, 0.5) == pytest.approx(6 * 0.5 + 5 * 0.5 * 4)
    assert remaining_seconds(stages, stages[1], 5, 2.0) == 0


def test_progress_fraction_goes_by_time_when_the_time_left_is_known():
    by_steps = Progress(step=10, total=20, losses={"total": 1.0}, elapsed=5.0)
    by_time = Progress(step=10, total=20, losses={"total": 1.0}, elapsed=5.0, remaining=15.0)
    assert by_steps.fraction == 0.5 and by_steps.eta == pytest.approx(5.0)
    assert by_time.fraction == pytest.approx(0.25) and by_time.eta == 15.0
    assert by_time.as_dict()["fraction"] == 0.25


def test_a_small_budget_adds_coarser_sizes_until_the_first_gets_enough_steps():
    # 1 s per step on 256x192; a 1024x768 step then costs about 16 s
    probe = dict(step_seconds=1.0, step_pixels=256 * 192)
    assert scales_for_budget(1024 * 768, 16 * 25, **probe) == 1  # 25 full-size steps fit
    assert scales_for_budget(1024 * 768, 60, **probe) == 3  # 256x192 gets 20 s: 20 steps
    assert scales_for_budget(1024 * 768, 5, **probe) == MAX_BUDGET_SCALES
    assert scales_for_budget(256 * 192, 30, **probe) == 1


def test_the_commands_start_image_follows_the_preset_unless_the_user_names_one():
    def init_of(*options):
        return config_of(*options).init

    assert init_of() == "instant"  # every preset: measured over 6 pairs (README, Speed)
    assert init_of("--preset", "best") == "instant"
    assert init_of("--init", "content") == "content"
    assert init_of("--init-image", "start.png") == "image"  # was ignored behind the preset's start
