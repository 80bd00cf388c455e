"""Shape ops: views, permutes, broadcasts, concat/split, slices, padding, tiling, windows."""

import pytest
import torch
import torch.nn.functional as F

from tests.ops.harness import Case, T, params, random_tensor, run_case, run_node

X = T((2, 3, 4))
X5 = T((2, 5, 4))
I = T((2, 3, 4), "int64", low=-5, high=6)
B = T((2, 3, 4), "bool")
IMG = T((2, 3, 5, 6))
aten = torch.ops.aten


class ClsToken(torch.nn.Module):
    """ViT-style: a learned class token expanded over the batch, prepended, plus position embeddings."""

    def __init__(self):
        super().__init__()
        self.cls = torch.nn.Parameter(torch.randn(1, 1, 8))
        self.pos = torch.nn.Parameter(torch.randn(1, 5, 8))

    def forward(self, x):
        tokens = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1)
        return tokens + self.pos


class Heads(torch.nn.Module):
    """Attention-style head split and merge through view(b*h, s, d)."""

    def forward(self, x):
        b, s, _ = x.shape
        heads = x.view(b, s, 2, 4).transpose(1, 2).reshape(b * 2, s, 4)
        scores = heads @ heads.transpose(1, 2)
        return scores.view(b, 2, s, s).permute(0, 2, 1, 3).reshape(b, s, -1)


class SetSlice(torch.nn.Module):
    def forward(self, x, y):
        x = x.clone()
        x[:, 1:3] = y[:, :2]
        return x


class CopyInto(torch.nn.Module):
    """An in-place copy into a view, broadcasting and casting the source."""

    def forward(self, x, y):
        x = x.clone()
        x[:, 1:3].copy_(y[:, :1])
        return x


CASES = [
    # reshape and view
    Case("view_batch", lambda x: x.view(x.shape[0], -1), [X], ("reshape",)),
    Case("view_minus_one_lead", lambda x: x.view(-1, 4), [X], ("reshape",)),
    Case("view_as", lambda x, y: x.view_as(y), [X, T((2, 12))], ("reshape",)),
    Case("reshape_int", lambda x: x.reshape(x.shape[0], 2, 6), [I], ("reshape",)),
    Case("reshape_permuted", lambda x: x.permute(0, 2, 1).reshape(x.shape[0], -1), [X], ("transpose", "reshape")),
    Case("flatten", lambda x: x.flatten(1), [IMG], ("reshape",)),
    Case("flatten_all", torch.flatten, [IMG], ("reshape",)),
    Case("unflatten", lambda x: x.unflatten(2, (2, 2)), [X], ("reshape",)),
    Case("heads_view_bh", Heads(), [T((2, 6, 8))], ("reshape", "transpose", "matmul")),
    # two equal axes: the converter must follow dims, not sizes
    Case("equal_axes_transpose", lambda x: x.transpose(1, 2) - x, [T((2, 64, 64))], ("transpose", "sub")),
    Case(
        "equal_axes_reshape",
        lambda x: x.permute(0, 2, 1).reshape(x.shape[0], 64, 8, 8).sum(-1),
        [T((2, 64, 64))],
        ("transpose", "reshape"),
        rtol=1e-4,  # a reduction: float32 summation order differs
        atol=1e-5,
    ),
    # permutes
    Case("permute_negative", lambda x: x.permute(-1, 0, 1), [X], ("transpose",)),
    Case("permute_bool", lambda x: x.permute(2, 1, 0), [B], ("transpose",)),
    Case("transpose", lambda x: x.transpose(-1, -2), [X], ("transpose",)),
    Case("t", lambda x: x.t(), [T((3, 4))], ("transpose",)),
    Case("t_vector", lambda x: x.t() * 2, [T((3,))], ("mul",)),
    Case("movedim", lambda x: torch.movedim(x, 0, -1), [X], ("transpose",)),
    Case("swapaxes_bf16", lambda x: x.to(torch.bfloat16).swapaxes(0, 2), [X], ("transpose",)),
    # unsqueeze / squeeze
    Case("unsqueeze", lambda x: x.unsqueeze(1), [X], ("expand_dims",)),
    Case("unsqueeze_negative", lambda x: x.unsqueeze(-1), [I], ("expand_dims",)),
    Case("none_index", lambda x: x[:, None, :, None], [X], ("expand_dims",)),
    Case("squeeze_all", lambda x: x.squeeze(), [T((2, 1, 4, 1))], ("squeeze",)),
    Case("squeeze_dim", lambda x: x.squeeze(-1), [T((2, 3, 1))], ("squeeze",)),
    Case("squeeze_dims", lambda x: x.squeeze((1, 3)), [T((2, 1, 4, 1))], ("squeeze",)),
    Case("squeeze_not_one", lambda x: x.squeeze(1) + 1, [X], ("add",)),
    # broadcasting
    Case("expand_minus_one", lambda x: x[:, :1].expand(-1, 5, -1), [X], ("broadcast_to",)),
    Case("expand_leading", lambda x: x.expand(3, *x.shape), [T((2, 4))], ("broadcast_to",)),
    Case("expand_as", lambda x, y: x.expand_as(y), [T((2, 1, 4)), X], ("broadcast_to",)),
    Case("expand_bool", lambda m: m[:, :, :1].expand(-1, -1, 6), [B], ("broadcast_to",)),
    Case("vit_cls_token", ClsToken(), [T((2, 4, 8))], ("broadcast_to", "concat", "add")),
    # concat / stack
    Case("cat", lambda x, y: torch.cat([x, y], -1), [X, T((2, 3, 2))], ("concat",)),
    Case("cat_dynamic_axis", lambda x, y: torch.cat([x, y, x]), [X, X], ("concat",)),
    Case("cat_promotes", lambda x, y: torch.cat([x, y], 1), [I, X], ("concat", "cast")),
    Case("cat_bool", lambda x, y: torch.cat([x, y], 2), [B, B], ("concat",)),
    Case("cat_half", lambda x: torch.cat([x.half(), x.half()], 1), [X], ("concat",), rtol=1e-3, atol=1e-3),
    Case("stack", lambda x, y: torch.stack([x, y], 1), [X, X], ("expand_dims", "concat")),
    Case("stack_last", lambda x, y: torch.stack([x, y], -1), [I, I], ("expand_dims", "concat")),
    # split
    Case("split_even", lambda x: x.split(2, -1), [X], ("split",)),
    Case("split_uneven", lambda x: x.split(2, 1), [X5], ("split",)),
    Case("split_sizes", lambda x: x.split([1, 3, 1], 1), [X5], ("split",)),
    Case("chunk", lambda x: x.chunk(3, 1), [X5], ("split",)),
    Case("tensor_split", lambda x: torch.tensor_split(x, (1, 4), 1), [X5], ("slice",)),
    Case("unbind", lambda x: x.unbind(1), [X], ("split", "squeeze")),
    Case("split_qkv_int", lambda x: x.split(4, -1)[1], [T((2, 3, 12), "int32")], ("split",)),
    # slices
    Case("slice_step", lambda x: x[:, 1:5:2], [X5], ("slice",)),
    Case("slice_negative", lambda x: x[:, -2:], [X5], ("slice",)),
    Case("slice_negative_end", lambda x: x[..., 1:-1], [X5], ("slice",)),
    Case("slice_out_of_range", lambda x: x[:, 2:100], [X5], ("slice",)),
    Case("slice_negative_out_of_range", lambda x: x[:, -100:2], [X5], ("slice",)),
    Case("slice_empty", lambda x: x[:, 3:1], [X5], ("slice",)),
    Case("slice_every_other", lambda x: x[..., ::2], [X5], ("slice",)),
    # torch.export keeps x[1:] of the batch dynamic only where the result cannot have size 1
    Case("slice_dynamic", lambda x: torch.cat([x, x])[1:] * 2, [X], ("slice",)),
    Case("slice_dynamic_drop_last", lambda x: torch.cat([x, x])[:-1], [X], ("slice",)),
    Case("slice_dynamic_step", lambda x: torch.cat([x, x, x])[::2], [X5], ("slice",)),
    Case("slice_symbolic_start", lambda x: torch.cat([x, x])[x.shape[0] :], [X], ("slice",)),
    Case("select_symbolic_index", lambda x: torch.cat([x, x])[x.shape[0]], [X], ("slice", "squeeze")),
    Case("split_symbolic_sizes", lambda x: torch.cat([x, x]).split([x.shape[0], x.shape[0]])[1], [X], ("split",)),
    Case("slice_to_dynamic", lambda x, y: y[:, : x.shape[0]], [X, T((2, 9, 4))], ("slice",)),
    Case("slice_bool", lambda m: m[:, 1:], [B], ("slice",)),
    Case("narrow", lambda x: x.narrow(1, 1, 3), [X5], ("slice",)),
    Case("select", lambda x: x[:, 1], [X], ("slice", "squeeze")),
    Case("select_negative", lambda x: x[:, -1], [X], ("slice", "squeeze")),
    Case("select_batch", lambda x: x[-1] + x[0], [X], ("slice", "squeeze")),
    Case("select_int", lambda x: x[..., 2], [I], ("slice", "squeeze")),
    Case("diff", lambda x: torch.diff(x, dim=1), [X5], ("slice", "sub")),
    Case("diff_prepend", lambda x: torch.diff(x, dim=-1, prepend=x[..., :1]), [I], ("slice", "sub", "concat")),
    # tiling, flips, rolls
    Case("repeat", lambda x: x.repeat(1, 2, 3), [X], ("tile",)),
    Case("repeat_leading", lambda x: x.repeat(2, 1, 1, 1), [I], ("tile",)),
    Case("repeat_batch", lambda x, y: y[:1].repeat(x.shape[0], 1, 1), [X, X], ("tile",)),
    Case("tile", lambda x: x.tile((2,)), [X], ("tile",)),
    Case("flip", lambda x: x.flip(1, -1), [X], ("flip",)),
    Case("flip_batch", lambda x: x.flip(0), [B], ("flip",)),
    Case("roll", lambda x: x.roll(2, 1), [X5], ("roll",)),
    Case("roll_negative_two_axes", lambda x: x.roll((-1, 3), (1, 2)), [X5], ("roll",)),
    Case("roll_flat", lambda x: x.roll(3), [X], ("reshape", "roll")),
    Case("roll_batch", lambda x: x.roll(1, 0), [X], ("roll",)),
    Case("roll_symbolic_shift", lambda x: x.roll(x.shape[0] // 2 + 1, 0), [X], ("roll",)),
    Case("rot90", lambda x: torch.rot90(x, 1, (1, 2)), [X], ("flip", "transpose")),
    # padding
    Case("pad_constant", lambda x: F.pad(x, (1, 2)), [X], ("pad",)),
    Case("pad_value_2d", lambda x: F.pad(x, (1, 0, 2, 1), value=-1.5), [IMG], ("pad",)),
    Case("pad_negative_crops", lambda x: F.pad(x, (-1, 2, 0, -1)), [IMG], ("pad",)),
    Case("pad_int", lambda x: F.pad(x, (2, 2), value=7), [I], ("pad",)),
    Case("pad_bool", lambda m: F.pad(m, (1, 1)), [B], ("pad",)),
    Case("pad_reflect_1d", lambda x: F.pad(x, (2, 3), mode="reflect"), [X5], ("pad",)),
    Case("pad_reflect_2d", lambda x: F.pad(x, (1, 2, 3, 1), mode="reflect"), [IMG], ("pad",)),
    Case("pad_replicate_2d", lambda x: F.pad(x, (2, 1, 0, 3), mode="replicate"), [IMG], ("pad",)),
    Case("pad_replicate_3d", torch.nn.ReplicationPad3d((1, 0, 0, 1, 1, 1)), [T((2, 1, 3, 4, 5))], ("pad",)),
    Case("pad_circular", lambda x: F.pad(x, (1, 2, 2, 0), mode="circular"), [IMG], ("pad",)),
    Case("pad_reflect_batch", lambda x: F.pad(x.permute(1, 2, 0), (1, 1), mode="reflect"), [X], ("pad",)),
    Case("pad_replicate_batch", lambda x: F.pad(x.permute(1, 2, 0), (2, 1), mode="replicate"), [X], ("pad",)),
    Case(
        "pad_to_multiple",
        lambda x: F.pad(x.transpose(0, 2), (0, (4 - x.shape[0] % 4) % 4)),
        [X],
        ("pad",),
    ),
    # the ATen padding ops, as other exporters and decompositions write them
    Case("aten_constant_pad_nd", lambda x: aten.constant_pad_nd(x, [0, 1, 2, 0], 0.5), [X], ("pad",)),
    Case("aten_reflection_pad1d", lambda x: aten.reflection_pad1d(x, [3, 1]), [X], ("pad",)),
    Case("aten_reflection_pad3d", lambda x: aten.reflection_pad3d(x, [1, 1, 0, 2, 1, 0]), [IMG], ("pad",)),
    Case("aten_replication_pad1d", lambda x: aten.replication_pad1d(x, [0, 2]), [X], ("pad",)),
    Case("aten_pad_circular", lambda x: aten._pad_circular(x, [1, 3]), [X], ("pad",)),
    Case("reflection_pad_module", torch.nn.ReflectionPad2d(2), [IMG], ("pad",)),
    Case("zero_pad_module", torch.nn.ZeroPad2d((0, 1, 1, 0)), [IMG], ("pad",)),
    # windows and pixel shuffles
    Case("unfold_windows", lambda x: x.unfold(1, 2, 1), [X5], ("sliding_window",)),
    Case("unfold_batch", lambda x: x.unfold(0, 2, 1), [X], ("sliding_window",)),
    Case("unfold_stride", lambda x: x.unfold(-1, 3, 2), [T((2, 3, 8))], ("sliding_window",)),
    Case("pixel_shuffle", torch.nn.PixelShuffle(2), [T((2, 8, 3, 4))], ("reshape", "transpose")),
    Case("pixel_unshuffle", torch.nn.PixelUnshuffle(2), [T((2, 2, 4, 6))], ("reshape", "transpose")),
    # identities and copies
    Case("as_strided_identity", lambda x: x.as_strided((2, 3, 4), (12, 4, 1)) + 1, [X], ("add",), dynamic=False),
    Case("as_strided_dynamic", lambda x: (x + 1).as_strided(x.shape, x.stride()), [X], ("add",)),
    Case("setitem_slice", SetSlice(), [X5, X5], ("slice_update",)),
    Case("copy_broadcast_cast", CopyInto(), [X5, T((2, 5, 4), "int32")], ("broadcast_to", "cast", "slice_update")),
]


@pytest.mark.parametrize("case", params(CASES))
def test_op(case):
    run_case(case)


def test_as_strided_window_is_reported():
    def windows(x):
        return x.as_strided((2, 2), (1, 1))

    with pytest.raises(Exception, match="as_strided.*identity view"):
        run_case(Case("as_strided_windows", windows, [T((4,))], dynamic=False))



# ---- the torch backend's lowerings on graphs built directly (paths torch-origin graphs do not take) ----


OPEN = 2**62

NODE_CASES = {  # id: (op, inputs, attributes and options)
    # pads in modes other than constant: channels-last spatial axes, more than three axes, ranks F.pad lacks
    "pad_reflect_channels_last": ("pad", [random_tensor(2, 5, 6, 3)], {"low": (0, 1, 2, 0), "high": (0, 2, 1, 0), "mode": "reflect", "export": True}),
    "pad_edge_four_axes": ("pad", [random_tensor(2, 3, 4, 5, 6)], {"low": (0, 1, 0, 2, 1), "high": (0, 2, 1, 0, 0), "mode": "edge"}),
    "pad_edge_first_axis_int": ("pad", [random_tensor(2, 3, 4, 5, 6, dtype=torch.int64)], {"low": (0, 2, 0, 0, 0), "high": (0, 1, 0, 0, 0), "mode": "edge"}),
    "pad_wrap_vector": ("pad", [random_tensor(7)], {"low": (2,), "high": (3,), "mode": "wrap"}),
    "pad_reflect_last_of_rank4": ("pad", [random_tensor(2, 3, 4, 6)], {"low": (0, 0, 0, 2), "high": (0, 0, 0, 1), "mode": "reflect", "export": True}),
    "pad_reflect_bool": ("pad", [random_tensor(2, 3, 5, dtype=torch.bool)], {"low": (0, 1, 2), "high": (0, 1, 1), "mode": "reflect"}),
    "pad_wrap_batch": ("pad", [random_tensor(3, 4)], {"low": (1, 0), "high": (2, 0), "mode": "wrap", "export": True}),
    "pad_edge_nothing": ("pad", [random_tensor(2, 3)], {"low": (0, 0), "high": (0, 0), "mode": "edge"}),
    "pad_constant_bool_true": ("pad", [random_tensor(2, 3, dtype=torch.bool)], {"low": (0, 1), "high": (0, 2), "value": True}),
    "pad_constant_symbolic": ("pad", [random_tensor(2, 3)], {"low": (0, "batch"), "high": (0, 1), "value": -2.0, "export": True}),
    # other shape ops off the torch frontend's paths
    "expand_dims_two_negative": ("expand_dims", [random_tensor(2, 3)], {"axes": (-1, 1)}),
    "expand_dims_unordered": ("expand_dims", [random_tensor(2, 3)], {"axes": (3, 0)}),
    "split_one_piece": ("split", [random_tensor(2, 3)], {"sizes": ("batch",), "axis": 0}),
    "split_symbolic": ("split", [random_tensor(2, 3)], {"sizes": (1, "batch - 1"), "axis": 0}),
    "slice_open_dynamic": ("slice", [random_tensor(4, 4)], {"axis": 0, "start": 0, "end": OPEN, "export": True}),
    "slice_open_dynamic_step": ("slice", [random_tensor(3, 4)], {"axis": 0, "start": 1, "end": OPEN, "step": 2}),
    "slice_open_negative_start": ("slice", [random_tensor(3, 4)], {"axis": 0, "start": -2, "end": OPEN, "export": True}),
    "slice_symbolic_end": ("slice", [random_tensor(3, 4)], {"axis": -1, "start": 0, "end": "batch"}),
    "roll_symbolic_negative_axis": ("roll", [random_tensor(3, 4)], {"shifts": ("batch",), "axes": (-1,)}),
    "tile_short_reps": ("tile", [random_tensor(2, 3, 4)], {"reps": (2, 3)}),
    "squeeze_none": ("squeeze", [random_tensor(2, 3)], {"axes": ()}),
}


@pytest.mark.parametrize("case", sorted(NODE_CASES))
def test_shape_node_in_torch(case):
    op, inputs, options = NODE_CASES[case]
    run_node(op, inputs, **options)
