"""Winograd's convolutions (NNPACK): the same results as PyTorch's, chosen only by measurement."""

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nst_core import Config, ConfigError, precision, stylize, winograd
from nst_core.device import check_convolution
from nst_core.features import build_vgg, build_vgg_layers
from nst_core.frozen_layers import MaskReLU, OutputKeptReLU
from nst_core.memory import measure_network, plan_memory

from .test_cli import config_of

CPU = torch.device("cpu")
needs_nnpack = pytest.mark.skipif(not winograd.available(CPU), reason="this PyTorch has no NNPACK")


def relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    return float((value - reference).norm() / reference.norm())


@needs_nnpack
def test_forward_and_input_gradient_match_pytorchs_convolution():
    generator = torch.Generator().manual_seed(0)
    image = torch.rand((1, 8, 40, 48), generator=generator)
    weight = torch.randn((16, 8, 3, 3), generator=generator) * 0.2
    bias = torch.randn(16, generator=generator)
    upstream = torch.randn((1, 16, 40, 48), generator=generator)

    def output_and_gradient(conv):
        point = image.clone().requires_grad_(True)
        out = conv(point, weight, bias)
        (out * upstream).sum().backward()
        return out.detach(), point.grad

    fast, fast_grad = output_and_gradient(winograd.conv3x3)
    plain, plain_grad = output_and_gradient(lambda x, w, b: F.conv2d(x, w, b, padding=1))
    assert relative_error(fast, plain) < 1e-4 and relative_error(fast_grad, plain_grad) < 1e-4
    assert not torch.equal(fast, plain)  # it did run another algorithm: rounding differs


@needs_nnpack
def test_nnpack_is_initialized_before_its_first_convolution():
    # a fresh process that converts a network without asking whether NNPACK is available first
    code = ("import torch; from torch import nn; from nst_core.winograd import with_winograd; "
            "net = with_winograd(nn.Conv2d(3, 4, 3, padding=1).requires_grad_(False)); "
            "print(float(net(torch.ones(1, 3, 40, 40)).abs().sum()) > 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "True", proc.stderr[-2000:]


def test_small_images_and_trainable_weights_take_pytorchs_convolution():
    weight = torch.randn(4, 3, 3, 3)
    small = torch.rand(1, 3, 16, 16)  # 256 pixels < MIN_PIXELS
    assert torch.equal(winograd.conv3x3(small, weight, None), F.conv2d(small, weight, None, padding=1))
    # its input gradient too, while keeping only the weights
    upstream = torch.randn(1, 4, 16, 16)
    point, reference = small.clone().requires_grad_(True), small.clone().requires_grad_(True)
    (winograd.conv3x3(point, weight, None) * upstream).sum().backward()
    (F.conv2d(reference, weight, None, padding=1) * upstream).sum().backward()
    assert relative_error(point.grad, reference.grad) < 1e-6
    large = torch.rand(1, 3, 40, 40)
    trained = weight.clone().requires_grad_(True)
    out = winograd.conv3x3(large, trained, None)
    out.sum().backward()  # a weight gradient, which the Winograd path does not compute
    assert trained.grad is not None and torch.equal(out.detach(), F.conv2d(large, weight, None, padding=1))


@needs_nnpack
def test_with_winograd_converts_a_copy_and_shares_the_weights():
    conv = nn.Conv2d(3, 8, 3, padding=1).requires_grad_(False)
    net = nn.Sequential(conv, nn.ReLU(), nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 8, 1)))
    net.requires_grad_(False)
    converted = winograd.with_winograd(net)
    assert isinstance(net[0], nn.Conv2d) and isinstance(net[2][0], nn.Conv2d)  # the original is unchanged
    assert isinstance(converted[0], winograd.WinogradConv2d) and converted[0].weight is conv.weight
    assert isinstance(converted[2][0], winograd.WinogradConv2d)
    assert converted[2][1] is net[2][1]  # a 1x1 convolution is not converted
    assert type(net[1]) is nn.ReLU and isinstance(converted[1], MaskReLU)  # nor is the original's ReLU
    image = torch.rand(1, 3, 48, 40)
    assert relative_error(converted(image), net(image)) < 1e-4
    with pytest.raises(ValueError, match="3x3"):
        winograd.WinogradConv2d(nn.Conv2d(3, 8, 3, stride=2, padding=1))


@needs_nnpack
def test_relus_whose_output_a_loss_reads_keep_pytorchs_backward():
    torch.manual_seed(0)
    extractor = build_vgg("vgg16", build_vgg_layers("vgg16").state_dict(), layers=["relu1_1", "relu2_1"])
    converted = winograd.with_winograd(extractor)
    kinds = {name: type(layer) for name, layer in zip(converted.layer_names, converted.layers) if "relu" in name}
    # the requested outputs are kept by the loss anyway; the others keep a one-byte mask
    assert kinds == {"relu1_1": OutputKeptReLU, "relu1_2": MaskReLU, "relu2_1": OutputKeptReLU}
    image = torch.rand(1, 3, 40, 36)
    upstream = {name: torch.randn_like(f) for name, f in extractor(image).items()}
    grads = []
    for net in (extractor, converted):
        point = image.clone().requires_grad_(True)
        features = net(point)
        sum((features[name] * upstream[name]).sum() for name in upstream).backward()
        grads.append(point.grad)
    assert relative_error(grads[1], grads[0]) < 1e-3


def test_the_setting_is_checked():
    with pytest.raises(ConfigError, match="convolution must be one of auto, standard, winograd"):
        Config(convolution="fft")
    with pytest.raises(ConfigError, match="winograd runs in fp32 only"):
        Config(convolution="winograd", precision="bf16")
    with pytest.raises(ConfigError, match="only on a CPU with NNPACK"):
        check_convolution("winograd", torch.device("meta"))
    check_convolution("standard", torch.device("meta"))


@needs_nnpack
def test_auto_times_winograd_only_in_fp32_on_the_contiguous_layout(monkeypatch, isolated_env):
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2", "amx_bf16"}))
    triples, _ = precision.candidates("auto", "auto", CPU, "auto")
    assert [t for t in triples if t[2] == "winograd"] == [("fp32", "contiguous", "winograd")]
    assert precision.candidates("auto", "auto", CPU, "winograd")[0] == [
        ("fp32", "contiguous", "winograd"), ("fp32", "channels_last", "winograd")]  # no bf16 with NNPACK
    assert all(t[2] == "standard" for t in precision.candidates("auto", "auto", CPU, "standard")[0])
    assert all(t[2] == "standard" for t in precision.candidates("bf16", "auto", CPU, "auto")[0])

    calls = []

    def probe(precision_name, layout, convolution):
        calls.append((precision_name, layout, convolution))
        return 0.5 if convolution == "winograd" else 1.0

    choice = precision.choose("fp32", "auto", CPU, probe=probe, cache_key="k", requested_convolution="auto")
    assert (choice.precision, choice.memory_format, choice.convolution, choice.label) == (
        "fp32", "contiguous", "winograd", "fp32, winograd")
    assert "fp32/contiguous/winograd 500 ms" in choice.reason and len(calls) == 3
    again = precision.choose("fp32", "auto", CPU, probe=probe, cache_key="k", requested_convolution="auto")
    assert again.convolution == "winograd" and len(calls) == 3  # remembered

    def marginal(precision_name, layout, convolution):
        return 0.9 if convolution == "winograd" else 1.0

    kept = precision.choose("fp32", "auto", CPU, probe=marginal, cache_key="m", requested_convolution="auto")
    assert kept.convolution == "standard"  # 1.1x is within MIN_GAIN


def test_the_memory_plan_counts_nnpacks_workspace_once():
    class Network(nn.Sequential):
        def forward(self, image):
            return {"out": super().forward(image)}

    network = Network(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Conv2d(8, 16, 3, padding=1))
    plain = measure_network(network, ("out",), CPU, side=32)
    with_workspace = measure_network(network, ("out",), CPU, side=32, max_workspace_bytes=winograd.MAX_WORKSPACE)
    assert with_workspace.train_bytes_per_pixel == plain.train_bytes_per_pixel
    # the larger of the two calls' needs (8×8 tiles of 64 floats per 6×6 outputs, in and out channels)
    largest = max(winograd.workspace_bytes((1, 3, 32, 32), 8), winograd.workspace_bytes((1, 8, 16, 16), 16))
    assert with_workspace.workspace_bytes_per_pixel == pytest.approx(largest / 32**2)
    for hw, expected in (((96, 128), with_workspace.workspace(96 * 128)), ((3000, 4000), winograd.MAX_WORKSPACE)):
        whole = plan_memory(hw, hw, budget=2**40, cost=plain, history=5)
        counted = plan_memory(hw, hw, budget=2**40, cost=with_workspace, history=5)
        assert counted.estimate - whole.estimate == expected
    assert 0 < with_workspace.workspace(96 * 128) < winograd.MAX_WORKSPACE  # a small image needs little


@needs_nnpack
def test_a_run_with_winograd_reaches_what_a_standard_run_reaches(random_weights, small_pair):
    content, style = small_pair
    results = {
        convolution: stylize(content, [style], config=Config(size=48, iterations=4, convolution=convolution,
                                                             memory_format="contiguous"))
        for convolution in ("standard", "winograd")
    }
    assert results["winograd"].info["convolution"] == "winograd"
    assert results["standard"].info["convolution"] == "standard"
    standard, fast = (results[c].losses["total"] for c in ("standard", "winograd"))
    assert fast == pytest.approx(standard, rel=1e-3)
    assert abs(results["winograd"].image - results["standard"].image).max() < 1e-2


def test_the_command_line_sets_the_convolution():
    assert config_of().convolution == "auto"
    assert config_of("--convolution", "standard").convolution == "standard"
    assert config_of("--preset", "preview", "--convolution", "winograd").convolution == "winograd"


@needs_nnpack
@pytest.mark.parametrize("hw", [(40, 48), (37, 44)])
def test_a_call_too_large_for_the_workspace_is_computed_in_bands(monkeypatch, hw):
    generator = torch.Generator().manual_seed(2)
    image = torch.rand((1, 8, *hw), generator=generator)
    weight = torch.randn((16, 8, 3, 3), generator=generator) * 0.2
    bias = torch.randn(16, generator=generator)
    whole = winograd.conv3x3(image, weight, bias)
    needed = winograd.workspace_bytes(image.shape, 16)
    monkeypatch.setattr(winograd, "MAX_WORKSPACE", needed // 3)  # three bands
    point = image.clone().requires_grad_(True)
    banded = winograd.conv3x3(point, weight, bias)
    (banded * whole).sum().backward()
    reference = image.clone().requires_grad_(True)
    plain = F.conv2d(reference, weight, bias, padding=1)
    (plain * whole).sum().backward()
    assert relative_error(banded.detach(), plain.detach()) < 1e-4 and relative_error(point.grad, reference.grad) < 1e-4
    assert relative_error(banded.detach(), whole) < 1e-5  # the bands meet without seams
