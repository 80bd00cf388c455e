"""ATen shape ops: views, permutes, broadcasts, concat/split, slices, padding, tiling."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from unigraph.dims import Dim, from_jax
from unigraph.frontends.torch_ops import aten, handles
from unigraph.frontends.builder import Builder, TensorRef
from unigraph.frontends.torch_ops.common import as_tensor, axes, axis, result_type, same_dim
from unigraph.ops.shape import OPEN


def dim_expr(b: Builder, fn: Callable, *operands: Dim) -> Dim:
    """``fn`` applied to dimensions (ints or expressions), as a dimension JAX normalized."""
    return from_jax(fn(*(b.scope.dim(d) for d in operands)))


def same_shape(a: Sequence[Dim], b: Sequence[Dim]) -> bool:
    return len(a) == len(b) and all(same_dim(x, y) for x, y in zip(a, b))


# ---- views ---------------------------------------------------------------------------------


@handles(aten.view.default, aten._unsafe_view.default, aten.reshape.default)
def view(b: Builder, x, size):
    """aten::view(Tensor(a) self, SymInt[] size): a reshape (one size may be -1)."""
    size = tuple(size)
    if same_shape(x.shape, size) or _same_but_inferred(x.shape, size):
        return x
    return b.emit("reshape", x, shape=size)


def _same_but_inferred(shape: Sequence[Dim], size: Sequence[Dim]) -> bool:
    """``size`` is ``shape`` with one size written -1: the same element count leaves it that axis's size."""
    return len(shape) == len(size) and list(size).count(-1) == 1 and all(
        same_dim(a, s) for a, s in zip(shape, size) if s != -1
    )


@handles(aten.flatten.using_ints)
def flatten(b: Builder, x, start_dim=0, end_dim=-1):
    """aten::flatten.using_ints(Tensor(a) self, int start_dim=0, int end_dim=-1): axes start..end as one."""
    if x.rank == 0:
        return b.emit("reshape", x, shape=(1,))
    start, end = axis(start_dim, x.rank), axis(end_dim, x.rank)
    size = dim_expr(b, lambda *sizes: math.prod(sizes), *x.shape[start : end + 1])
    return view(b, x, (*x.shape[:start], size, *x.shape[end + 1 :]))


@handles(aten.permute.default)
def permute(b: Builder, x, dims):
    """aten::permute(Tensor(a) self, int[] dims)."""
    return transpose_to(b, x, [axis(d, x.rank) for d in dims])


@handles(aten.transpose.int)
def transpose(b: Builder, x, dim0, dim1):
    """aten::transpose.int(Tensor(a) self, int dim0, int dim1): two axes swapped."""
    if x.rank < 2:
        return x
    perm = list(range(x.rank))
    a, c = axis(dim0, x.rank), axis(dim1, x.rank)
    perm[a], perm[c] = perm[c], perm[a]
    return transpose_to(b, x, perm)


@handles(aten.t.default)
def t(b: Builder, x):
    """aten::t(Tensor(a) self): a matrix transposed (vectors unchanged)."""
    return transpose_to(b, x, [1, 0]) if x.rank == 2 else x


def transpose_to(b: Builder, x: TensorRef, perm: Sequence[int]) -> TensorRef:
    """``x`` permuted by ``perm`` (no node for the identity)."""
    if list(perm) == list(range(x.rank)):
        return x
    return b.emit("transpose", x, perm=tuple(perm))


@handles(aten.unsqueeze.default)
def unsqueeze(b: Builder, x, dim):
    """aten::unsqueeze(Tensor(a) self, int dim)."""
    return b.emit("expand_dims", x, axes=(axis(dim, x.rank + 1),))


@handles(aten.squeeze.default, aten.squeeze.dim, aten.squeeze.dims)
def squeeze(b: Builder, x, dim=None):
    """aten::squeeze(Tensor(a) self, int[]? dim): the given (or all) axes that have size 1."""
    if x.rank == 0:
        return x
    ones = tuple(a for a in axes(dim, x.rank) if x.shape[a] == 1)
    return b.emit("squeeze", x, axes=ones) if ones else x


@handles(aten.expand.default)
def expand(b: Builder, x, size, *, implicit=False):
    """aten::expand(Tensor(a) self, SymInt[] size, *, bool implicit=False): -1 keeps a size."""
    lead = len(size) - x.rank
    shape = tuple(x.shape[i - lead] if s == -1 else s for i, s in enumerate(size))
    return broadcast(b, x, shape)


def broadcast(b: Builder, x: TensorRef, shape: Sequence[Dim]) -> TensorRef:
    """``x`` broadcast to ``shape`` (no node when it already has it)."""
    return x if same_shape(x.shape, shape) else b.emit("broadcast_to", x, shape=tuple(shape))


@handles(aten.copy.default)
def copy(b: Builder, x, src, non_blocking=False):
    """aten::copy(Tensor self, Tensor src, bool non_blocking=False): ``src`` in ``self``'s shape and dtype."""
    return broadcast(b, as_tensor(b, src, x.dtype), x.shape)


@handles(aten.as_strided.default)
def as_strided(b: Builder, x, size, stride, storage_offset=None):
    """aten::as_strided(Tensor(a) self, SymInt[] size, SymInt[] stride, SymInt? storage_offset).

    Only the identity view (``x``'s own size, contiguous strides, no offset)
    is a layout-free operation; any other stride pattern reads raw storage.
    Handlers see no strides, so ``x`` is taken to be contiguous (the
    identity as_strided of a permuted view, which reorders, would be misread).
    """
    if storage_offset in (None, 0) and same_shape(x.shape, size) and same_shape(stride, _contiguous(b, size)):
        return x
    raise NotImplementedError(
        f"as_strided(size={list(size)}, stride={list(stride)}, storage_offset={storage_offset}) "
        "reads the tensor's storage directly; only the identity view has a unigraph form. "
        "Write the model with view/permute/unfold instead"
    )


def _contiguous(b: Builder, shape: Sequence[Dim]) -> list[Dim]:
    strides, stride = [], 1
    for d in reversed(shape):
        strides.append(stride)
        stride = dim_expr(b, lambda s, n: s * n, stride, d)
    return strides[::-1]


# ---- joining and splitting -----------------------------------------------------------------


@handles(aten.cat.default)
def cat(b: Builder, tensors, dim=0):
    """aten::cat(Tensor[] tensors, int dim=0): dtypes promoted; legacy empty 1-d inputs ignored."""
    rank = max(t.rank for t in tensors)
    tensors = [t for t in tensors if t.rank == rank or t.shape != (0,)]
    dtype = result_type(*tensors)
    tensors = [as_tensor(b, t, dtype) for t in tensors]
    if len(tensors) == 1:
        return tensors[0]
    return b.emit("concat", *tensors, axis=axis(dim, rank))


@handles(aten.stack.default)
def stack(b: Builder, tensors, dim=0):
    """aten::stack(Tensor[] tensors, int dim=0): a new axis ``dim``, then concatenation."""
    new = axis(dim, tensors[0].rank + 1)
    return cat(b, [b.emit("expand_dims", t, axes=(new,)) for t in tensors], new)


@handles(aten.split.Tensor)
def split(b: Builder, x, split_size, dim=0):
    """aten::split.Tensor(Tensor(a -> *) self, SymInt split_size, int dim=0): equal pieces, the last shorter."""
    a = axis(dim, x.rank)
    n = x.shape[a]
    count = dim_expr(b, lambda n, s: -(-n // s), n, split_size)
    if not isinstance(count, int):
        raise NotImplementedError(
            f"split of a dimension of size {n} into pieces of {split_size}: the number of pieces "
            "depends on the input shape"
        )
    last = dim_expr(b, lambda n, s: n - (count - 1) * s, n, split_size)
    return split_with_sizes(b, x, [split_size] * (count - 1) + [last], dim)


@handles(aten.split_with_sizes.default)
def split_with_sizes(b: Builder, x, split_sizes, dim=0):
    """aten::split_with_sizes(Tensor(a -> *) self, SymInt[] split_sizes, int dim=0)."""
    if len(split_sizes) == 1:
        return [x]
    pieces = b.emit("split", x, sizes=tuple(split_sizes), axis=axis(dim, x.rank), n_out=len(split_sizes))
    return list(pieces)


@handles(aten.unbind.int)
def unbind(b: Builder, x, dim=0):
    """aten::unbind.int(Tensor(a -> *) self, int dim=0): the slices along ``dim``, that axis removed."""
    a = axis(dim, x.rank)
    n = x.shape[a]
    if not isinstance(n, int):
        raise NotImplementedError(f"unbind along a dynamic dimension ({n}): the number of outputs varies")
    return [b.emit("squeeze", piece, axes=(a,)) for piece in split_with_sizes(b, x, [1] * n, a)]


# ---- slicing -------------------------------------------------------------------------------


@handles(aten.slice.Tensor)
def slice_(b: Builder, x, dim=0, start=None, end=None, step=1):
    """aten::slice.Tensor(Tensor(a) self, int dim=0, SymInt? start=None, SymInt? end=None, SymInt step=1)."""
    a = axis(dim, x.rank)
    start = 0 if start is None else start
    end = OPEN if end is None else end
    whole = isinstance(end, int) and end >= OPEN or same_dim(end, x.shape[a])
    if start == 0 and step == 1 and whole:
        return x
    return b.emit("slice", x, axis=a, start=start, end=end, step=step)


@handles(aten.select.int)
def select(b: Builder, x, dim, index):
    """aten::select.int(Tensor(a) self, int dim, SymInt index): ``x[..., index, ...]``, the axis removed."""
    a = axis(dim, x.rank)
    return b.emit("squeeze", b.emit("slice", x, **slice_at(b, a, index)), axes=(a,))


def slice_at(b: Builder, a: int, index: Dim) -> dict:
    """``slice`` attributes for the single position ``index`` (negative counts from the end)."""
    end = OPEN if index == -1 else dim_expr(b, lambda i: i + 1, index)
    return {"axis": a, "start": index, "end": end}


@handles(aten.repeat.default)
def repeat(b: Builder, x, repeats):
    """aten::repeat(Tensor self, SymInt[] repeats): ``x`` tiled (``repeats`` may add leading axes)."""
    if len(repeats) == x.rank and all(r == 1 for r in repeats):
        return x
    return b.emit("tile", x, reps=tuple(repeats))


@handles(aten.tile.default)
def tile(b: Builder, x, dims):
    """aten::tile(Tensor self, SymInt[] dims): ``repeat`` with ``dims`` padded by leading ones."""
    return repeat(b, x, [1] * (x.rank - len(dims)) + list(dims))


@handles(aten.flip.default)
def flip(b: Builder, x, dims):
    """aten::flip(Tensor self, int[] dims)."""
    return b.emit("flip", x, axes=axes(dims, x.rank)) if dims else x


@handles(aten.roll.default)
def roll(b: Builder, x, shifts, dims=()):
    """aten::roll(Tensor self, SymInt[1] shifts, int[1] dims=[]): no dims rolls the flattened tensor."""
    if dims:
        return b.emit("roll", x, shifts=tuple(shifts), axes=tuple(axis(d, x.rank) for d in dims))
    flat = b.emit("reshape", x, shape=(-1,))
    rolled = b.emit("roll", flat, shifts=tuple(shifts), axes=(0,))
    return b.emit("reshape", rolled, shape=x.shape)


@handles(aten.unfold.default)
def unfold(b: Builder, x, dimension, size, step):
    """aten::unfold(Tensor(a) self, int dimension, int size, int step): sliding windows, window last."""
    return b.emit("sliding_window", x, axis=axis(dimension, x.rank), size=size, step=step)


# ---- padding -------------------------------------------------------------------------------


@handles(aten.constant_pad_nd.default)
def constant_pad_nd(b: Builder, x, pad, value=0):
    """aten::constant_pad_nd(Tensor self, SymInt[] pad, Scalar value=0): negative amounts crop."""
    return _pad(b, x, pad, "constant", value)


@handles(aten.pad.default)
def pad(b: Builder, x, pad, mode="constant", value=None):
    """aten::pad(Tensor self, SymInt[] pad, str mode="constant", float? value=None)."""
    modes = {"constant": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}
    if mode not in modes:
        raise NotImplementedError(f"padding mode {mode!r}")
    return _pad(b, x, pad, modes[mode], 0 if value is None else value)


def _pad(b: Builder, x: TensorRef, pad: Sequence, mode: str, value=0):
    """``pad`` lists (before, after) pairs from the last axis backwards."""
    low, high = [0] * x.rank, [0] * x.rank
    for i in range(len(pad) // 2):
        low[x.rank - 1 - i], high[x.rank - 1 - i] = pad[2 * i], pad[2 * i + 1]
    if mode != "constant" and any(isinstance(p, int) and p < 0 for p in pad):
        raise NotImplementedError(f"negative {mode} padding {list(pad)}")
    return b.emit("pad", x, low=tuple(low), high=tuple(high), mode=mode, value=value)


def _mode_pad(mode: str):
    def handler(b: Builder, x, padding):
        return _pad(b, x, padding, mode)

    handler.__doc__ = f"aten::*_pad{{1,2,3}}d(Tensor self, SymInt[] padding): {mode} padding of the last axes."
    return handler


handles(aten.reflection_pad1d, aten.reflection_pad2d, aten.reflection_pad3d)(_mode_pad("reflect"))
handles(aten.replication_pad1d, aten.replication_pad2d, aten.replication_pad3d)(_mode_pad("edge"))
handles(aten._pad_circular)(_mode_pad("wrap"))
