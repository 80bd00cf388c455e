"""ATen indexing: advanced indexing, index_select, gather, embedding, and the scatter family."""

from __future__ import annotations

from collections.abc import Sequence

from unigraph.dims import Dim, maximum, minimum
from unigraph.frontends.torch_ops import aten, handles
from unigraph.frontends.builder import Builder, TensorRef
from unigraph.frontends.torch_ops.common import as_tensor, axis, is_floating, same_dim
from unigraph.frontends.torch_ops.shape import broadcast, dim_expr, same_shape, slice_at, transpose_to

_MASKS = ("bool", "uint8")


def _indexed(indices: Sequence[TensorRef | None]) -> tuple[tuple[int, ...], list[TensorRef]]:
    """The axes that ``indices`` (a torch ``Tensor?[]``) index, and their index tensors."""
    axes = tuple(i for i, t in enumerate(indices) if t is not None)
    return axes, [indices[i] for i in axes]


@handles(aten.index.Tensor, aten._unsafe_index.Tensor)
def index(b: Builder, x, indices):
    """aten::index.Tensor(Tensor self, Tensor?[] indices): NumPy advanced indexing (None is ``:``)."""
    axes, tensors = _indexed(indices)
    if any(t.dtype in _MASKS for t in tensors):
        raise NotImplementedError(
            "indexing with a boolean mask gives a data-dependent shape; "
            "use torch.where(mask, x, other) to keep the shape static"
        )
    return b.emit("index", x, *tensors, axes=axes)


@handles(aten.index_select.default)
def index_select(b: Builder, x, dim, index):
    """aten::index_select(Tensor self, int dim, Tensor index): a 0-d index keeps the axis."""
    if index.rank == 0:
        index = b.emit("reshape", index, shape=(1,))
    return b.emit("take", x, index, axis=axis(dim, x.rank))


@handles(aten.embedding.default)
def embedding(b: Builder, weight, indices, padding_idx=-1, scale_grad_by_freq=False, sparse=False):
    """aten::embedding(Tensor weight, Tensor indices, ...): rows of ``weight``; padding_idx only affects gradients."""
    return b.emit("embedding", b.weight(weight, "embedding"), indices)


@handles(aten.diagonal.default)
def diagonal(b: Builder, x, offset=0, dim1=0, dim2=1):
    """aten::diagonal(Tensor(a) self, int offset=0, int dim1=0, int dim2=1): the diagonal as a new last axis."""
    d1, d2 = axis(dim1, x.rank), axis(dim2, x.rank)
    moved = transpose_to(b, x, [a for a in range(x.rank) if a not in (d1, d2)] + [d1, d2])
    row, col = max(-offset, 0), max(offset, 0)
    length = dim_expr(b, lambda n1, n2: maximum(0, minimum(n1 - row, n2 - col)), x.shape[d1], x.shape[d2])
    rows = b.emit("arange", start=row, end=dim_expr(b, lambda n: n + row, length), dtype="int64")
    cols = b.emit("arange", start=col, end=dim_expr(b, lambda n: n + col, length), dtype="int64")
    return b.emit("index", moved, rows, cols, axes=(x.rank - 2, x.rank - 1))


@handles(aten.gather.default)
def gather(b: Builder, x, dim, index, *, sparse_grad=False):
    """aten::gather(Tensor self, int dim, Tensor index, *, bool sparse_grad=False).

    ``index`` may be smaller than ``x`` on the other axes: ``x`` is cropped to it.
    """
    a = axis(dim, x.rank)
    return b.emit("take_along_axis", _crop(b, x, index.shape, skip=a), index, axis=a)


def _crop(b: Builder, x: TensorRef, shape: Sequence[Dim], skip: int | None = None) -> TensorRef:
    """``x[:shape[0], :shape[1], ...]``, leaving axis ``skip`` whole."""
    for a, (have, want) in enumerate(zip(x.shape, shape)):
        if a != skip and not same_dim(have, want):
            x = b.emit("slice", x, axis=a, start=0, end=want)
    return x


# ---- updates ---------------------------------------------------------------------------------


@handles(aten.slice_scatter.default)
def slice_scatter(b: Builder, x, src, dim=0, start=None, end=None, step=1):
    """aten::slice_scatter(Tensor self, Tensor src, int dim=0, SymInt? start, SymInt? end, SymInt step=1)."""
    src = as_tensor(b, src, x.dtype)
    if same_shape(src.shape, x.shape):  # the whole axis: functionalized in-place writes end so
        return src
    attrs = {"axis": axis(dim, x.rank), "step": step}
    attrs.update({k: v for k, v in (("start", start), ("end", end)) if v is not None})
    return b.emit("slice_update", x, src, **attrs)


@handles(aten.select_scatter.default)
def select_scatter(b: Builder, x, src, dim, index):
    """aten::select_scatter(Tensor self, Tensor src, int dim, SymInt index): ``x[..., index, ...] = src``."""
    a = axis(dim, x.rank)
    update = b.emit("expand_dims", as_tensor(b, src, x.dtype), axes=(a,))
    return b.emit("slice_update", x, update, **slice_at(b, a, index))


@handles(aten.index_put.default, aten._unsafe_index_put.default)
def index_put(b: Builder, x, indices, values, accumulate=False):
    """aten::index_put(Tensor self, Tensor?[] indices, Tensor values, bool accumulate=False)."""
    axes, tensors = _indexed(indices)
    values = as_tensor(b, values, x.dtype)
    if any(t.dtype in _MASKS for t in tensors):
        if len(tensors) != 1:
            raise NotImplementedError("index_put with a boolean mask among other indices")
        return _masked_put(b, x, axes[0], tensors[0], values, accumulate)
    return b.emit("index_update", x, values, *tensors, axes=axes, reduce="add" if accumulate else "set")


def _masked_put(b: Builder, x: TensorRef, a: int, mask: TensorRef, values: TensorRef, accumulate: bool):
    """``x[..., mask] = values`` as a ``where``, for values that do not vary along the selected elements."""
    trailing = x.rank - a - mask.rank
    extra = values.rank - trailing
    if extra > 1 or (extra == 1 and values.shape[0] != 1):
        raise NotImplementedError(
            "x[mask] = values with one value per selected element has a data-dependent shape; "
            "use torch.where(mask, values, x)"
        )
    if extra == 1:
        values = b.emit("squeeze", values, axes=(0,))
    mask = as_tensor(b, mask, "bool")
    if trailing:
        mask = b.emit("expand_dims", mask, axes=tuple(range(mask.rank, mask.rank + trailing)))
    if accumulate:
        zero = b.const(0, x.dtype)
        return b.emit("add", x, b.emit("where", mask, values, zero))
    return b.emit("where", mask, values, x)


# ---- scatter ---------------------------------------------------------------------------------


def _scatter(b: Builder, x, dim, index, src, reduce: str) -> TensorRef:
    """``put_along_axis`` of ``src`` (a tensor cropped to ``index``, or a scalar) into ``x``."""
    if isinstance(src, TensorRef):
        updates = _crop(b, as_tensor(b, src, x.dtype), index.shape)
    else:
        updates = broadcast(b, b.const(src, x.dtype), index.shape)
    return b.emit("put_along_axis", x, index, updates, axis=axis(dim, x.rank), reduce=reduce)


@handles(aten.scatter.src, aten.scatter.value)
def scatter(b: Builder, x, dim, index, src=None, value=None):
    """aten::scatter.src/.value(Tensor self, int dim, Tensor index, Tensor src | Scalar value)."""
    return _scatter(b, x, dim, index, src if value is None else value, "set")


@handles(aten.scatter.reduce, aten.scatter.value_reduce)
def scatter_reduce_legacy(b: Builder, x, dim, index, src=None, value=None, *, reduce):
    """aten::scatter.reduce(Tensor self, int dim, Tensor index, Tensor src, *, str reduce): add or multiply."""
    source = src if value is None else value
    return _scatter(b, x, dim, index, source, {"add": "add", "multiply": "mul"}[reduce])


@handles(aten.scatter_add.default)
def scatter_add(b: Builder, x, dim, index, src):
    """aten::scatter_add(Tensor self, int dim, Tensor index, Tensor src)."""
    return _scatter(b, x, dim, index, src, "add")


_REDUCE = {"sum": "add", "mean": "add", "prod": "mul", "amax": "max", "amin": "min"}


@handles(aten.scatter_reduce.two)
def scatter_reduce(b: Builder, x, dim, index, src, reduce, *, include_self=True):
    """aten::scatter_reduce.two(Tensor self, int dim, Tensor index, Tensor src, str reduce, *, bool include_self=True).

    Without ``include_self`` the scattered positions start from the sum's or
    product's identity, or from one of their own ``src`` values for amax/amin;
    ``mean`` divides the sum by the count of values (self counting once).
    """
    if not include_self:
        start = src if reduce in ("amax", "amin") else int(reduce == "prod")
        x = _scatter(b, x, dim, index, start, "set")
    total = _scatter(b, x, dim, index, src, _REDUCE[reduce])
    if reduce != "mean":
        return total
    counts = b.emit("full", shape=x.shape, value=int(include_self), dtype=x.dtype)
    counts = _scatter(b, counts, dim, index, 1, "add")
    counts = b.emit("maximum", counts, b.const(1, x.dtype))
    return b.emit("div" if is_floating(x.dtype) else "floor_divide", total, counts)
