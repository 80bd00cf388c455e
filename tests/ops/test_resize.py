"""Resizing: F.interpolate in every mode, by size and by (non-integer) scale factor, align_corners both ways."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from tests.ops.harness import Case, T, channels_last, params, random_tensor, run_case, run_node

aten = torch.ops.aten

X1 = T((2, 3, 7))
X2 = T((2, 3, 5, 7))
X3 = T((2, 2, 3, 4, 5))
GRID = T((2, 4, 6, 2), low=-1.2, high=1.2)
# Interpolation weights are computed in float32 exactly as torch does; the weighted sums may round differently.
TOL = {"rtol": 1e-5, "atol": 1e-5}
HALF = {"rtol": 1e-2, "atol": 1e-2}


def interpolate(**kwargs):
    return lambda x: F.interpolate(x, **kwargs)


CASES = [
    # nearest ("legacy" floor rule) and nearest-exact
    Case("nearest_x2", nn.Upsample(scale_factor=2), [X2], ("resize",)),
    Case("nearest_size", interpolate(size=(8, 5)), [X2], ("resize",)),
    Case("nearest_scale_noninteger", interpolate(scale_factor=1.7), [X2], ("resize",)),
    Case("nearest_scale_down", interpolate(scale_factor=(0.6, 0.45)), [X2], ("resize",)),
    Case("nearest_scale_x2_uneven", interpolate(scale_factor=2.1), [X2], ("resize",)),
    Case("nearest_exact_scale", interpolate(scale_factor=1.7, mode="nearest-exact"), [X2], ("resize",)),
    Case("nearest_exact_size", interpolate(size=(3, 11), mode="nearest-exact"), [X2], ("resize",)),
    Case("nearest_1d", interpolate(scale_factor=2.5), [X1], ("resize",)),
    Case("nearest_3d", interpolate(size=(5, 6, 2)), [X3], ("resize",)),
    Case("nearest_exact_3d", interpolate(scale_factor=1.5, mode="nearest-exact"), [X3], ("resize",)),
    Case("nearest_uint8", lambda x: F.interpolate(x.to(torch.uint8), scale_factor=1.5), [T((2, 3, 5, 7), low=0, high=200)], ("resize",)),
    Case("aten_upsample_nearest2d_scales", lambda x: aten.upsample_nearest2d(x, [11, 15], 2.3, 2.2), [X2], ("resize",)),
    Case("aten_upsample_nearest_exact1d_scale", lambda x: aten._upsample_nearest_exact1d(x, [16], 2.4), [X1], ("resize",)),
    Case("nearest_1d_scale_x2_uneven", interpolate(scale_factor=2.02), [X1], ("resize",)),
    Case("nearest_3d_scale_x2_uneven", interpolate(scale_factor=2.02), [T((2, 2, 4, 4, 4))], ("resize",)),
    Case("nearest_2d_scale_x2_uneven", interpolate(scale_factor=2.02), [T((2, 2, 4, 4))], ("resize",)),
    # (bi/tri)linear
    Case("bilinear_x2", interpolate(scale_factor=2, mode="bilinear"), [X2], ("resize",), **TOL),
    Case("bilinear_x2_align_corners", interpolate(scale_factor=2, mode="bilinear", align_corners=True), [X2], ("resize",), **TOL),
    Case("bilinear_size", interpolate(size=(9, 4), mode="bilinear"), [X2], ("resize",), **TOL),
    Case("bilinear_size_align_corners", interpolate(size=(9, 4), mode="bilinear", align_corners=True), [X2], ("resize",), **TOL),
    Case("bilinear_scale_noninteger", interpolate(scale_factor=(1.3, 2.7), mode="bilinear"), [X2], ("resize",), **TOL),
    Case("bilinear_recompute_scale", interpolate(scale_factor=(1.3, 2.7), mode="bilinear", recompute_scale_factor=True), [X2], ("resize",), **TOL),
    Case("bilinear_down", interpolate(scale_factor=0.5, mode="bilinear"), [T((2, 3, 8, 9))], ("resize",), **TOL),
    Case("bilinear_to_one", interpolate(size=(1, 3), mode="bilinear", align_corners=True), [X2], ("resize",), **TOL),
    Case("bilinear_bfloat16", lambda x: F.interpolate(x.bfloat16(), scale_factor=1.5, mode="bilinear"), [X2], ("resize",), **HALF),
    Case("linear_1d", interpolate(scale_factor=2.5, mode="linear"), [X1], ("resize",), **TOL),
    Case("linear_1d_align_corners", interpolate(size=13, mode="linear", align_corners=True), [X1], ("resize",), **TOL),
    Case("trilinear", interpolate(scale_factor=1.5, mode="trilinear"), [X3], ("resize",), **TOL),
    Case("trilinear_align_corners", interpolate(size=(4, 7, 3), mode="trilinear", align_corners=True), [X3], ("resize",), **TOL),
    Case("bilinear_size_kept_scale_given", interpolate(scale_factor=(1.1, 2.0), mode="bilinear"), [X2], ("resize",), **TOL),
    # bicubic (Keys, A = -0.75, edge taps clamped)
    Case("bicubic_x2", interpolate(scale_factor=2, mode="bicubic"), [X2], ("resize",), **TOL),
    Case("bicubic_align_corners", interpolate(size=(9, 4), mode="bicubic", align_corners=True), [X2], ("resize",), **TOL),
    Case("bicubic_scale_noninteger", interpolate(scale_factor=1.37, mode="bicubic"), [X2], ("resize",), **TOL),
    Case("bicubic_down", interpolate(size=(3, 4), mode="bicubic"), [X2], ("resize",), **TOL),
    # grid_sample has no op of its own: torch decomposes it into coordinate math and gathers
    Case("grid_sample_bilinear_zeros", lambda x, g: F.grid_sample(x, g, align_corners=False), [X2, GRID], (), **TOL),
    Case("grid_sample_nearest_border", lambda x, g: F.grid_sample(x, g, mode="nearest", padding_mode="border", align_corners=True), [X2, GRID], (), **TOL),
    Case("grid_sample_bicubic_reflection", lambda x, g: F.grid_sample(x, g, mode="bicubic", padding_mode="reflection", align_corners=False), [X2, GRID], (), **TOL),
]


@pytest.mark.parametrize("case", params(CASES))
def test_resize(case):
    run_case(case)


# ---- the torch backend's lowering on graphs built directly (channels-last and other paths torch graphs never take) ----

NODE_CASES = {  # id: (input, attributes and options)
    # Keras's layout in every mode, sizes and scale factors (some not given)
    "nearest_channels_last": (channels_last(random_tensor(2, 3, 5, 7)), {"sizes": (11, 15), "method": "nearest", "scales": (2.3, 2.2), "channels_last": True, "export": True}),
    "nearest_exact_channels_last": (channels_last(random_tensor(2, 3, 5, 7)), {"sizes": (3, 11), "method": "nearest_exact", "channels_last": True}),
    "bilinear_channels_last": (channels_last(random_tensor(2, 3, 5, 7)), {"sizes": (9, 4), "method": "linear", "channels_last": True, "export": True}),
    "bilinear_channels_last_align_corners": (channels_last(random_tensor(2, 3, 5, 7)), {"sizes": (9, 4), "method": "linear", "align_corners": True, "channels_last": True}),
    "bilinear_channels_last_one_scale": (channels_last(random_tensor(2, 3, 5, 7)), {"sizes": (6, 18), "method": "linear", "scales": (None, 2.7), "channels_last": True}),
    "bicubic_channels_last": (channels_last(random_tensor(2, 3, 5, 7)), {"sizes": (11, 5), "method": "cubic", "align_corners": True, "channels_last": True, "export": True}),
    "linear_1d_channels_last": (channels_last(random_tensor(2, 3, 7)), {"sizes": (17,), "method": "linear", "scales": (2.5,), "channels_last": True}),
    "trilinear_channels_last": (channels_last(random_tensor(2, 2, 3, 4, 5)), {"sizes": (4, 7, 3), "method": "linear", "align_corners": True, "channels_last": True}),
    "nearest_3d_channels_last": (channels_last(random_tensor(2, 2, 3, 4, 5)), {"sizes": (5, 6, 2), "method": "nearest", "channels_last": True}),
    # cubic where torch has no kernel (1-d, 3-d), more spatial dims than torch's kernels take
    "cubic_1d": (random_tensor(2, 3, 7), {"sizes": (13,), "method": "cubic"}),
    "cubic_1d_scale_channels_last": (channels_last(random_tensor(2, 3, 7)), {"sizes": (9,), "method": "cubic", "scales": (1.37,), "channels_last": True}),
    "cubic_3d": (random_tensor(2, 2, 3, 4, 5), {"sizes": (5, 3, 8), "method": "cubic", "align_corners": True, "export": True}),
    "cubic_3d_channels_last_scales": (channels_last(random_tensor(2, 2, 3, 4, 5)), {"sizes": (4, 6, 7), "method": "cubic", "scales": (1.5, None, 1.4), "channels_last": True}),
    "linear_4d": (random_tensor(2, 2, 3, 4, 2, 5), {"sizes": (4, 3, 3, 9), "method": "linear", "align_corners": True}),
    "nearest_exact_4d": (random_tensor(2, 2, 3, 4, 2, 5), {"sizes": (4, 3, 3, 9), "method": "nearest_exact", "scales": (1.5, None, 1.7, 2.0)}),
    # inputs: unbatched, extra leading axes, half precision
    "bicubic_unbatched": (random_tensor(3, 5, 7), {"sizes": (9, 4), "method": "cubic", "dynamic": False}),
    "bilinear_unbatched_channels_last": (random_tensor(5, 7, 3), {"sizes": (9, 4), "method": "linear", "channels_last": True, "dynamic": False}),
    "nearest_leading_axes": (random_tensor(2, 2, 3, 5, 7), {"sizes": (9, 4), "method": "nearest"}),
    "bilinear_leading_axes_channels_last": (random_tensor(2, 2, 5, 7, 3), {"sizes": (9, 4), "method": "linear", "channels_last": True}),
    "bicubic_float16_channels_last": (channels_last(random_tensor(2, 3, 5, 7, dtype=torch.float16)), {"sizes": (9, 4), "method": "cubic", "channels_last": True, "rtol": 1e-2, "atol": 1e-2}),
}


@pytest.mark.parametrize("case", sorted(NODE_CASES))
def test_resize_node_in_torch(case):
    x, options = NODE_CASES[case]
    run_node("resize", [x], **{**TOL, **options})
