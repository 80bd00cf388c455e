"""Pooling: max/avg pools with every torch flag, indices, and adaptive pools with uneven bins."""

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.export import Dim

import unigraph as ug
from tests.ops.harness import Case, T, channels_last, compare, params, random_tensor, run_case, run_node

aten = torch.ops.aten

X1 = T((2, 3, 10))
X2 = T((2, 3, 9, 8))
X3 = T((2, 2, 5, 6, 7))
INT = T((2, 3, 9, 8), "int32", low=-50, high=50)
# Averages sum several elements; float32 summation order differs from torch's.
TOL = {"rtol": 1e-5, "atol": 1e-6}
HALF = {"rtol": 1e-2, "atol": 1e-2}


def _values_and_indices(fn):
    """A module returning both outputs of a ``return_indices=True`` pool."""
    return lambda x: tuple(fn(x))


CASES = [
    # max pool: padding, dilation, ceil_mode, 1-d/3-d, unbatched, ints
    Case("max_pool2d", nn.MaxPool2d(2), [X2], ("max_pool",)),
    Case("max_pool2d_default_stride", lambda x: F.max_pool2d(x, 3), [X2], ("max_pool",)),
    Case("max_pool2d_resnet_stem", nn.MaxPool2d(3, 2, 1), [X2], ("max_pool",)),
    Case("max_pool2d_ceil", nn.MaxPool2d(3, 2, ceil_mode=True), [X2], ("max_pool",)),
    Case("max_pool2d_ceil_pad", nn.MaxPool2d(3, 2, 1, ceil_mode=True), [T((2, 3, 8, 8))], ("max_pool",)),
    Case("max_pool2d_dilated", nn.MaxPool2d((3, 2), (2, 1), (1, 1), dilation=(2, 3)), [X2], ("max_pool",)),
    Case("max_pool2d_dilated_ceil", nn.MaxPool2d(3, 2, 1, dilation=2, ceil_mode=True), [T((2, 3, 10, 9))], ("max_pool",)),
    Case("max_pool1d", nn.MaxPool1d(3, 2, 1, ceil_mode=True), [X1], ("max_pool",)),
    Case("max_pool3d", nn.MaxPool3d((1, 2, 3), padding=(0, 1, 1)), [X3], ("max_pool",)),
    Case("max_pool2d_unbatched", nn.MaxPool2d(2), [T((3, 9, 8))], ("max_pool",), dynamic=False),
    Case("max_pool2d_int", nn.MaxPool2d(3, 2, 1), [INT], ("max_pool",)),
    Case("max_pool2d_float16", lambda x: F.max_pool2d(x.half(), 3, 2, 1), [X2], ("max_pool",)),
    Case("max_pool2d_neg_inf_window", lambda x: F.max_pool2d(x - float("inf"), 2, 2, 1), [X2], ("max_pool",)),
    # max pool indices: flat spatial positions, first maximum on ties
    Case("max_pool2d_indices", _values_and_indices(lambda x: F.max_pool2d(x, 3, 2, 1, ceil_mode=True, return_indices=True)), [X2], ("max_pool",)),
    Case("max_pool2d_indices_ties", _values_and_indices(lambda x: F.max_pool2d(x.round(), 2, 1, return_indices=True)), [T((2, 3, 6, 6), low=0, high=2)], ("max_pool",)),
    Case("max_pool1d_indices", _values_and_indices(lambda x: F.max_pool1d(x, 4, 3, 2, dilation=2, return_indices=True)), [X1], ("max_pool",)),
    Case("max_pool3d_indices", _values_and_indices(lambda x: F.max_pool3d(x, 2, 2, 1, ceil_mode=True, return_indices=True)), [X3], ("max_pool",)),
    Case("aten_max_pool2d_with_indices", lambda x: aten.max_pool2d_with_indices(x, [2, 2], [2, 2])[0], [X2], ("max_pool",)),
    # avg pool: count_include_pad x ceil_mode x divisor_override
    Case("avg_pool2d", nn.AvgPool2d(2), [X2], ("avg_pool",), **TOL),
    Case("avg_pool2d_default_stride", lambda x: F.avg_pool2d(x, (2, 3)), [X2], ("avg_pool",), **TOL),
    Case("avg_pool2d_pad", nn.AvgPool2d(3, 2, 1), [X2], ("avg_pool",), **TOL),
    Case("avg_pool2d_pad_exclude", nn.AvgPool2d(3, 2, 1, count_include_pad=False), [X2], ("avg_pool",), **TOL),
    Case("avg_pool2d_ceil", nn.AvgPool2d(3, 2, 1, ceil_mode=True), [T((2, 3, 8, 8))], ("avg_pool",), **TOL),
    Case("avg_pool2d_ceil_exclude", nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False), [T((2, 3, 8, 8))], ("avg_pool",), **TOL),
    Case("avg_pool2d_ceil_no_pad", nn.AvgPool2d(2, ceil_mode=True, count_include_pad=False), [X2], ("avg_pool",), **TOL),
    Case("avg_pool2d_divisor", nn.AvgPool2d(3, 2, 1, ceil_mode=True, divisor_override=4), [X2], ("avg_pool",), **TOL),
    Case("avg_pool2d_rect", nn.AvgPool2d((1, 3), (1, 2), (0, 1), count_include_pad=False), [X2], ("avg_pool",), **TOL),
    Case("avg_pool1d_ceil", nn.AvgPool1d(4, 3, 2, ceil_mode=True), [X1], ("avg_pool",), **TOL),
    Case("avg_pool1d_ceil_window_dropped", nn.AvgPool1d(2, 2, 1, ceil_mode=True, count_include_pad=False), [T((2, 3, 5))], ("avg_pool",), **TOL),
    Case("avg_pool3d", nn.AvgPool3d(3, 2, 1, count_include_pad=False, ceil_mode=True), [X3], ("avg_pool",), **TOL),
    Case("avg_pool3d_divisor", nn.AvgPool3d(2, divisor_override=3), [X3], ("avg_pool",), **TOL),
    Case("avg_pool2d_bfloat16", lambda x: F.avg_pool2d(x.bfloat16(), 3, 2, 1), [X2], ("avg_pool",), **HALF),
    Case("local_response_norm", nn.LocalResponseNorm(3), [T((2, 5, 4, 4))], ("avg_pool",), **TOL),
    # adaptive pools: divisible, uneven (overlapping) bins, global
    Case("adaptive_avg_pool2d_global", nn.AdaptiveAvgPool2d(1), [X2], ("adaptive_avg_pool",), **TOL),
    Case("adaptive_avg_pool2d_divisible", nn.AdaptiveAvgPool2d((3, 4)), [X2], ("adaptive_avg_pool",), **TOL),
    Case("adaptive_avg_pool2d_uneven", nn.AdaptiveAvgPool2d((4, 5)), [X2], ("adaptive_avg_pool",), **TOL),
    Case("adaptive_avg_pool2d_upsampling", nn.AdaptiveAvgPool2d((11, 3)), [X2], ("adaptive_avg_pool",), **TOL),
    Case("adaptive_avg_pool2d_keep", nn.AdaptiveAvgPool2d((None, 3)), [X2], ("adaptive_avg_pool",), **TOL),
    Case("adaptive_avg_pool1d", nn.AdaptiveAvgPool1d(4), [X1], ("adaptive_avg_pool",), **TOL),
    Case("adaptive_avg_pool3d", nn.AdaptiveAvgPool3d((2, 4, 1)), [X3], ("adaptive_avg_pool",), **TOL),
    Case("adaptive_avg_pool2d_float16", lambda x: F.adaptive_avg_pool2d(x.half(), 3), [X2], ("adaptive_avg_pool",), **HALF),
    Case("aten__adaptive_avg_pool2d", lambda x: aten._adaptive_avg_pool2d(x, [2, 3]), [X2], ("adaptive_avg_pool",), **TOL),
    Case("adaptive_max_pool2d_global", nn.AdaptiveMaxPool2d(1), [X2], ("adaptive_max_pool",)),
    Case("adaptive_max_pool2d_uneven", nn.AdaptiveMaxPool2d((4, 5)), [X2], ("adaptive_max_pool",)),
    Case("adaptive_max_pool2d_indices", nn.AdaptiveMaxPool2d((4, 3), return_indices=True), [X2], ("adaptive_max_pool",)),
    Case("adaptive_max_pool1d_indices", nn.AdaptiveMaxPool1d(3, return_indices=True), [X1], ("adaptive_max_pool",)),
    Case("adaptive_max_pool3d_indices", nn.AdaptiveMaxPool3d((2, 4, 3), return_indices=True), [X3], ("adaptive_max_pool",)),
]


@pytest.mark.parametrize("case", params(CASES))
def test_pool(case):
    run_case(case)


class _SpatialNet(nn.Module):
    """Convs, norms and pools whose spatial sizes follow the input's."""

    def __init__(self, stride: int):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1, stride=stride)
        self.norm = nn.GroupNorm(2, 4)
        self.stride = stride

    def forward(self, x):
        y = self.norm(self.conv(x))
        z = F.avg_pool2d(F.max_pool2d(y, 3, self.stride, 1), 3, self.stride, 1, count_include_pad=False)
        return F.adaptive_avg_pool2d(z, 1), *F.adaptive_max_pool2d(y, 1, return_indices=True)


def _check_dynamic_spatial(stride: int):
    torch.manual_seed(0)
    model = _SpatialNet(stride).eval()
    spatial = {0: Dim("batch"), 2: Dim("h", min=16, max=64), 3: Dim("w", min=16, max=64)}
    conv = ug.from_torch(model, (torch.randn(2, 3, 20, 18),), dynamic_shapes=(spatial,))
    assert conv.graph.types[conv.graph.inputs[0]].shape == ("batch", 3, "h", "w")
    tolerance = Case("dynamic_spatial", model, [], rtol=1e-4, atol=1e-5)
    for shape in [(2, 3, 20, 18), (3, 3, 17, 31)]:
        compare(model, conv, [torch.randn(shape)], tolerance)


def test_dynamic_spatial_dims():
    _check_dynamic_spatial(stride=1)


def test_dynamic_spatial_dims_strided():
    _check_dynamic_spatial(stride=2)


# ---- the torch backend's lowerings on graphs built directly (channels-last and other paths torch graphs never take) ----


def _with_neg_inf(x):
    """``x`` with its first half of rows -inf: windows whose maximum ties the -inf padding."""
    x = x.clone()
    x[..., : x.shape[-2] // 2, :] = -float("inf")
    return x


MAX = {"op": "max_pool", "dilation": (1, 1)}
AVG = {"op": "avg_pool"}
NODE_CASES = {  # id: attributes and options of one pool node on ``x``
    # torch's own padding, channels-last (Keras) layout
    "max_pool2d_channels_last": dict(MAX, x=channels_last(random_tensor(2, 3, 9, 8)), window=(3, 3), strides=(2, 2), padding=((1, 1), (1, 1)), channels_last=True, return_indices=True, export=True),
    "max_pool1d_channels_last_ceil": dict(MAX, x=channels_last(random_tensor(2, 3, 10)), window=(3,), strides=(2,), padding=((1, 1),), dilation=(2,), ceil_mode=True, channels_last=True, return_indices=True),
    "max_pool3d_channels_last": dict(MAX, x=channels_last(random_tensor(2, 2, 5, 6, 7)), window=(2, 2, 3), strides=(2, 1, 2), padding=((1, 1), (0, 0), (1, 1)), dilation=(1, 1, 1), channels_last=True, return_indices=True),
    # padding torch's pools do not take: asymmetric ("same"), beyond half the window, with ceil_mode
    "max_pool2d_same": dict(MAX, x=channels_last(random_tensor(2, 3, 9, 8)), window=(2, 2), strides=(2, 2), padding=((0, 1), (0, 0)), channels_last=True, export=True),
    "max_pool2d_asymmetric_indices": dict(MAX, x=random_tensor(2, 3, 9, 8), window=(3, 2), strides=(2, 1), padding=((2, 0), (1, 2)), dilation=(1, 2), return_indices=True),
    "max_pool2d_asymmetric_ceil_indices": dict(MAX, x=random_tensor(2, 3, 9, 8), window=(3, 2), strides=(2, 2), padding=((0, 1), (1, 0)), ceil_mode=True, return_indices=True, export=True),
    "max_pool2d_wide_padding_indices": dict(MAX, x=random_tensor(2, 3, 7, 6), window=(2, 3), strides=(2, 1), padding=((2, 2), (2, 1)), dilation=(1, 2), ceil_mode=True, return_indices=True),
    "max_pool2d_padding_ties_neg_inf": dict(MAX, x=_with_neg_inf(random_tensor(2, 2, 8, 7)), window=(3, 3), strides=(1, 2), padding=((2, 0), (1, 2)), dilation=(2, 1), return_indices=True),
    "max_pool2d_int_asymmetric": dict(MAX, x=torch.randint(-50, 50, (2, 3, 9, 8), generator=torch.Generator().manual_seed(0), dtype=torch.int32), window=(3, 3), strides=(2, 2), padding=((0, 2), (1, 0)), return_indices=True),
    "max_pool2d_leading_axes": dict(MAX, x=random_tensor(2, 3, 2, 9, 8), window=(2, 2), strides=(2, 2), padding=((0, 1), (1, 0)), return_indices=True),
    "avg_pool2d_channels_last": dict(AVG, x=channels_last(random_tensor(2, 3, 9, 8)), window=(3, 3), strides=(2, 2), padding=((1, 1), (1, 1)), ceil_mode=True, count_include_pad=False, channels_last=True, export=True),
    "avg_pool2d_same_exclude_pad": dict(AVG, x=channels_last(random_tensor(2, 3, 9, 8)), window=(3, 2), strides=(2, 2), padding=((1, 1), (0, 1)), count_include_pad=False, channels_last=True, export=True),
    "avg_pool2d_asymmetric_include_pad": dict(AVG, x=random_tensor(2, 3, 9, 8), window=(3, 2), strides=(2, 1), padding=((2, 0), (1, 2))),
    "avg_pool2d_asymmetric_ceil": dict(AVG, x=random_tensor(2, 3, 9, 8), window=(3, 3), strides=(2, 2), padding=((0, 1), (1, 0)), ceil_mode=True),
    "avg_pool2d_asymmetric_ceil_exclude": dict(AVG, x=random_tensor(2, 3, 9, 8), window=(3, 3), strides=(2, 2), padding=((0, 1), (1, 0)), ceil_mode=True, count_include_pad=False),
    "avg_pool2d_asymmetric_divisor": dict(AVG, x=random_tensor(2, 3, 9, 8), window=(3, 3), strides=(2, 2), padding=((0, 1), (1, 0)), ceil_mode=True, divisor_override=5),
    "avg_pool1d_divisor": dict(AVG, x=random_tensor(2, 3, 10), window=(3,), strides=(2,), padding=((1, 1),), ceil_mode=True, divisor_override=2),
    "avg_pool1d_channels_last_same": dict(AVG, x=channels_last(random_tensor(2, 3, 10)), window=(4,), strides=(3,), padding=((1, 2),), count_include_pad=False, channels_last=True),
    "avg_pool3d_channels_last_same": dict(AVG, x=channels_last(random_tensor(2, 2, 5, 6, 7)), window=(2, 3, 2), strides=(2, 2, 1), padding=((0, 1), (1, 1), (0, 1)), count_include_pad=False, channels_last=True),
    "avg_pool2d_float16_same": dict(AVG, x=random_tensor(2, 3, 9, 8, dtype=torch.float16), window=(3, 3), strides=(2, 2), padding=((0, 1), (1, 0)), count_include_pad=False, rtol=1e-3, atol=1e-3),
    "avg_pool2d_unbatched_same": dict(AVG, x=random_tensor(9, 8, 3), window=(2, 2), strides=(2, 2), padding=((0, 1), (0, 0)), channels_last=True, dynamic=False),
    # adaptive pools, channels-last, uneven bins
    "adaptive_avg_pool2d_channels_last": dict(op="adaptive_avg_pool", x=channels_last(random_tensor(2, 3, 9, 8)), output_size=(4, 3), channels_last=True, export=True),
    "adaptive_avg_pool1d_channels_last": dict(op="adaptive_avg_pool", x=channels_last(random_tensor(2, 3, 10)), output_size=(1,), channels_last=True),
    "adaptive_avg_pool3d_channels_last": dict(op="adaptive_avg_pool", x=channels_last(random_tensor(2, 2, 5, 6, 7)), output_size=(2, 4, 3), channels_last=True),
    "adaptive_max_pool2d_channels_last_indices": dict(op="adaptive_max_pool", x=channels_last(random_tensor(2, 3, 9, 8)), output_size=(4, 3), channels_last=True, return_indices=True, export=True),
    "adaptive_max_pool2d_channels_last": dict(op="adaptive_max_pool", x=channels_last(random_tensor(2, 3, 9, 8)), output_size=(11, 5), channels_last=True),
    "adaptive_max_pool3d_leading_axes": dict(op="adaptive_max_pool", x=random_tensor(2, 3, 2, 5, 6, 7), output_size=(2, 4, 3), return_indices=True),
}


@pytest.mark.parametrize("case", sorted(NODE_CASES))
def test_pool_node_in_torch(case):
    options = dict(NODE_CASES[case])
    op, x = options.pop("op"), options.pop("x")
    run_node(op, [x], **{"rtol": 1e-5, "atol": 1e-6, **options})


@pytest.mark.parametrize(
    "op, attrs",
    [
        ("max_pool", {"window": (3, 2), "strides": (2, 2), "padding": ((0, 1), (1, 0)), "dilation": (1, 2), "ceil_mode": True, "return_indices": True}),
        ("avg_pool", {"window": (3, 3), "strides": (2, 2), "padding": ((0, 1), (1, 0)), "ceil_mode": True, "count_include_pad": False}),
    ],
)
def test_pool_padding_torch_cannot_take_exports_with_dynamic_spatial_dims(op, attrs):
    """``ceil_mode`` growth of explicit padding is computed on symbolic sizes (``torch.sym_min``/``sym_max``)."""
    import jax

    from unigraph.backends.torch_ops import LOWERINGS
    from unigraph.ops import REGISTRY

    lowering = LOWERINGS.get(op)

    class Pool(torch.nn.Module):
        def forward(self, x):
            return lowering(x, **attrs)

    spatial = {0: Dim("batch"), 2: Dim("h", min=4, max=64), 3: Dim("w", min=4, max=64)}
    program = torch.export.export(Pool(), (random_tensor(2, 3, 9, 8),), dynamic_shapes=({**spatial},)).module()
    for shape in [(2, 3, 9, 8), (3, 3, 12, 7), (1, 3, 8, 11)]:
        x = random_tensor(*shape, seed=1)
        got = program(x)
        with jax.enable_x64(True):
            want = REGISTRY[op].jax(x.numpy(), **attrs)
        for g, w in zip(*(o if isinstance(o, tuple) else (o,) for o in (got, want))):
            np.testing.assert_allclose(g.numpy(), np.asarray(w), rtol=1e-5, atol=1e-6, err_msg=str(shape))
