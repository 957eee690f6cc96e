import pytest
import torch
import torchvision

from nst_core import ConfigError
from nst_core.features import build_vgg, build_vgg_layers, vgg_conv_shapes, vgg_layer_names


def test_layer_names_match_torchvision_indices():
    for model, factory in (("vgg16", torchvision.models.vgg16), ("vgg19", torchvision.models.vgg19)):
        names = vgg_layer_names(model)
        reference = factory(weights=None).features
        assert len(names) == len(reference)
        for name, module in zip(names, reference):
            kind = {"Conv2d": "conv", "ReLU": "relu", "MaxPool2d": "pool"}[type(module).__name__]
            assert name.startswith(kind)
        assert vgg_conv_shapes(model) == {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    assert vgg_layer_names("vgg16")[:5] == ("conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1")
    assert vgg_layer_names("vgg19")[-1] == "pool5" and "relu5_4" in vgg_layer_names("vgg19")


def _state(model):
    torch.manual_seed(0)
    return build_vgg_layers(model).state_dict()


def test_network_is_cut_after_the_deepest_requested_layer():
    extractor = build_vgg("vgg16", _state("vgg16"), layers=["relu1_1", "relu3_1"])
    assert extractor.layer_names[-1] == "relu3_1"
    assert len(extractor.layers) == vgg_layer_names("vgg16").index("relu3_1") + 1
    features = extractor(torch.rand(1, 3, 32, 32))
    assert set(features) == {"relu1_1", "relu3_1"}
    assert features["relu3_1"].shape == (1, 256, 8, 8)


def test_conv_and_its_relu_can_both_be_read():
    extractor = build_vgg("vgg16", _state("vgg16"), layers=["conv1_1", "relu1_1"])
    features = extractor(torch.rand(1, 3, 16, 16))
    assert (features["conv1_1"] < 0).any()  # not clobbered by an in-place ReLU
    assert torch.equal(features["relu1_1"], features["conv1_1"].clamp(min=0))


def test_average_pooling_by_default_and_max_on_request():
    avg = build_vgg("vgg16", _state("vgg16"), layers=["pool1"])
    mx = build_vgg("vgg16", _state("vgg16"), layers=["pool1"], pooling="max")
    assert isinstance(avg.layers[-1], torch.nn.AvgPool2d)
    assert isinstance(mx.layers[-1], torch.nn.MaxPool2d)


def test_extractor_is_frozen_and_in_eval_mode():
    extractor = build_vgg("vgg19", _state("vgg19"), layers=["relu5_1"])
    assert not extractor.training
    assert not any(p.requires_grad for p in extractor.parameters())
    image = torch.rand(1, 3, 32, 32, requires_grad=True)
    extractor(image)["relu5_1"].sum().backward()
    assert image.grad is not None and image.grad.abs().sum() > 0


def test_unknown_layer_lists_the_valid_ones():
    with pytest.raises(ConfigError) as info:
        build_vgg("vgg16", _state("vgg16"), layers=["relu4_2", "relu5_4"])
    message = str(info.value)
    assert "'relu5_4'" in message and "relu5_3" in message and "conv1_1" in message
    assert "\n" not in message
