"""Indexing ops: advanced indexing, index_select, gather, embedding, and the scatter family."""

import pytest
import torch
import torch.nn.functional as F

from tests.ops.harness import Case, T, params, run_case

X = T((2, 5, 4))
I = T((2, 5, 4), "int64", low=-5, high=6)
B = T((2, 5, 4), "bool")
IDS = T((2, 6), "int64", low=0, high=10)
AXIS1_INDEX = T((2, 3, 4), "int64", high=5)  # positions along axis 1 of X


def rows(n: int, *values: int) -> torch.Tensor:
    """A constant int64 index tensor (values < n)."""
    assert all(-n <= v < n for v in values)
    return torch.tensor(values)


class Embed(torch.nn.Module):
    def __init__(self, padding_idx=None):
        super().__init__()
        self.table = torch.nn.Embedding(10, 8, padding_idx=padding_idx)

    def forward(self, ids):
        return self.table(ids)


class SetItem(torch.nn.Module):
    """``x[key(x)] = value(x, *others)`` on a copy (torch.export writes it as a functional scatter)."""

    def __init__(self, key, value):
        super().__init__()
        self.key = key
        self.value = value

    def forward(self, x, *others):
        x = x.clone()
        x[self.key(x)] = self.value(x, *others)
        return x


def batch_rows(x: torch.Tensor) -> torch.Tensor:
    """``arange(batch)[:, None]``: an index that pairs with per-row indices."""
    return torch.arange(x.shape[0])[:, None]


CASES = [
    # advanced indexing
    Case("index_middle", lambda x: x[:, rows(5, 0, 3, 3)], [X], ("index",)),
    Case("index_negative", lambda x: x[:, rows(5, -1, 0)], [X], ("index",)),
    Case("index_last_axis_int", lambda x: x[..., rows(4, 2, 1)], [I], ("index",)),
    Case("index_batch", lambda x: x[rows(2, 1, 0, 1)], [X], ("index",), dynamic=False),
    Case(
        "index_two_broadcast",
        lambda x, i: x[torch.arange(x.shape[0])[:, None], i],
        [X, T((2, 3), "int64", low=0, high=5)],
        ("index", "arange"),
    ),
    Case("index_adjacent_pair", lambda x: x[:, rows(5, 0, 4), rows(4, 1, 3)], [X], ("index",)),
    Case("index_non_adjacent", lambda x: x[rows(2, 1, 0), :, rows(4, 3, 2)], [X], ("index",), dynamic=False),
    Case("index_tensor_input", lambda x, i: x[:, i[0]], [X, T((2, 3), "int32", low=0, high=5)], ("index",)),
    Case("unsafe_index", lambda x: torch.ops.aten._unsafe_index(x, [None, rows(5, 4, 4)]), [X], ("index",)),
    Case("index_bool_values", lambda m: m[:, rows(5, 2, 2, 0)], [B], ("index",)),
    Case("index_bf16", lambda x: x.to(torch.bfloat16)[:, rows(5, 4, 1)], [X], ("index",)),
    Case("diagonal", lambda x: torch.diagonal(x, 0, 1, 2), [X], ("index", "arange")),
    Case("diagonal_moved", lambda x: torch.diagonal(x, 0, 2, 1), [X], ("transpose", "index")),
    Case("diagonal_offset", lambda x: torch.diagonal(x, 2, -1, -2), [X], ("index",)),
    Case("diagonal_negative_offset", lambda x: x.diagonal(-1, 2, 1), [I], ("index",)),
    Case("diagonal_batch", lambda x: x.diagonal(1, 0, 2), [X], ("index",)),
    # take along one axis
    Case("index_select", lambda x: x.index_select(1, rows(5, 4, 0, 2)), [X], ("take",)),
    Case("index_select_scalar_index", lambda x: x.index_select(-1, torch.tensor(2)), [I], ("take",)),
    Case("index_select_input_index", lambda x, i: x.index_select(2, i[0]), [X, T((2, 3), "int64", high=4)], ("take",)),
    Case("embedding_int64", Embed(), [IDS], ("embedding",)),
    Case("embedding_int32", Embed(), [T((2, 6), "int32", low=0, high=10)], ("embedding",)),
    Case("embedding_padding_idx", Embed(padding_idx=0), [IDS], ("embedding",)),
    Case("embedding_functional", lambda ids, w: F.embedding(ids, w[0]), [IDS, T((2, 10, 3))], ("embedding",)),
    Case("gather_dim1", lambda x, i: x.gather(1, i), [X, T((2, 3, 4), "int64", low=0, high=5)], ("take_along_axis",)),
    Case(
        "gather_smaller_index",
        lambda x, i: torch.gather(x, -1, i),
        [X, T((2, 3, 2), "int64", low=0, high=4)],
        ("take_along_axis", "slice"),
    ),
    Case("gather_int", lambda x, i: x.gather(2, i), [I, T((2, 5, 1), "int64", low=0, high=4)], ("take_along_axis",)),
    Case(
        "take_along_dim",
        lambda x, i: torch.take_along_dim(x, i, 1),
        [X, T((2, 5, 1), "int64", low=0, high=5)],
        ("take_along_axis", "broadcast_to"),
        dynamic=False,  # torch's broadcasting of the index specializes the batch
    ),
    # updates through slices
    Case("slice_scatter", lambda x, y: torch.slice_scatter(x, y[:, :2], 1, 1, 3), [X, X], ("slice_update",)),
    Case("slice_scatter_step", lambda x, y: torch.slice_scatter(x, y[:, :2], 1, 0, 4, 2), [X, X], ("slice_update",)),
    Case("select_scatter", lambda x, y: torch.select_scatter(x, y[:, 0], 1, -1), [X, X], ("slice_update",)),
    Case(
        "select_scatter_symbolic",
        lambda x: torch.select_scatter(torch.cat([x, x]), x[0], 0, x.shape[0]),
        [X],
        ("slice_update",),
    ),
    Case(
        "slice_scatter_symbolic",
        lambda x, y: torch.slice_scatter(torch.cat([x, x]), y, 0, x.shape[0]),
        [X, X],
        ("slice_update",),
    ),
    Case("setitem_row", SetItem(lambda x: (slice(None), 0), lambda x: 1.0), [X], ("slice_update",)),
    Case("setitem_last_column_int", SetItem(lambda x: (..., -1), lambda x: 7), [I], ("slice_update",)),
    Case("setitem_strided", SetItem(lambda x: (..., slice(None, None, 2)), lambda x: 0.0), [X], ("slice_update",)),
    Case(
        "setitem_tensor",
        SetItem(lambda x: (slice(None), slice(1, 3)), lambda x, y: y[:, :2] * 2),
        [X, X],
        ("slice_update",),
    ),
    # updates through index tensors
    Case(
        "index_put",
        lambda x, v: x.index_put((rows(2, 1, 0),), v[:2]),
        [X, X],
        ("index_update",),
        dynamic=False,
    ),
    Case(
        "index_put_accumulate",
        lambda x, v: x.index_put((batch_rows(x), rows(5, 1, 1, 4)), v[:, :3], accumulate=True),
        [X, X],
        ("index_update",),
    ),
    Case(
        "index_put_three_indices",
        lambda x: x.index_put((batch_rows(x), rows(5, 0, 2), rows(4, 3, 3)), torch.tensor(-1.0)),
        [X],
        ("index_update",),
    ),
    Case(
        "unsafe_index_put",
        lambda x: torch.ops.aten._unsafe_index_put(x, [batch_rows(x), rows(5, 3)], torch.tensor(2.0), True),
        [X],
        ("index_update",),
    ),
    Case("setitem_index", SetItem(lambda x: (slice(None), rows(5, 3, 1)), lambda x: 5), [I], ("index_update",)),
    Case("index_add", lambda x, y: x.index_add(1, rows(5, 0, 0, 3), y[:, :3]), [X, X], ("index_update",)),
    Case("setitem_mask", SetItem(lambda x: x < 0, lambda x: 0.0), [X], ("where",)),
    Case("setitem_mask_rows", SetItem(lambda x: x[..., 0] > 0, lambda x, y: y[0, 0]), [X, X], ("where",)),
    Case(
        "index_put_mask_accumulate",
        lambda x, m: x.index_put((m,), torch.tensor(2.0), accumulate=True),
        [X, B],
        ("where", "add"),
    ),
    Case("setitem_mask_middle", SetItem(lambda x: (slice(None), x[0, :, 0] > 0), lambda x: 3.0), [X], ("where",)),
    # scatter along an axis
    Case("scatter_src", lambda x, i, y: x.scatter(1, i, y), [X, AXIS1_INDEX, X], ("put_along_axis", "slice")),
    Case("scatter_value", lambda x, i: x.scatter(2, i, -2.0), [X, T((2, 5, 2), "int64", high=4)], ("put_along_axis",)),
    Case("scatter_add", lambda x, i, y: x.scatter_add(1, i, y), [X, T((2, 7, 4), "int64", high=5), T((2, 7, 4))], ("put_along_axis",)),
    Case("scatter_add_int", lambda x, i, y: x.scatter_add(1, i, y), [I, AXIS1_INDEX, I], ("put_along_axis",)),
    Case(
        "scatter_multiply",
        lambda x, i, y: x.scatter(1, i, y, reduce="multiply"),
        [X, AXIS1_INDEX, X],
        ("put_along_axis",),
    ),
]

_SCATTER_INDEX = T((2, 6, 4), "int64", low=0, high=5)
_SCATTER_SRC = T((2, 6, 4))
for _reduce in ("sum", "prod", "mean", "amax", "amin"):
    for _include in (True, False):
        CASES.append(
            Case(
                f"scatter_reduce_{_reduce}_{'self' if _include else 'noself'}",
                lambda x, i, y, r=_reduce, s=_include: x.scatter_reduce(1, i, y, r, include_self=s),
                [X, _SCATTER_INDEX, _SCATTER_SRC],
                ("put_along_axis",),
                rtol=1e-5,
            )
        )
CASES.append(
    Case(
        "scatter_reduce_mean_int",
        lambda x, i, y: x.scatter_reduce(1, i, y, "mean"),
        [I, _SCATTER_INDEX, T((2, 6, 4), "int64", low=-9, high=9)],
        ("put_along_axis", "floor_divide"),
    )
)


@pytest.mark.parametrize("case", params(CASES))
def test_op(case):
    run_case(case)


def test_boolean_mask_index_is_reported():
    with pytest.raises(Exception, match="data-dependent"):
        run_case(Case("mask_index", lambda x: x[x > 0], [X], ()))


# ---- the torch backend's lowerings on graphs built directly (paths torch-origin graphs do not take) ----

from tests.ops.harness import run_node  # noqa: E402

OPEN = 2**62


def _x(*shape, seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def _i(values, dtype=torch.int64):
    return torch.tensor(values, dtype=dtype)


NODE_CASES = {  # id: (op, inputs, attributes and options)
    # reads clamp indices out of range (take and embedding clamp negative ones to 0, the others count them from the end)
    "take_matrix_index_negative_axis": ("take", [_x(2, 5, 4), _i([[0, -1, 3], [7, 2, 2]], torch.int32)], {"axis": -2}),
    "take_int16_index": ("take", [_x(2, 5), _i([4, 0, 9], torch.int16)], {"axis": 1, "export": True}),
    "embedding_ids_out_of_range": ("embedding", [_x(6, 3), _i([[1, 12], [-3, 4]])], {"dynamic": False}),
    "take_along_axis_negative": ("take_along_axis", [_x(2, 5, 4), _i([[[-1, 0, 9, -7]]] * 2)], {"axis": 1, "dynamic": False}),
    "take_along_axis_uint8": ("take_along_axis", [_x(2, 5, 4), _i([[[1], [3], [0], [2], [3]]] * 2, torch.uint8)], {"axis": 2, "dynamic": False}),
    "index_negative_clamped": ("index", [_x(2, 5, 4), _i([-1, 6, -9]), _i([0, -2, 5])], {"axes": (1, 2)}),
    "index_uint8_not_mask": ("index", [_x(2, 5, 4), _i([1, 1, 0], torch.uint8)], {"axes": (-1,)}),
    "index_non_adjacent_negative_axes": ("index", [_x(3, 5, 4), _i([2, 0]), _i([3, 1])], {"axes": (0, -1), "dynamic": False}),
    # writes count negative indices from the end
    "index_update_add_negative": ("index_update", [_x(2, 5, 4), _x(5, 3, seed=1), _i([-1, 0, -1])], {"axes": (2,), "reduce": "add"}),
    "index_update_cast_values": ("index_update", [_x(2, 5, 4), _i(3), _i([[0], [1]]), _i([2, -1])], {"axes": (1, 2)}),
    "index_update_non_adjacent": ("index_update", [_x(3, 5, 4), _x(2, 5, seed=1), _i([2, -3]), _i([3, 1])], {"axes": (0, 2), "dynamic": False}),
    "put_along_axis_negative": ("put_along_axis", [_x(2, 5, 4), _i([[[-1, 0, 2, -5]]] * 2), _x(2, 1, 4, seed=1)], {"axis": 1}),
    "put_along_axis_max_int32": ("put_along_axis", [_x(2, 5, 4), _i([[[0], [0], [3]]] * 2, torch.int32), _x(2, 3, 1, seed=1)], {"axis": 2, "reduce": "max"}),
    "put_along_axis_min": ("put_along_axis", [_x(2, 5, 4), _i([[[0, 1, 0, 1]]] * 2), _x(2, 1, 4, seed=1)], {"axis": 1, "reduce": "min"}),
    "put_along_axis_mul_cast": ("put_along_axis", [_x(2, 5, 4), _i([[[0, 1, 0, 1]]] * 2), _i([[[2, 3, 4, 5]]] * 2)], {"axis": 1, "reduce": "mul"}),
    "slice_update_open_dynamic": ("slice_update", [_x(4, 3), _x(3, 3, seed=1)], {"axis": 0, "start": 1, "end": OPEN, "dynamic": False}),
    "slice_update_symbolic": ("slice_update", [_x(6), _x(2, seed=1)], {"axis": 0, "start": "batch - 2", "end": OPEN, "export": True}),
}


@pytest.mark.parametrize("case", sorted(NODE_CASES))
def test_index_node_in_torch(case):
    op, inputs, options = NODE_CASES[case]
    run_node(op, inputs, **options)
