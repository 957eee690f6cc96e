import dataclasses

import pytest

from nst_core import Config, ConfigError


def test_defaults_are_the_papers_layers():
    config = Config()
    assert config.content_layers == ("relu4_2",)
    assert config.style_layers == ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
    assert config.pooling == "avg"


def test_config_is_frozen_and_keyword_only():
    config = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.size = 10
    with pytest.raises(TypeError):
        Config(512)


def test_replace_validates():
    assert Config().replace(iterations=7).iterations == 7
    with pytest.raises(ConfigError):
        Config().replace(iterations=0)


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"size": 8}, "size must be at least 16"),
        ({"size": 1.5}, "size must be a whole number"),
        ({"style_weight": -1.0}, "style_weight must be at least 0"),
        ({"tv_weight": float("nan")}, "tv_weight must be a finite number"),
        ({"pooling": "median"}, "pooling must be one of avg, max"),
        ({"optimizer": "sgd"}, "optimizer must be one of"),
        ({"precision": "int8"}, "precision must be one of"),
        ({"iterations": True}, "iterations must be a whole number"),
        ({"style_layers": "relu1_1"}, "style_layers must be a sequence"),
        ({"style_layers": ("relu1_1", "relu1_1")}, "lists a layer twice"),
        ({"content_layers": (), "style_layers": ()}, "at least one content or style layer"),
        ({"style_layer_weights": (1.0, 2.0)}, "2 values for 5 style layers"),
        ({"style_blend": (0.0, 0.0)}, "at least one positive value"),
        ({"init": "image"}, "needs init_image"),
        ({"learning_rate": 0.0}, "learning_rate must be between"),
    ],
)
def test_invalid_values_are_one_line_errors(changes, words):
    with pytest.raises(ConfigError) as info:
        Config(**changes)
    assert words in str(info.value)
    assert "\n" not in str(info.value)


def test_sequences_become_tuples_and_extra_is_read_only():
    config = Config(style_layers=["relu1_1", "relu2_1"], style_blend=[1, 3], extra={"a": 1})
    assert config.style_layers == ("relu1_1", "relu2_1")
    assert config.style_blend == (1.0, 3.0)
    with pytest.raises(TypeError):
        config.extra["a"] = 2
