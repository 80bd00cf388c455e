"""Convolutions: conv1d/2d/3d and transposed convs in every torch spelling, and their Flax kernels."""

import jax
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import unigraph as ug
from tests.ops.harness import Case, T, channels_last, params, random_tensor, run_case, run_node
from unigraph.ops import REGISTRY

aten = torch.ops.aten

# Convolutions sum many products; float32 summation order differs from torch's.
TOL = {"rtol": 1e-4, "atol": 1e-5}
HALF = {"rtol": 2e-2, "atol": 2e-2}

X1 = T((2, 4, 11))
X2 = T((2, 4, 9, 8))
X3 = T((2, 2, 5, 6, 7))


def _half(dtype, module):
    """``module`` in ``dtype``, fed a float32 input cast to ``dtype`` (the harness passes float32)."""
    return nn.Sequential(_Cast(dtype), module.to(dtype))


class _Cast(nn.Module):
    def __init__(self, dtype):
        super().__init__()
        self.dtype = dtype

    def forward(self, x):
        return x.to(self.dtype)


CASES = [
    # dense, strided, dilated, grouped, depthwise, no bias
    Case("conv1d", nn.Conv1d(4, 6, 3), [X1], ("conv",), **TOL),
    Case("conv1d_stride_pad", nn.Conv1d(4, 6, 4, stride=3, padding=2), [X1], ("conv",), **TOL),
    Case("conv2d", nn.Conv2d(4, 6, 3, padding=1), [X2], ("conv",), **TOL),
    Case("conv2d_rect", nn.Conv2d(4, 6, (1, 3), stride=(2, 1), padding=(0, 2)), [X2], ("conv",), **TOL),
    Case("conv2d_stride2", nn.Conv2d(4, 6, 3, stride=2), [X2], ("conv",), **TOL),
    Case("conv2d_dilated", nn.Conv2d(4, 6, 3, dilation=(2, 3), padding=2), [X2], ("conv",), **TOL),
    Case("conv2d_grouped", nn.Conv2d(4, 6, 3, groups=2), [X2], ("conv",), **TOL),
    Case("conv2d_depthwise", nn.Conv2d(4, 8, 3, groups=4, padding=1), [X2], ("conv",), **TOL),
    Case("conv2d_no_bias", nn.Conv2d(4, 6, 1, bias=False), [X2], ("conv",), **TOL),
    # pointwise (1x1, stride 1, no padding) is lowered as a matmul over channels
    Case("pointwise1d", nn.Conv1d(4, 6, 1), [X1], ("conv",), **TOL),
    Case("pointwise3d_unbatched", nn.Conv3d(2, 3, 1), [T((2, 5, 6, 7))], ("conv",), dynamic=False, **TOL),
    Case("pointwise_strided", nn.Conv2d(4, 6, 1, stride=(2, 3)), [X2], ("conv",), **TOL),
    Case("patches_vit", nn.Conv2d(4, 6, 4, stride=4), [T((2, 4, 12, 8))], ("conv",), **TOL),
    Case("patches_crop_rect", nn.Conv2d(4, 6, (2, 3), stride=(2, 3), bias=False), [X2], ("conv",), **TOL),
    Case("patches1d_unbatched", nn.Conv1d(4, 6, 2, stride=2), [T((4, 11))], ("conv",), dynamic=False, **TOL),
    Case("pointwise_float16", _half(torch.float16, nn.Conv2d(4, 6, 1)), [X2], ("conv",), **HALF),
    # depthwise (groups = input channels) is lowered as a sum of strided windows: every window shape
    Case("depthwise1d_multiplier", nn.Conv1d(4, 12, 5, groups=4, padding=1), [X1], ("conv",), **TOL),
    Case("depthwise2d_7x7", nn.Conv2d(4, 4, 7, groups=4, padding=3), [T((2, 4, 12, 10))], ("conv",), **TOL),
    Case("depthwise2d_stride_dilation", nn.Conv2d(4, 4, (3, 2), stride=(2, 3), dilation=(2, 1), groups=4, padding=(2, 1)), [X2], ("conv",), **TOL),
    Case("depthwise2d_asymmetric_pad", nn.Sequential(nn.ZeroPad2d((0, 1, 1, 0)), nn.Conv2d(4, 4, 3, stride=2, groups=4, bias=False)), [X2], ("pad", "conv"), **TOL),
    Case("depthwise3d", nn.Conv3d(2, 4, (3, 1, 2), stride=(1, 2, 1), groups=2, padding=(1, 0, 1)), [X3], ("conv",), **TOL),
    Case("depthwise_unbatched", nn.Conv2d(4, 8, 3, groups=4), [T((4, 9, 8))], ("conv",), dynamic=False, **TOL),
    Case("depthwise_float16", _half(torch.float16, nn.Conv2d(4, 4, 5, groups=4, padding=2)), [X2], ("conv",), **HALF),
    Case("depthwise_over_max_taps", nn.Conv2d(4, 4, 13, groups=4, padding=6), [T((2, 4, 14, 13))], ("conv",), **TOL),
    Case("conv3d", nn.Conv3d(2, 3, 3, padding=(0, 1, 2)), [X3], ("conv",), **TOL),
    Case("conv3d_stride_groups", nn.Conv3d(2, 4, (1, 2, 3), stride=(1, 2, 2), groups=2), [X3], ("conv",), **TOL),
    # padding conventions: strings, even kernels, asymmetric through F.pad
    Case("same_even_kernel", nn.Conv2d(4, 6, (4, 2), padding="same"), [X2], ("conv",), **TOL),
    Case("same_dilated", nn.Conv1d(4, 6, 4, padding="same", dilation=3), [X1], ("conv",), **TOL),
    Case("valid_string", lambda x, w: F.conv2d(x, w, padding="valid"), [X2, T((6, 4, 2, 3))], ("conv",), dynamic=False, **TOL),
    Case("asymmetric_pad", nn.Sequential(nn.ZeroPad2d((0, 1, 2, 0)), nn.Conv2d(4, 6, 3, stride=2)), [X2], ("pad", "conv"), **TOL),
    # inputs: unbatched, weights that are activations, dtypes
    Case("unbatched_conv1d", nn.Conv1d(4, 6, 3), [T((4, 11))], ("conv",), dynamic=False, **TOL),
    Case("unbatched_conv2d", nn.Conv2d(4, 6, 3), [T((4, 9, 8))], ("conv",), dynamic=False, **TOL),
    Case("weight_is_input", lambda x, w, b: F.conv2d(x, w, b, groups=2), [X2, T((6, 2, 3, 3)), T((6,))], ("conv", "transpose"), dynamic=False, **TOL),
    Case("conv2d_float16", _half(torch.float16, nn.Conv2d(4, 6, 3)), [X2], ("conv",), **HALF),
    Case("conv2d_bfloat16", _half(torch.bfloat16, nn.Conv2d(4, 6, 3)), [X2], ("conv",), **HALF),
    Case("aten_convolution", lambda x, w: aten.convolution(x, w, None, [2, 1], [1, 0], [1, 2], False, [0, 0], 2), [X2, T((6, 2, 3, 3))], ("conv",), dynamic=False, **TOL),
    Case("aten__convolution", lambda x, w: aten._convolution(x, w, None, [1], [1], [1], False, [0], 1, False, False, True, True), [X1, T((6, 4, 3))], ("conv",), dynamic=False, **TOL),
    # transposed convolutions
    Case("conv_transpose1d", nn.ConvTranspose1d(4, 6, 3), [X1], ("conv_transpose",), **TOL),
    Case("conv_transpose1d_stride_outpad", nn.ConvTranspose1d(4, 6, 4, stride=3, padding=1, output_padding=2), [X1], ("conv_transpose",), **TOL),
    Case("conv_transpose2d", nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1), [X2], ("conv_transpose",), **TOL),
    Case("conv_transpose2d_groups", nn.ConvTranspose2d(4, 6, (2, 3), stride=(2, 1), groups=2, bias=False), [X2], ("conv_transpose",), **TOL),
    Case("conv_transpose2d_dilated", nn.ConvTranspose2d(4, 4, 3, stride=2, padding=2, output_padding=1, dilation=2, groups=4), [X2], ("conv_transpose",), **TOL),
    Case("conv_transpose2d_outpad_beyond_pad", nn.ConvTranspose2d(4, 2, 3, stride=3, padding=0, output_padding=2), [X2], ("conv_transpose",), **TOL),
    Case("conv_transpose3d", nn.ConvTranspose3d(2, 4, 2, stride=2, groups=2), [X3], ("conv_transpose",), **TOL),
    Case("conv_transpose_unbatched", nn.ConvTranspose1d(4, 6, 3, stride=2), [T((4, 11))], ("conv_transpose",), dynamic=False, **TOL),
    # im2col (nn.Unfold) has no op of its own: torch decomposes it into pad, gather and reshape
    Case("unfold_decomposed", nn.Unfold((2, 3), dilation=(1, 2), padding=1, stride=2), [X2], ()),
    Case("aten_convolution_transposed", lambda x, w: aten.convolution(x, w, None, [2, 2], [1, 1], [1, 1], True, [1, 0], 1), [X2, T((4, 3, 3, 3))], ("conv_transpose", "transpose"), dynamic=False, **TOL),
]


@pytest.mark.parametrize("case", params(CASES))
def test_conv(case):
    run_case(case)


def _jaxpr_text(module, x) -> str:
    conv = ug.from_torch(module.eval(), (x,))
    return str(jax.make_jaxpr(conv.module.apply)(conv.variables, x.numpy()))


def test_pointwise_patch_and_depthwise_convs_are_lowered_without_a_convolution():
    """XLA:CPU runs these several times slower as convolutions (bench/bench_conv.py)."""
    x = torch.randn(2, 4, 9, 8)
    assert "conv_general_dilated" not in _jaxpr_text(nn.Conv2d(4, 8, 1), x)
    assert "conv_general_dilated" not in _jaxpr_text(nn.Conv2d(4, 8, 1, stride=2), x)
    assert "conv_general_dilated" not in _jaxpr_text(nn.Conv2d(4, 8, 3, stride=3), x)  # patches
    assert "conv_general_dilated" in _jaxpr_text(nn.Conv2d(4, 8, 3, stride=2), x)  # overlapping windows
    assert "conv_general_dilated" not in _jaxpr_text(nn.Conv2d(4, 8, 3, groups=4), x)
    assert "conv_general_dilated" in _jaxpr_text(nn.Conv2d(4, 8, 3, groups=2), x)  # grouped, not depthwise
    assert "conv_general_dilated" in _jaxpr_text(nn.Conv2d(4, 4, 13, groups=4, padding=6), x)  # over _MAX_TAPS


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 6, (2, 3), groups=2)
        self.up = nn.ConvTranspose2d(6, 4, (3, 2), groups=2)

    def forward(self, x):
        return self.up(self.conv(x))


def test_conv_kernels_are_stored_in_flax_layout():
    model = _Net().eval()
    conv = ug.from_torch(model, (torch.randn(2, 4, 9, 8),))
    params = conv.variables["params"]
    weight = model.conv.weight.detach().numpy()  # (out, in/groups, kh, kw)
    np.testing.assert_array_equal(params["conv"]["kernel"], weight.transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(params["conv"]["bias"], model.conv.bias.detach().numpy())
    weight_t = model.up.weight.detach().numpy()  # (in, out/groups, kh, kw)
    np.testing.assert_array_equal(params["up"]["kernel"], weight_t.transpose(2, 3, 0, 1))
    entry = conv.param_map.by_source("conv.weight")
    assert (entry.role, entry.perm) == ("kernel", (2, 3, 1, 0))


LAYOUT_CASES = {  # op: (parameter shapes, attributes), for a (2, 4, 9, 7) input
    "conv": (((3, 2, 2, 6),), {"strides": (2, 1), "padding": ((1, 0), (2, 1)), "dilation": (1, 2), "groups": 2}),
    "conv_transpose": (((3, 2, 4, 3),), {"strides": (2, 1), "padding": ((1, 0), (0, -1)), "dilation": (1, 2), "groups": 2}),
    "max_pool": ((), {"window": (3, 2), "strides": (2, 1), "padding": ((1, 1), (0, 0)), "dilation": (1, 2), "ceil_mode": True, "return_indices": True}),
    "avg_pool": ((), {"window": (3, 2), "strides": (2, 2), "padding": ((1, 1), (1, 1)), "ceil_mode": True, "count_include_pad": False}),
    "adaptive_avg_pool": ((), {"output_size": (4, 3)}),
    "adaptive_max_pool": ((), {"output_size": (4, 3), "return_indices": True}),
    "group_norm": (((4,), (4,)), {"groups": 2, "epsilon": 1e-5}),
    "resize": ((), {"sizes": (11, 5), "method": "cubic", "align_corners": True}),
}


@pytest.mark.parametrize("name", sorted(LAYOUT_CASES))
def test_channels_last_matches_channels_first(name):
    """``channels_last=True`` (a Keras frontend's NHWC) computes the same op as the torch layout."""
    param_shapes, attrs = LAYOUT_CASES[name]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 9, 7)).astype(np.float32)
    weights = [rng.standard_normal(s).astype(np.float32) for s in param_shapes]
    lowering = REGISTRY[name].jax
    first = lowering(x, *weights, **attrs)
    last = lowering(np.moveaxis(x, 1, -1), *weights, channels_last=True, **attrs)
    for a, b in zip(*(o if isinstance(o, tuple) else (o,) for o in (first, last))):
        np.testing.assert_allclose(np.moveaxis(np.asarray(b), -1, 1), np.asarray(a), rtol=1e-5, atol=1e-5)


# ---- the torch backend's lowerings on graphs built directly (channels-last and other paths torch graphs never take) ----


NODE_CASES = {  # id: (op, inputs, attributes and options)
    # channels-last (Keras) convolutions: symmetric, "same" (asymmetric), negative padding
    "conv1d_channels_last": ("conv", [channels_last(random_tensor(2, 4, 11)), random_tensor(3, 4, 6), random_tensor(6)], {"strides": (2,), "padding": ((1, 1),), "dilation": (1,), "channels_last": True}),
    "conv2d_channels_last_same": ("conv", [channels_last(random_tensor(2, 4, 9, 8)), random_tensor(2, 3, 4, 6), random_tensor(6)], {"strides": (1, 1), "padding": ((0, 1), (1, 1)), "dilation": (1, 1), "channels_last": True, "export": True}),
    "conv2d_channels_last_groups": ("conv", [channels_last(random_tensor(2, 4, 9, 7)), random_tensor(3, 2, 2, 6), random_tensor(6)], {"strides": (2, 1), "padding": ((1, 0), (2, 1)), "dilation": (1, 2), "groups": 2, "channels_last": True}),
    "conv2d_channels_last_depthwise": ("conv", [channels_last(random_tensor(2, 4, 9, 8)), random_tensor(3, 3, 1, 4), None], {"strides": (2, 2), "padding": ((0, 1), (0, 1)), "dilation": (1, 1), "groups": 4, "channels_last": True}),
    "conv2d_channels_last_depthwise_multiplier": ("conv", [channels_last(random_tensor(2, 4, 9, 8)), random_tensor(3, 2, 1, 8), random_tensor(8)], {"strides": (1, 2), "padding": ((1, 1), (0, 1)), "dilation": (2, 1), "groups": 4, "channels_last": True}),
    "conv2d_depthwise_negative_padding": ("conv", [random_tensor(2, 4, 9, 8), random_tensor(2, 3, 1, 4), random_tensor(4)], {"strides": (1, 2), "padding": ((-1, 2), (3, -2)), "dilation": (1, 1), "groups": 4}),
    "conv2d_channels_last_pointwise": ("conv", [channels_last(random_tensor(2, 4, 9, 8)), random_tensor(1, 1, 4, 6), random_tensor(6)], {"strides": (1, 1), "padding": ((0, 0), (0, 0)), "dilation": (1, 1), "channels_last": True}),
    "conv2d_channels_last_patches": ("conv", [channels_last(random_tensor(2, 4, 9, 8)), random_tensor(3, 2, 4, 6), random_tensor(6)], {"strides": (3, 2), "padding": ((0, 0), (0, 0)), "dilation": (1, 1), "channels_last": True}),
    "conv2d_negative_padding": ("conv", [random_tensor(2, 4, 9, 8), random_tensor(2, 3, 4, 6), random_tensor(6)], {"strides": (1, 2), "padding": ((-1, 2), (3, -2)), "dilation": (1, 1)}),
    "conv3d_channels_last": ("conv", [channels_last(random_tensor(2, 2, 5, 6, 7)), random_tensor(2, 3, 2, 2, 4), random_tensor(4)], {"strides": (1, 2, 1), "padding": ((1, 0), (1, 1), (0, 2)), "dilation": (1, 1, 2), "channels_last": True}),
    "conv2d_channels_last_unbatched": ("conv", [random_tensor(9, 8, 4), random_tensor(3, 3, 4, 6), random_tensor(6)], {"strides": (1, 1), "padding": ((1, 1), (1, 1)), "dilation": (1, 1), "channels_last": True, "dynamic": False}),
    "conv2d_channels_last_float16": ("conv", [channels_last(random_tensor(2, 4, 9, 8, dtype=torch.float16)), random_tensor(3, 3, 4, 6, dtype=torch.float16), random_tensor(6, dtype=torch.float16)], {"strides": (1, 1), "padding": ((1, 1), (1, 1)), "dilation": (1, 1), "channels_last": True, "rtol": 2e-2, "atol": 2e-2}),
    # transposed convolutions: Flax (*k, in, out/groups) kernels, crops and extensions
    "conv_transpose2d_channels_last": ("conv_transpose", [channels_last(random_tensor(2, 4, 9, 7)), random_tensor(3, 2, 4, 3), random_tensor(6)], {"strides": (2, 1), "padding": ((1, 0), (0, -1)), "dilation": (1, 2), "groups": 2, "channels_last": True, "export": True}),
    "conv_transpose2d_channels_last_same": ("conv_transpose", [channels_last(random_tensor(2, 4, 5, 6)), random_tensor(3, 3, 4, 5), random_tensor(5)], {"strides": (2, 2), "padding": ((1, 0), (1, 0)), "dilation": (1, 1), "channels_last": True}),
    "conv_transpose1d_extend_both_ends": ("conv_transpose", [random_tensor(2, 4, 7), random_tensor(3, 4, 6), random_tensor(6)], {"strides": (2,), "padding": ((-2, -3),), "dilation": (1,)}),
    "conv_transpose1d_crop_start": ("conv_transpose", [random_tensor(2, 4, 7), random_tensor(3, 4, 6), random_tensor(6)], {"strides": (1,), "padding": ((2, 0),), "dilation": (1,)}),
    "conv_transpose3d_mixed_padding": ("conv_transpose", [random_tensor(2, 4, 5, 6, 3), random_tensor(2, 3, 2, 4, 6), None], {"strides": (2, 1, 3), "padding": ((1, -1), (0, 2), (-2, 0)), "dilation": (1, 2, 1)}),
    "conv_transpose1d_channels_last_unbatched": ("conv_transpose", [random_tensor(7, 4), random_tensor(3, 4, 6), random_tensor(6)], {"strides": (3,), "padding": ((0, -1),), "dilation": (2,), "channels_last": True, "dynamic": False}),
}


@pytest.mark.parametrize("case", sorted(NODE_CASES))
def test_conv_node_in_torch(case):
    op, inputs, options = NODE_CASES[case]
    run_node(op, inputs, **{"rtol": 1e-4, "atol": 1e-5, **options})
