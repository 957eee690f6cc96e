"""ReLU and average pooling that keep only what their backward reads: same values, less memory."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nst_core import winograd
from nst_core.frozen_layers import (
    AveragePool2x2,
    MaskReLU,
    average_pool_2x2,
    frozen_layer,
    is_average_pool_2x2,
    relu_keeping_mask,
)


def value_and_gradient(function, x: torch.Tensor, upstream: torch.Tensor):
    point = x.clone().requires_grad_(True)
    out = function(point * 1.0)  # a non-leaf, as in a network (in place is refused on a leaf)
    (out * upstream).sum().backward()
    return out.detach(), point.grad


@pytest.mark.parametrize("inplace", [False, True])
def test_relu_keeping_mask_gives_relus_values_and_gradient(inplace):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn((2, 3, 9, 7), generator=generator)
    x[0, 0, 0, :3] = 0.0  # exact zeros get no gradient, as with torch.relu
    upstream = torch.randn((2, 3, 9, 7), generator=generator)
    ours = value_and_gradient(lambda t: relu_keeping_mask(t, inplace=inplace), x, upstream)
    reference = value_and_gradient(torch.relu, x, upstream)
    assert torch.equal(ours[0], reference[0]) and torch.equal(ours[1], reference[1])


@pytest.mark.parametrize("hw", [(8, 10), (9, 7)])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_average_pool_gives_pytorchs_values_and_gradient(hw, layout):
    generator = torch.Generator().manual_seed(1)
    x = torch.randn((1, 4, *hw), generator=generator).contiguous(memory_format=layout)
    upstream = torch.randn((1, 4, hw[0] // 2, hw[1] // 2), generator=generator)
    ours = value_and_gradient(average_pool_2x2, x, upstream)
    reference = value_and_gradient(lambda t: F.avg_pool2d(t, 2, 2), x, upstream)
    assert torch.equal(ours[0], reference[0])
    assert torch.allclose(ours[1], reference[1], atol=1e-7)  # odd sides: the last row/column gets none


def test_only_what_is_computed_the_same_is_swapped():
    assert isinstance(frozen_layer(nn.ReLU(inplace=True)), MaskReLU) and frozen_layer(nn.ReLU(True)).inplace
    assert isinstance(frozen_layer(nn.AvgPool2d(2)), AveragePool2x2)
    assert isinstance(frozen_layer(nn.AvgPool2d((2, 2), stride=2)), AveragePool2x2)
    for kept in (nn.AvgPool2d(2, ceil_mode=True), nn.AvgPool2d(3, 2), nn.AvgPool2d(2, 1), nn.MaxPool2d(2),
                 nn.AvgPool2d(2, padding=1), nn.ReLU6(), nn.LeakyReLU()):
        assert frozen_layer(kept) is kept and not is_average_pool_2x2(nn.MaxPool2d(2))


def saved_bytes(network: nn.Module, image: torch.Tensor) -> int:
    """Bytes autograd keeps for the backward pass of ``network(image)`` (distinct storages)."""
    kept: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        kept[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        network(image.clone().requires_grad_(True))
    return sum(kept.values())


@pytest.mark.skipif(not winograd.available(torch.device("cpu")), reason="this PyTorch has no NNPACK")
def test_a_network_with_winograds_convolutions_keeps_a_fraction_for_backward():
    torch.manual_seed(0)
    network = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
                            nn.AvgPool2d(2), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU()).requires_grad_(False)
    converted = winograd.with_winograd(network)
    image = torch.rand(1, 3, 64, 64)
    upstream = torch.randn(1, 32, 32, 32)
    ours = value_and_gradient(converted, image, upstream)
    reference = value_and_gradient(network, image, upstream)
    assert (ours[0] - reference[0]).norm() / reference[0].norm() < 1e-4
    assert (ours[1] - reference[1]).norm() / reference[1].norm() < 1e-4
    # PyTorch's keep every ReLU output (as the next layer's input) and the image; these keep a byte
    # per ReLU value and the weights
    before, after = saved_bytes(network, image), saved_bytes(converted, image)
    activations = 4 * 64 * 64 * (16 + 16) + 4 * 32 * 32 * 32
    assert before >= activations and after <= activations / 4 + 4 * sum(p.numel() for p in network.parameters())
