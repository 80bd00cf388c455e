"""Resizing: F.interpolate in every mode, by size and by (non-integer) scale factor, align_corners both ways."""

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import unigraph as ug
from tests.ops.harness import Case, T, channels_last, params, random_tensor, run_case, run_node
from unigraph.errors import UnigraphError
from unigraph.frontends.torch_tensors import to_numpy

aten = torch.ops.aten

X1 = T((2, 3, 7))
X2 = T((2, 3, 5, 7))
X3 = T((2, 2, 3, 4, 5))
GRID = T((2, 4, 6, 2), low=-1.2, high=1.2)
# Interpolation weights are computed in float32 exactly as torch does; the weighted sums may round differently.
TOL = {"rtol": 1e-5, "atol": 1e-5}
HALF = {"rtol": 1e-2, "atol": 1e-2}
# Antialiased weights are torch's bit for bit; only the order of the (up to 2 * 4 * scale) products' sum differs.
AA = {"rtol": 1e-4, "atol": 1e-5}
XA = T((2, 3, 13, 11))  # odd sizes, batch and channels > 1


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
    # antialiased bilinear and bicubic (torch's _upsample_*_aa: filters widened by the downscale factor, Pillow's cubic)
    Case("bicubic_aa_down_size", interpolate(size=(5, 7), mode="bicubic", antialias=True), [XA], ("resize",), **AA),
    Case("bicubic_aa_up_size", interpolate(size=(17, 23), mode="bicubic", antialias=True), [XA], ("resize",), **AA),
    Case("bicubic_aa_down_align_corners", interpolate(size=(4, 6), mode="bicubic", antialias=True, align_corners=True), [XA], ("resize",), **AA),
    Case("bicubic_aa_scale_down", interpolate(scale_factor=0.45, mode="bicubic", antialias=True), [XA], ("resize",), **AA),
    Case("bicubic_aa_scale_mixed_align_corners", interpolate(scale_factor=(1.7, 0.3), mode="bicubic", antialias=True, align_corners=True), [XA], ("resize",), **AA),
    Case("bicubic_aa_height_kept_scale_given", interpolate(scale_factor=(1.05, 0.5), mode="bicubic", antialias=True), [XA], ("resize",), **AA),
    Case("bilinear_aa_down_size", interpolate(size=(6, 4), mode="bilinear", antialias=True), [XA], ("resize",), **AA),
    Case("bilinear_aa_scale_mixed", interpolate(scale_factor=(0.35, 1.3), mode="bilinear", antialias=True), [XA], ("resize",), **AA),
    Case("bilinear_aa_scale_align_corners", interpolate(scale_factor=0.6, mode="bilinear", antialias=True, align_corners=True), [XA], ("resize",), **AA),
    Case(
        "bicubic_aa_to_width_one",
        interpolate(size=(7, 1), mode="bicubic", antialias=True),
        [XA],
        ("resize",),
        xfail="torch's CPU kernel gives every row of a width-1 output the first row's values",
        **AA,
    ),
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
    # antialiased: Keras's layout, torch's 1-d kernel (none: its 2-d one), more dims than torch's kernels take
    "bicubic_aa_channels_last": (channels_last(random_tensor(2, 3, 13, 11)), {"sizes": (5, 17), "method": "cubic", "antialias": True, "channels_last": True, "export": True, **AA}),
    "bilinear_aa_channels_last_scales": (channels_last(random_tensor(2, 3, 13, 11)), {"sizes": (4, 11), "method": "linear", "scales": (0.35, 1.05), "antialias": True, "channels_last": True, **AA}),
    "cubic_aa_1d": (random_tensor(2, 3, 13), {"sizes": (5,), "method": "cubic", "antialias": True, **AA}),
    "linear_aa_3d_align_corners": (random_tensor(2, 2, 9, 4, 11), {"sizes": (4, 7, 3), "method": "linear", "align_corners": True, "antialias": True, **AA}),
    "bicubic_float16_channels_last": (channels_last(random_tensor(2, 3, 5, 7, dtype=torch.float16)), {"sizes": (9, 4), "method": "cubic", "channels_last": True, "rtol": 1e-2, "atol": 1e-2}),
}


@pytest.mark.parametrize("case", sorted(NODE_CASES))
def test_resize_node_in_torch(case):
    x, options = NODE_CASES[case]
    run_node("resize", [x], **{**TOL, **options})


# ---- a vision transformer's position embeddings resampled to another grid (timm's resample_abs_pos_embed) ----


class PosEmbedResample(nn.Module):
    """A learned 7x7 grid of position embeddings resampled to 5x9 (antialiased bicubic) and added to the tokens."""

    def __init__(self, dim: int = 8, grid: tuple[int, int] = (7, 7), size: tuple[int, int] = (5, 9)):
        super().__init__()
        self.pos_embed = nn.Parameter(torch.randn(1, grid[0] * grid[1], dim, generator=torch.Generator().manual_seed(1)))
        self.grid, self.size = grid, size

    def forward(self, tokens):
        dim = self.pos_embed.shape[-1]
        grid = self.pos_embed.reshape(1, *self.grid, dim).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=self.size, mode="bicubic", antialias=True)
        return tokens + grid.permute(0, 2, 3, 1).flatten(1, 2)


def test_position_embeddings_resampled_antialiased_convert_and_round_trip():
    module = PosEmbedResample().eval()
    tokens = torch.randn(2, 45, 8, generator=torch.Generator().manual_seed(2))
    conv = ug.from_torch(module, (tokens,))
    assert "resize" in conv.graph.op_histogram()
    with torch.no_grad():
        want = module(tokens)
    np.testing.assert_allclose(np.asarray(conv(to_numpy(tokens))), want.numpy(), **AA)
    with torch.no_grad():
        np.testing.assert_allclose(conv.to_torch()(tokens).numpy(), want.numpy(), **AA)
    for keras_model in (conv.to_keras(), conv.to_keras(channels_last=True)):
        np.testing.assert_allclose(np.asarray(keras_model(to_numpy(tokens))), want.numpy(), **AA)


def test_antialiased_resize_of_dynamic_spatial_dims_names_the_op():
    """The weights are computed when tracing: a dynamic height is refused, naming the ATen op."""

    class Resize(nn.Module):
        def forward(self, x):
            return F.interpolate(x, size=(5, 7), mode="bicubic", antialias=True)

    h = torch.export.Dim("h", min=4, max=64)
    with pytest.raises(UnigraphError, match="_upsample_bicubic2d_aa.*static"):
        ug.from_torch(Resize(), (torch.randn(2, 3, 13, 11),), dynamic_shapes=({2: h},))
