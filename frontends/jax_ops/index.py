"""``gather`` and ``scatter``: indexing as ``slice``, ``take``, ``embedding``, ``index`` and their updates.

JAX lowers all of NumPy indexing to ``gather``: ``x[1:]`` and ``x[:, :2]``
(constant starts), ``jnp.take`` and ``x[ids]`` (one computed index per
output row), ``x[i, :, j]`` (several), ``jnp.take_along_axis`` (batching
dims). A gather is translated by splitting its index vector into components
(looking through the ``concatenate`` that built it, so constant components
stay known):

- a constant component that is the same for every output row is a static
  start: a ``slice`` (clamped so the window fits, as gather clamps);
- the other components index single elements: ``take`` on one axis
  (``embedding`` when the operand is an embedding table), ``index`` on
  several;
- the result is reshaped to gather's layout (batch dims where
  ``offset_dims`` leave room) and, in ``FILL_OR_DROP`` mode (``jnp.take``'s
  default), out-of-range rows are replaced by the fill value.

``scatter``/``scatter-add`` of single elements on some axes and whole
windows on the others (``x.at[i].set``, ``x.at[:, ids].add``) become
``index_update``. Other layouts (windows at computed starts, batching dims
other than ``take_along_axis``'s) are reported as unsupported.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from jax.lax import GatherScatterMode

from unigraph import dims
from unigraph.dtypes import numpy_dtype
from unigraph.frontends.builder import TensorRef
from unigraph.frontends.jax_ops import handles
from unigraph.frontends.jax_ops.common import ints, is_floating
from unigraph.frontends.jax_ops.context import Context, Unsupported
from unigraph.frontends.jax_ops.shape import offset


@dataclasses.dataclass
class Component:
    """One column of an index vector: a constant array or a graph value over the batch dims."""

    value: np.ndarray | None
    ref: TensorRef | None

    def uniform(self) -> int | None:
        """The one value of a constant component that is the same everywhere."""
        if self.value is None or self.value.size == 0 or not np.all(self.value == self.value.flat[0]):
            return None
        return int(self.value.flat[0])


def components(cx: Context, position: int) -> list[Component]:
    """The columns of the index operand ``cx.eqn.invars[position]`` (index vector last)."""
    var = cx.eqn.invars[position]
    parts = [var]
    producer = cx.producer(var)
    if producer is not None and producer.primitive.name == "concatenate":
        if int(producer.params["dimension"]) == len(var.aval.shape) - 1:
            parts = list(producer.invars)
    out = []
    for part in parts:
        ref = cx.known(part)
        if ref is None:  # defined later (absorbed neighbours only); read the operand as a whole
            return _columns(cx, cx.known(var))
        column = _unexpanded(cx, part)
        out.extend([Component(cx.constant(column), column)] if column is not None else _columns(cx, ref))
    return out


def _unexpanded(cx: Context, part) -> TensorRef | None:
    """The value an index column was made from by adding its trailing index-vector axis (``idx[..., None]``)."""
    producer = cx.producer(part)
    if producer is None or producer.primitive.name not in ("broadcast_in_dim", "reshape"):
        return None
    source = producer.invars[0]
    if tuple(source.aval.shape) + (1,) != tuple(part.aval.shape):
        return None
    return cx.known(source)


def _columns(cx: Context, ref: TensorRef) -> list[Component]:
    value = cx.constant(ref)
    width = ref.shape[-1]
    if value is not None:
        return [Component(value[..., k], None) for k in range(width)]
    if width == 1:
        return [Component(None, cx.emit("squeeze", ref, axes=(ref.rank - 1,)))]
    last = ref.rank - 1
    return [
        Component(None, cx.emit("squeeze", cx.emit("slice", ref, axis=last, start=k, end=k + 1), axes=(last,)))
        for k in range(width)
    ]


def _as_ref(cx: Context, c: Component, dtype: str) -> TensorRef:
    return c.ref if c.ref is not None else cx.array(np.asarray(c.value, numpy_dtype(dtype)))


@handles("gather")
def gather(cx: Context, x, indices, *, dimension_numbers, slice_sizes, mode, fill_value=None, **_):
    dn = dimension_numbers
    if dn.operand_batching_dims:
        return _take_along_axis(cx, x, indices, dn, mode, fill_value)
    collapsed = set(ints(dn.collapsed_slice_dims))
    sizes = [dims.from_jax(s) for s in slice_sizes]
    starts: dict[int, int] = {}
    points: list[tuple[int, Component]] = []
    for axis, c in zip(ints(dn.start_index_map), components(cx, 1)):
        if cx.same_dim(sizes[axis], x.shape[axis]):
            continue  # the whole axis: the start clamps to 0
        if c.uniform() is not None:
            starts[axis] = c.uniform()
        elif sizes[axis] == 1:
            points.append((axis, c))
        else:
            raise Unsupported("gather of windows longer than one element at computed starts")
    rooms = {a: cx.arith(x.shape[a], "-", sizes[a]) for a in starts}
    if mode == GatherScatterMode.FILL_OR_DROP and any(
        isinstance(rooms[a], int) and not 0 <= s <= rooms[a] for a, s in starts.items()
    ):
        raise Unsupported("gather whose constant start is out of range in FILL_OR_DROP mode")
    y = _static_windows(cx, x, sizes, starts, rooms, {a for a, _ in points})
    labels = [("axis", a) for a in range(x.rank)]
    index_dtype = indices.dtype
    batch_rank = indices.rank - 1
    if points:
        refs = [_as_ref(cx, c, index_dtype) for _, c in points]
        axes = tuple(a for a, _ in points)
        if mode == GatherScatterMode.CLIP:
            refs = [_clip(cx, r, x.shape[a]) for r, a in zip(refs, axes)]
        y = _read(cx, y, refs, axes)
        batch = [("batch", k) for k in range(batch_rank)]
        kept = [lab for lab in labels if lab[1] not in axes]
        adjacent = sorted(axes) == list(range(min(axes), min(axes) + len(axes)))
        if adjacent:
            labels = [lab for lab in kept if lab[1] < min(axes)] + batch + [lab for lab in kept if lab[1] > min(axes)]
        else:
            labels = batch + kept
    kept = [a for a in range(x.rank) if a not in collapsed]
    y = _to_gather_layout(cx, y, labels, collapsed, kept, ints(dn.offset_dims), batch_rank, {a for a, _ in points})
    if mode == GatherScatterMode.FILL_OR_DROP and points:
        y = _fill_out_of_range(cx, y, points, x, ints(dn.offset_dims), index_dtype, fill_value)
    return y


def _static_windows(cx: Context, x: TensorRef, sizes, starts: dict, rooms: dict, points: set) -> TensorRef:
    """``x`` cut to the gather's window on every axis not indexed element by element.

    Gather clamps a window into the operand: a start past ``rooms[axis]``
    (the operand's size less the window's) moves back to it.
    """
    y = x
    for axis in range(x.rank):
        if axis in points or cx.same_dim(sizes[axis], x.shape[axis]):
            continue
        start, room = starts.get(axis, 0), rooms.get(axis)
        if isinstance(room, int):
            start = min(max(start, 0), room)
        elif start != 0:
            raise Unsupported("gather of a window at a nonzero start where the room left is symbolic")
        y = cx.emit("slice", y, axis=axis, start=start, end=offset(cx, start, sizes[axis]))
    return y


def _clip(cx: Context, index: TensorRef, n: dims.Dim) -> TensorRef:
    dtype = index.dtype
    last = cx.arith(n, "-", 1)
    hi = cx.scalar(last, dtype) if isinstance(last, int) else cx.emit("dim_value", dim=last, dtype=dtype)
    return cx.emit("clip", index, cx.scalar(0, dtype), hi)


def _read(cx: Context, y: TensorRef, refs: list[TensorRef], axes: tuple[int, ...]) -> TensorRef:
    """Single elements along ``axes``: ``embedding`` for an embedding table, ``take`` on one axis, else ``index``."""
    if len(axes) == 1:
        if axes == (0,) and y.rank == 2 and cx.role(y) == "embedding":
            return cx.emit("embedding", y, refs[0])
        return cx.emit("take", y, refs[0], axis=axes[0])
    return cx.emit("index", y, *refs, axes=axes)


def _to_gather_layout(cx: Context, y, labels, collapsed: set, kept, offset_dims, batch_rank: int, points: set):
    """``y`` (axes named by ``labels``) squeezed, expanded and transposed into gather's output layout.

    The output holds the operand's non-collapsed axes (``kept``) at
    ``offset_dims`` and the index batch dims, in order, everywhere else.
    """
    drop = [i for i, (kind, a) in enumerate(labels) if kind == "axis" and a in collapsed and a not in points]
    if drop:
        y = cx.emit("squeeze", y, axes=tuple(drop))
        labels = [lab for i, lab in enumerate(labels) if i not in drop]
    out_rank = cx.out_type.rank
    offsets = iter(kept)
    batches = iter(range(batch_rank))
    target = [("axis", next(offsets)) if i in offset_dims else ("batch", next(batches)) for i in range(out_rank)]
    missing = [i for i, lab in enumerate(target) if lab not in labels]
    if missing:  # non-collapsed point axes (size 1), or batch dims of a gather without point indices
        present = [lab for lab in target if lab in labels]
        order = [labels.index(lab) for lab in present]
        if order != list(range(len(order))):
            y = cx.emit("transpose", y, perm=tuple(order))
        y = cx.emit("expand_dims", y, axes=tuple(missing))
        shape = cx.out_type.shape
        return y if cx.same_shape(y.shape, shape) else cx.emit("broadcast_to", y, shape=shape)
    order = [labels.index(lab) for lab in target]
    return y if order == list(range(len(order))) else cx.emit("transpose", y, perm=tuple(order))


def _fill_out_of_range(cx: Context, y, points, x, offset_dims, dtype: str, fill_value) -> TensorRef:
    """``y`` with the rows whose point index is out of range replaced by the fill value."""
    valid = None
    for axis, c in points:
        index = _as_ref(cx, c, dtype)
        n = x.shape[axis]
        size = cx.scalar(n, dtype) if isinstance(n, int) else cx.emit("dim_value", dim=n, dtype=dtype)
        ok = cx.emit(
            "logical_and",
            cx.emit("greater_equal", index, cx.scalar(0, dtype)),
            cx.emit("less", index, size),
        )
        valid = ok if valid is None else cx.emit("logical_and", valid, ok)
    if cx.constant(valid) is not None and bool(np.all(cx.constant(valid))):
        return y
    if offset_dims:
        valid = cx.emit("expand_dims", valid, axes=tuple(offset_dims))
    return cx.emit("where", valid, y, cx.scalar(_fill(y.dtype, fill_value), y.dtype))


def _fill(dtype: str, fill_value):
    """jax's fill for out-of-range gathers: NaN, the lowest signed / highest unsigned integer, or True."""
    if fill_value is not None:
        return fill_value
    np_dtype = numpy_dtype(dtype)
    if is_floating(dtype):
        return float("nan")
    if dtype == "bool":
        return True
    info = np.iinfo(np_dtype)
    return int(info.min if np.issubdtype(np_dtype, np.signedinteger) else info.max)


def _take_along_axis(cx: Context, x, indices, dn, mode, fill_value) -> TensorRef:
    """A gather with batching dims in ``jnp.take_along_axis``'s form: one element along one axis per position."""
    start_map, collapsed = ints(dn.start_index_map), ints(dn.collapsed_slice_dims)
    batching, index_batching = ints(dn.operand_batching_dims), ints(dn.start_indices_batching_dims)
    if len(start_map) != 1 or collapsed != start_map or dn.offset_dims:
        raise Unsupported("gather with operand_batching_dims other than take_along_axis's")
    (axis,) = start_map
    others = tuple(a for a in range(x.rank) if a != axis)
    if batching != others or index_batching != others or indices.rank != x.rank + 1:
        raise Unsupported("gather with operand_batching_dims other than take_along_axis's")
    index = cx.emit("squeeze", indices, axes=(x.rank,))
    y = cx.emit("take_along_axis", x, index, axis=axis)
    if mode == GatherScatterMode.FILL_OR_DROP:
        y = _fill_out_of_range(cx, y, [(axis, Component(None, index))], x, (), index.dtype, fill_value)
    return y


@handles("scatter", "scatter-add")
def scatter(cx: Context, x, indices, updates, *, dimension_numbers, mode, **_):
    """Element updates on some axes, whole windows on the others: ``index_update`` (set or add)."""
    dn = dimension_numbers
    inserted, targets = ints(dn.inserted_window_dims), ints(dn.scatter_dims_to_operand_dims)
    window_dims = ints(dn.update_window_dims)
    if dn.operand_batching_dims or sorted(targets) != sorted(inserted):
        raise Unsupported("scatter other than of single elements on the indexed axes")
    windows = [a for a in range(x.rank) if a not in inserted]
    if any(not cx.same_dim(updates.shape[d], x.shape[a]) for d, a in zip(window_dims, windows)):
        raise Unsupported("scatter of windows smaller than the operand")
    dtype = indices.dtype
    refs = []
    for axis, c in zip(targets, components(cx, 1)):
        ref = _as_ref(cx, c, dtype)
        if mode == GatherScatterMode.CLIP:
            ref = _clip(cx, ref, x.shape[axis])
        elif mode == GatherScatterMode.FILL_OR_DROP and c.value is None:
            ref = _past_end_if_negative(cx, ref, x.shape[axis])
        refs.append(ref)
    values = _to_index_layout(cx, updates, window_dims, targets)
    reduce = "add" if cx.primitive == "scatter-add" else "set"
    return cx.emit("index_update", x, values, *refs, axes=targets, reduce=reduce)


def _past_end_if_negative(cx: Context, index: TensorRef, n: dims.Dim) -> TensorRef:
    """Out-of-range negative indices moved past the end, where ``index_update`` drops them (it would wrap them)."""
    dtype = index.dtype
    end = cx.scalar(n, dtype) if isinstance(n, int) else cx.emit("dim_value", dim=n, dtype=dtype)
    return cx.emit("where", cx.emit("less", index, cx.scalar(0, dtype)), end, index)


def _to_index_layout(cx: Context, updates: TensorRef, window_dims, targets) -> TensorRef:
    """Scatter updates (batch dims where ``update_window_dims`` leave room) in ``index``'s result layout.

    NumPy puts the broadcast index dims in place of the indexed axes when
    those are adjacent, else first; window dims keep the operand's order.
    """
    batch = [d for d in range(updates.rank) if d not in window_dims]
    ordered = sorted(targets)
    if ordered == list(range(ordered[0], ordered[0] + len(ordered))):
        before = sum(1 for a in range(ordered[0]) if a not in targets)
        perm = [*window_dims[:before], *batch, *window_dims[before:]]
    else:
        perm = [*batch, *window_dims]
    return updates if perm == list(range(updates.rank)) else cx.emit("transpose", updates, perm=tuple(perm))
