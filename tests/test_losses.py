import contextlib

import torch
import torch.nn.functional as F

from nst_core import losses
from nst_core.losses import (
    ContentLoss,
    StyleLoss,
    content_loss,
    gram_matrix,
    grams_as_computed,
    style_loss,
    total_variation,
)


def test_gram_matrix_is_an_average_of_outer_products():
    features = torch.randn(1, 4, 5, 6)
    flat = features.reshape(4, 30)
    assert torch.allclose(gram_matrix(features)[0], flat @ flat.T / 30, atol=1e-5)


def test_gram_matrix_of_channels_last_features_agrees_and_keeps_their_layout():
    features = torch.rand(2, 5, 7, 6, dtype=torch.float64)
    last = features.contiguous(memory_format=torch.channels_last).requires_grad_(True)
    first = features.clone().requires_grad_(True)
    assert torch.allclose(gram_matrix(last), gram_matrix(first), atol=1e-12)
    gram_matrix(last).square().sum().backward()
    gram_matrix(first).square().sum().backward()
    assert torch.allclose(last.grad, first.grad, atol=1e-12)
    assert last.grad.is_contiguous(memory_format=torch.channels_last)


def test_gram_normalization_same_texture_at_two_sizes_gives_close_style_loss():
    torch.manual_seed(0)
    tile = torch.randn(1, 8, 16, 16)
    small, large = tile.repeat(1, 1, 2, 2), tile.repeat(1, 1, 6, 6)  # the same texture, 9× the pixels
    other = torch.randn(1, 8, 40, 40) * 2
    loss_small = style_loss(gram_matrix(small), gram_matrix(other))
    loss_large = style_loss(gram_matrix(large), gram_matrix(other))
    assert torch.isclose(loss_small, loss_large, rtol=1e-4)
    assert loss_small > 0.1


def test_relative_losses_do_not_depend_on_activation_scale():
    torch.manual_seed(1)
    a, b = torch.randn(1, 6, 9, 9), torch.randn(1, 6, 9, 9)
    for scale in (1e-3, 1e4):  # torchvision-scale vs Caffe-scale activations
        assert torch.isclose(content_loss(a * scale, b * scale), content_loss(a, b), rtol=1e-4)
        assert torch.isclose(
            style_loss(gram_matrix(a * scale), gram_matrix(b * scale)), style_loss(gram_matrix(a), gram_matrix(b)), rtol=1e-4
        )
    assert content_loss(a, a) == 0


def test_total_variation_zero_for_flat_and_larger_for_noise():
    flat = torch.full((1, 3, 8, 8), 0.5)
    assert total_variation(flat) == 0
    ramp = torch.linspace(0, 1, 8).view(1, 1, 1, 8).expand(1, 3, 8, 8)
    noise = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    assert 0 < total_variation(ramp) < total_variation(noise)


def test_style_blend_averages_gram_targets():
    a = {"relu1_1": torch.randn(1, 3, 4, 4)}
    b = {"relu1_1": torch.randn(1, 3, 4, 4)}
    term = StyleLoss(("relu1_1",), weight=1.0, layer_weights=None)
    term.set_style_targets([a, b], [0.25, 0.75])
    expected = 0.25 * gram_matrix(a["relu1_1"]) + 0.75 * gram_matrix(b["relu1_1"])
    assert torch.allclose(term.targets["relu1_1"], expected)
    # the loss is zero only at the blend, not at either style alone
    assert term(torch.zeros(1), a) > 0 and term(torch.zeros(1), b) > 0


def test_style_layer_weights_are_normalized_and_used():
    feats = {"l1": torch.randn(1, 2, 3, 3), "l2": torch.randn(1, 2, 3, 3)}
    targets = {"l1": torch.randn(1, 2, 3, 3), "l2": torch.randn(1, 2, 3, 3)}
    only_l1 = StyleLoss(("l1", "l2"), weight=1.0, layer_weights=(3.0, 0.0))
    only_l1.set_style_targets([targets], [1.0])
    expected = style_loss(gram_matrix(feats["l1"]), gram_matrix(targets["l1"]))
    assert torch.isclose(only_l1(torch.zeros(1), feats), expected)


def test_content_term_gradient_points_to_target():
    target = {"relu4_2": torch.randn(1, 4, 3, 3)}
    term = ContentLoss(("relu4_2",), weight=1.0)
    term.set_content_targets(target)
    x = torch.zeros(1, 4, 3, 3, requires_grad=True)
    term(torch.zeros(1), {"relu4_2": x}).backward()
    # a small step against the gradient brings x closer to the target
    closer = x.detach() - 0.1 * x.grad
    assert F.mse_loss(closer, target["relu4_2"]) < F.mse_loss(x.detach(), target["relu4_2"])


def _network_and_image():
    from nst_core.features import FeatureExtractor, build_vgg_layers, vgg_layer_names

    torch.manual_seed(0)
    network = FeatureExtractor(build_vgg_layers("vgg16"), vgg_layer_names("vgg16"), ["relu1_1", "relu2_1", "relu3_1"])
    return network, torch.rand(1, 3, 40, 48)


def _style_gradient(network, image, targets, *, early: bool):
    point = image.clone().requires_grad_(True)
    context = grams_as_computed(network, targets) if early else contextlib.nullcontext()
    with context:
        features = network(point)
        grams = {name: gram_matrix(features[name]) for name in targets}
    sum(style_loss(grams[name], target) for name, target in targets.items()).backward()
    return grams, features, point.grad


def test_a_gram_matrix_taken_as_the_network_runs_is_the_same_and_back_propagated_when_needed():
    network, image = _network_and_image()
    with torch.no_grad():
        targets = {name: gram_matrix(f) for name, f in network(image.flip(-1)).items()}
    late_grams, late_features, late_gradient = _style_gradient(network, image, targets, early=False)
    early_grams, early_features, early_gradient = _style_gradient(network, image, targets, early=True)
    assert torch.equal(early_gradient, late_gradient)
    assert all(torch.equal(early_grams[name], late_grams[name]) for name in targets)
    order = {name: early_grams[name].grad_fn._sequence_nr() for name in targets}
    # autograd runs the latest node first: the Gram of relu1_1 now comes before relu2_1's layer in
    # creation, so its backward runs after that layer's, just when relu1_1's gradient is needed
    assert order["relu1_1"] < early_features["relu2_1"].grad_fn._sequence_nr() < order["relu2_1"]
    assert late_grams["relu1_1"].grad_fn._sequence_nr() > late_features["relu3_1"].grad_fn._sequence_nr()


def test_grams_are_taken_early_only_for_the_named_layers_and_only_with_gradients():
    network, image = _network_and_image()
    with grams_as_computed(network, {"relu2_1"}):
        with torch.no_grad():
            untracked = network(image)
        features = network(image.clone().requires_grad_(True))
        taken = {id(pair[0]) for pair in losses._EARLY_GRAMS.get().values()}
        assert gram_matrix(features["relu2_1"]) is gram_matrix(features["relu2_1"])  # taken once
    assert id(features["relu2_1"]) in taken and id(features["relu1_1"]) not in taken
    assert id(untracked["relu2_1"]) not in taken
    assert not any(module._forward_hooks for module in network.modules())  # the hooks are removed
    assert losses._EARLY_GRAMS.get() is None  # and the Gram matrices let go
