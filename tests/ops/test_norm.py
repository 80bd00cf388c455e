"""Normalization in eval mode: batch/instance/layer/group/RMS norm, weight norm, and their variables."""

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.parametrizations import weight_norm

import unigraph as ug
from tests.ops.harness import Case, T, channels_last, params, random_tensor, run_case, run_node

aten = torch.ops.aten

# Norms reduce over many elements; float32 summation order differs from torch's.
TOL = {"rtol": 1e-4, "atol": 1e-5}
HALF = {"rtol": 2e-2, "atol": 2e-2}


def _trained(module: nn.Module) -> nn.Module:
    """``module`` with random affine parameters and running statistics, as after training."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, t in list(module.named_parameters()) + list(module.named_buffers()):
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=generator) + 0.5)
            elif t.is_floating_point():
                t.copy_(torch.randn(t.shape, generator=generator))
    return module


class _Cast(nn.Module):
    def __init__(self, dtype):
        super().__init__()
        self.dtype = dtype

    def forward(self, x):
        return x.to(self.dtype)


def _in(dtype, module):
    """``module`` in ``dtype``, fed the float32 input cast to ``dtype``."""
    return nn.Sequential(_Cast(dtype), module.to(dtype))


X = T((2, 3, 8))
X2 = T((2, 4, 5, 6))

CASES = [
    # batch norm with running statistics (eval)
    Case("batch_norm1d", _trained(nn.BatchNorm1d(3)), [X], ("batch_norm",), **TOL),
    Case("batch_norm1d_features", _trained(nn.BatchNorm1d(3)), [T((4, 3))], ("batch_norm",), **TOL),
    Case("batch_norm2d", _trained(nn.BatchNorm2d(4)), [X2], ("batch_norm",), **TOL),
    Case("batch_norm3d", _trained(nn.BatchNorm3d(2, eps=1e-3)), [T((2, 2, 3, 4, 5))], ("batch_norm",), **TOL),
    Case("batch_norm2d_no_affine", _trained(nn.BatchNorm2d(4, affine=False)), [X2], ("batch_norm",), **TOL),
    Case("batch_norm2d_bfloat16", _in(torch.bfloat16, _trained(nn.BatchNorm2d(4))), [X2], ("batch_norm",), **HALF),
    Case("batch_norm2d_float16", _in(torch.float16, _trained(nn.BatchNorm2d(4))), [X2], ("batch_norm",), **HALF),
    # batch norm with the input's statistics
    Case("batch_norm_untracked", _trained(nn.BatchNorm2d(4, track_running_stats=False)), [X2], ("batch_norm",), **TOL),
    Case("batch_norm_functional_training", lambda x: F.batch_norm(x, None, None, training=True), [X2], ("batch_norm",), **TOL),
    Case("aten_batch_norm_no_stats", lambda x: aten._native_batch_norm_legit.no_stats(x, None, None, True, 0.1, 1e-5), [X2], ("batch_norm",), **TOL),
    Case("aten_batch_norm_no_training", lambda x, m, v: aten._native_batch_norm_legit_no_training(x, None, None, m, v, 0.1, 1e-5)[0], [X2, T((4,)), T((4,), low=0.5, high=2)], ("batch_norm",), dynamic=False, **TOL),
    Case("aten_native_batch_norm", lambda x, w, m, v: aten.native_batch_norm(x, w, None, m, v, False, 0.1, 1e-5), [X2, T((4,)), T((4,)), T((4,), low=0.5, high=2)], ("batch_norm",), dynamic=False, **TOL),
    # instance norm: own statistics (group norm with C groups) or running ones
    Case("instance_norm2d", nn.InstanceNorm2d(4), [X2], ("group_norm",), **TOL),
    Case("instance_norm2d_affine", _trained(nn.InstanceNorm2d(4, affine=True)), [X2], ("group_norm",), **TOL),
    Case("instance_norm1d_running", _trained(nn.InstanceNorm1d(3, track_running_stats=True)), [X], ("batch_norm",), **TOL),
    # layer norm
    Case("layer_norm", _trained(nn.LayerNorm(8)), [X], ("layer_norm",), **TOL),
    Case("layer_norm_2d", _trained(nn.LayerNorm((3, 8), eps=1e-6)), [X], ("layer_norm",), **TOL),
    Case("layer_norm_no_affine", nn.LayerNorm(8, elementwise_affine=False), [X], ("layer_norm",), **TOL),
    Case("layer_norm_no_bias", _trained(nn.LayerNorm(8, bias=False)), [X], ("layer_norm",), **TOL),
    Case("layer_norm_bfloat16", _in(torch.bfloat16, _trained(nn.LayerNorm(8))), [X], ("layer_norm",), **HALF),
    Case("aten_native_layer_norm", lambda x, w: aten.native_layer_norm(x, [3, 8], w, None, 1e-5), [X, T((3, 8))], ("layer_norm",), dynamic=False, **TOL),
    # group norm
    Case("group_norm", _trained(nn.GroupNorm(2, 4)), [X2], ("group_norm",), **TOL),
    Case("group_norm_one_group", nn.GroupNorm(1, 4, affine=False), [X2], ("group_norm",), **TOL),
    Case("group_norm_1d", _trained(nn.GroupNorm(3, 3)), [X], ("group_norm",), **TOL),
    Case("group_norm_bfloat16", _in(torch.bfloat16, _trained(nn.GroupNorm(2, 4))), [X2], ("group_norm",), **HALF),
    Case("aten_native_group_norm", lambda x: aten.native_group_norm(x, None, None, 2, 4, 30, 2, 1e-5), [X2], ("group_norm",), dynamic=False, **TOL),
    # RMS norm; eps=None is float32's machine epsilon, also for half inputs
    Case("rms_norm", _trained(nn.RMSNorm(8)), [X], ("rms_norm",), **TOL),
    Case("rms_norm_2d_eps", _trained(nn.RMSNorm((3, 8), eps=1e-3)), [X], ("rms_norm",), **TOL),
    Case("rms_norm_no_affine", nn.RMSNorm(8, elementwise_affine=False), [T((2, 3, 8), low=-1e-3, high=1e-3)], ("rms_norm",), **TOL),
    Case("rms_norm_bfloat16_tiny", _in(torch.bfloat16, nn.RMSNorm(8)), [T((2, 3, 8), low=-1e-3, high=1e-3)], ("rms_norm",), **HALF),
    Case("rms_norm_float16", _in(torch.float16, _trained(nn.RMSNorm(8))), [X], ("rms_norm",), **HALF),
    Case("aten_fused_rms_norm", lambda x: aten._fused_rms_norm(x, [8], None, None), [X], ("rms_norm",), **TOL),
    # weight norm (wav2vec2's positional conv: dim=2)
    Case("weight_norm_conv1d", weight_norm(nn.Conv1d(4, 6, 3, groups=2)), [T((2, 4, 9))], ("weight_norm", "conv"), **TOL),
    Case("weight_norm_conv1d_dim2", weight_norm(nn.Conv1d(4, 4, 5, padding=2, groups=2), dim=2), [T((2, 4, 9))], ("weight_norm", "conv"), **TOL),
    Case("weight_norm_linear_all_dims", weight_norm(nn.Linear(4, 3), dim=None), [T((2, 4))], ("weight_norm",), **TOL),
    Case("aten_weight_norm_interface", lambda v, g: aten._weight_norm_interface(v, g, 0), [T((4, 3, 2)), T((4, 1, 1))], ("weight_norm",), dynamic=False, **TOL),
]


@pytest.mark.parametrize("case", params(CASES))
def test_norm(case):
    run_case(case)


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, bias=False)
        self.bn = _trained(nn.BatchNorm2d(4))
        self.ln = _trained(nn.LayerNorm(4))

    def forward(self, x):
        return self.ln(self.bn(self.conv(x)).mean((2, 3)))


def test_norm_variables_have_flax_names_and_collections():
    model = _Net().eval()
    conv = ug.from_torch(model, (torch.randn(2, 3, 6, 6),))
    params, stats = conv.variables["params"], conv.variables["batch_stats"]
    np.testing.assert_array_equal(params["bn"]["scale"], model.bn.weight.detach().numpy())
    np.testing.assert_array_equal(params["bn"]["bias"], model.bn.bias.detach().numpy())
    np.testing.assert_array_equal(stats["bn"]["mean"], model.bn.running_mean.numpy())
    np.testing.assert_array_equal(stats["bn"]["var"], model.bn.running_var.numpy())
    np.testing.assert_array_equal(params["ln"]["scale"], model.ln.weight.detach().numpy())
    assert conv.param_map.by_source("bn.running_var").role == "var"
    assert conv.param_map.by_source("ln.weight").role == "scale"


# ---- the torch backend's lowerings on graphs built directly (channels-last and other paths torch graphs never take) ----

_BF16, _F16 = torch.bfloat16, torch.float16
_VAR = (torch.rand(4, generator=torch.Generator().manual_seed(1)) + 0.5)
NODE_CASES = {  # id: (op, inputs, attributes and options)
    # batch norm over the last axis (Keras), running or own statistics, with the statistics it used
    "batch_norm_channels_last": ("batch_norm", [channels_last(random_tensor(2, 4, 5, 6)), random_tensor(4), random_tensor(4), random_tensor(4), _VAR], {"epsilon": 1e-3, "axis": -1, "export": True}),
    "batch_norm_channels_last_stats": ("batch_norm", [channels_last(random_tensor(2, 4, 5, 6)), random_tensor(4), None, random_tensor(4), _VAR], {"epsilon": 1e-3, "axis": 3, "return_stats": True}),
    "batch_norm_own_stats_channels_last": ("batch_norm", [channels_last(random_tensor(2, 4, 5, 6)), random_tensor(4), random_tensor(4), None, None], {"epsilon": 1e-3, "axis": -1, "return_stats": True, "export": True}),
    "batch_norm_own_stats": ("batch_norm", [random_tensor(3, 4, 5), None, random_tensor(4), None, None], {"epsilon": 1e-5, "return_stats": True}),
    "batch_norm_features_own_stats": ("batch_norm", [random_tensor(5, 4), random_tensor(4), random_tensor(4), None, None], {"epsilon": 1e-5}),
    "batch_norm_bfloat16_float_stats": ("batch_norm", [channels_last(random_tensor(2, 4, 5, 6, dtype=_BF16)), random_tensor(4), random_tensor(4), random_tensor(4), _VAR], {"epsilon": 1e-3, "axis": -1, "return_stats": True, "rtol": 2e-2, "atol": 2e-2}),
    "batch_norm_float16_own_stats": ("batch_norm", [random_tensor(2, 4, 5, 6, dtype=_F16), random_tensor(4, dtype=_F16), random_tensor(4, dtype=_F16), None, None], {"epsilon": 1e-3, "return_stats": True, "rtol": 2e-2, "atol": 2e-2}),
    # layer and RMS norms over axes that are not the trailing ones, with their statistics
    "layer_norm_channel_axis": ("layer_norm", [random_tensor(2, 4, 5, 6), random_tensor(4), random_tensor(4)], {"axes": (1,), "epsilon": 1e-5, "export": True}),
    "layer_norm_spatial_axes_stats": ("layer_norm", [random_tensor(2, 4, 5, 6), random_tensor(4, 6), None], {"axes": (-1, 1), "epsilon": 1e-5, "return_stats": True}),
    "layer_norm_trailing_stats": ("layer_norm", [random_tensor(2, 4, 5, 6), random_tensor(5, 6), random_tensor(5, 6)], {"axes": (2, 3), "epsilon": 1e-5, "return_stats": True, "export": True}),
    "layer_norm_bfloat16_stats": ("layer_norm", [random_tensor(2, 4, 6, dtype=_BF16), random_tensor(6, dtype=_BF16), random_tensor(6, dtype=_BF16)], {"axes": (-1,), "epsilon": 1e-5, "return_stats": True, "rtol": 2e-2, "atol": 2e-2}),
    "rms_norm_channel_axis": ("rms_norm", [random_tensor(2, 4, 5, 6), random_tensor(4)], {"axes": (1,), "epsilon": 1e-6}),
    "rms_norm_stats": ("rms_norm", [random_tensor(2, 4, 5, 6), random_tensor(5, 6)], {"axes": (2, 3), "epsilon": 1e-6, "return_stats": True, "export": True}),
    "rms_norm_spatial_axes_stats": ("rms_norm", [random_tensor(2, 4, 5, 6), None], {"axes": (1, 3), "epsilon": 1e-6, "return_stats": True}),
    "rms_norm_bfloat16_stats": ("rms_norm", [random_tensor(2, 4, 6, dtype=_BF16), random_tensor(6, dtype=_BF16)], {"axes": (-1,), "epsilon": 1e-6, "return_stats": True, "rtol": 2e-2, "atol": 2e-2}),
    # group norm in Keras's layout, with its statistics
    "group_norm_channels_last": ("group_norm", [channels_last(random_tensor(2, 4, 5, 6)), random_tensor(4), random_tensor(4)], {"groups": 2, "epsilon": 1e-5, "channels_last": True, "export": True}),
    "group_norm_channels_last_stats": ("group_norm", [channels_last(random_tensor(2, 6, 7)), None, random_tensor(6)], {"groups": 3, "epsilon": 1e-5, "channels_last": True, "return_stats": True}),
    "group_norm_stats": ("group_norm", [random_tensor(2, 4, 2, 3, 2), random_tensor(4), random_tensor(4)], {"groups": 4, "epsilon": 1e-5, "return_stats": True, "export": True}),
    "group_norm_bfloat16_channels_last_stats": ("group_norm", [channels_last(random_tensor(2, 4, 5, 6, dtype=_BF16)), random_tensor(4, dtype=_BF16), random_tensor(4, dtype=_BF16)], {"groups": 2, "epsilon": 1e-5, "channels_last": True, "return_stats": True, "rtol": 2e-2, "atol": 2e-2}),
    # weight norm: the norm over all axes, a negative axis, the norm returned
    "weight_norm_all_axes": ("weight_norm", [random_tensor(4, 3, 2), random_tensor()], {"axis": None, "dynamic": False}),
    "weight_norm_last_axis_norm": ("weight_norm", [random_tensor(4, 3, 2), random_tensor(1, 1, 2)], {"axis": -1, "return_norm": True, "dynamic": False}),
    "weight_norm_bfloat16_norm": ("weight_norm", [random_tensor(4, 3, 2, dtype=_BF16), random_tensor(4, 1, 1, dtype=_BF16)], {"axis": 0, "return_norm": True, "dynamic": False, "rtol": 2e-2, "atol": 2e-2}),
    "weight_norm_vector": ("weight_norm", [random_tensor(5), random_tensor(5)], {"axis": 0, "return_norm": True, "dynamic": False}),
}


@pytest.mark.parametrize("case", sorted(NODE_CASES))
def test_norm_node_in_torch(case):
    op, inputs, options = NODE_CASES[case]
    run_node(op, inputs, **{"rtol": 1e-4, "atol": 1e-5, **options})
