"""Keras lowerings: gathers by index tensors and their scatter counterparts.

Index semantics are JAX's (``unigraph.ops.index``): the reads clamp indices
that are out of range (``take`` and ``embedding`` clamp negative ones to 0,
``take_along_axis`` and ``index`` count them from the end first), the writes
count negative indices from the end and drop the others that are out of range
(the Keras backends would raise or write elsewhere). Indices of any integer
dtype run as int32.

Every write is a scatter into a flattened view: ``index_update`` scatters rows
of ``x`` moved to ``(indexed positions, rest)``, ``put_along_axis`` elements
of ``x`` flattened, ``slice_update`` with a step rows of ``x`` moved to the
front. Each runs on a copy of the rows with one spare row, where the writes to
drop go. ``set``, ``add``, ``max`` and ``min`` are ``ops.scatter_update``
with that reduction (duplicates combine as JAX's ``.at[]`` combines them;
``set``'s last write wins, as in XLA's CPU scatter); ``mul`` multiplies by
``ops.segment_prod`` of the updates, since ``scatter_update``'s ``mul`` loops
over the updates under TensorFlow, copying the tensor at each (under torch,
Keras loops over the updates for ``max`` and ``min`` too, and computes
segment products in float32).
"""

from __future__ import annotations

import numpy as np
from keras import ops

from unigraph.backends.keras_ops import lowers
from unigraph.backends.keras_ops.shape import OPEN, clamp, dim, is_static, slice_bounds


@lowers("take")
def take(x, indices, /, *, axis):
    return ops.take(x, clamp(_int32(indices), 0, dim(x, axis) - 1), axis=axis % len(x.shape))


@lowers("embedding")
def embedding(table, ids, /):
    return ops.take(table, clamp(_int32(ids), 0, dim(table, 0) - 1), axis=0)


@lowers("take_along_axis")
def take_along_axis(x, indices, /, *, axis):
    n = dim(x, axis)
    return ops.take_along_axis(x, clamp(_from_end(_int32(indices), n), 0, n - 1), axis=axis)


@lowers("index")
def index(x, /, *indices, axes):
    rows, flat, _, layout = _index_rows(x, axes, indices, clamped=True)
    return layout(ops.take(rows, flat, axis=0))


@lowers("index_update")
def index_update(x, values, /, *indices, axes, reduce="set"):
    rows, flat, valid, layout = _index_rows(x, axes, indices, clamped=False)
    # values broadcast to what x[key] reads, then laid out as the gathered rows (indices' dims first)
    values = layout(ops.broadcast_to(_as(values, x), layout.shape(flat, rows)), inverse=True)
    values = ops.reshape(values, (-1, *ops.shape(rows)[1:]))
    rows = _scatter(rows, ops.reshape(flat, (-1,)), values, ops.reshape(valid, (-1,)), reduce)
    return layout.restore(rows)


@lowers("put_along_axis")
def put_along_axis(x, indices, updates, /, *, axis, reduce="set"):
    rank = len(x.shape)
    axis %= rank
    shape, index_shape = ops.shape(x), ops.shape(indices)
    position = _from_end(_int32(indices), shape[axis])
    valid = ops.logical_and(position >= 0, position < shape[axis])
    # the element's offset in x flattened: the index along axis, its own position along the others
    flat, stride = 0, 1
    for a in reversed(range(rank)):
        if a == axis:
            coordinate = position
        else:
            along = [-1 if i == a else 1 for i in range(rank)]
            coordinate = ops.reshape(ops.arange(index_shape[a], dtype="int32"), along)
        flat = flat + coordinate * stride
        stride = stride * shape[a]
    updates = ops.broadcast_to(_as(updates, x), index_shape)
    out = _scatter(
        ops.reshape(x, (-1,)),
        ops.reshape(flat, (-1,)),
        ops.reshape(updates, (-1,)),
        ops.reshape(valid, (-1,)),
        reduce,
    )
    return ops.reshape(out, shape)


@lowers("slice_update")
def slice_update(x, updates, /, *, axis, start=0, end=OPEN, step=1):
    axis %= len(x.shape)
    n = dim(x, axis)
    start, _ = slice_bounds(n, start, end)
    count = dim(updates, axis)
    updates = _as(updates, x)
    if step == 1 and not (is_static(count) and is_static(n) and count > n):
        # lax.dynamic_update_slice moves the window back inside x; ops.slice_update does not under torch
        starts = [0] * len(x.shape)
        starts[axis] = clamp(start, 0, n - count)
        return ops.slice_update(x, starts, updates)
    if is_static(start) and is_static(count):
        positions = np.arange(start, start + step * count, step, dtype=np.int32)
    else:
        positions = ops.cast(start, "int32") + step * ops.arange(count, dtype="int32")
    rows = ops.moveaxis(x, axis, 0)
    rows = _scatter(rows, positions, ops.moveaxis(updates, axis, 0), positions < n, "set")
    return ops.moveaxis(rows, 0, axis)


# ---- helpers ---------------------------------------------------------------------------------


def _int32(indices):
    return indices if ops.dtype(indices) == "int32" else ops.cast(indices, "int32")


def _from_end(indices, n):
    """Negative indices counted from the end."""
    return ops.where(indices < 0, indices + n, indices)


def _as(values, x):
    return values if ops.dtype(values) == ops.dtype(x) else ops.cast(values, ops.dtype(x))


def _index_rows(x, axes, indices, *, clamped: bool):
    """``x`` as rows ``(prod of the indexed dims, *other dims)``, the row of each index, their validity, a layout.

    The index tensors broadcast together (the row index is a sum of their
    terms); ``layout`` moves gathered rows ``(*index dims, *other dims)`` where
    NumPy's advanced indexing puts them, ``layout(..., inverse=True)`` back,
    and ``layout.restore`` turns the rows back into ``x``'s shape.
    """
    rank = len(x.shape)
    shape = ops.shape(x)
    axes = [a % rank for a in axes]
    rest = [a for a in range(rank) if a not in axes]
    perm = axes + rest
    moved = x if perm == list(range(rank)) else ops.transpose(x, perm)
    count = 1
    for a in axes:
        count = count * shape[a]
    rows = ops.reshape(moved, (count, *(shape[a] for a in rest)))
    flat, valid = 0, True
    for a, i in zip(axes, indices):
        n = shape[a]
        i = _from_end(_int32(i), n)
        if clamped:
            i = clamp(i, 0, n - 1)
        else:
            valid = ops.logical_and(valid, ops.logical_and(i >= 0, i < n))
        flat = flat * n + i
    if clamped:
        valid = None
    else:
        valid = ops.broadcast_to(valid, ops.shape(flat))
    index_rank = len(flat.shape)
    adjacent = sorted(axes) == list(range(min(axes), max(axes) + 1))
    first = min(axes) if adjacent else 0
    return rows, flat, valid, _Layout(perm, moved, index_rank, first, len(rest))


class _Layout:
    def __init__(self, perm, moved, index_rank: int, first: int, rest: int):
        self.perm, self.moved_shape = perm, ops.shape(moved)
        # gathered (*index dims, *rest) -> (rest[:first], *index dims, rest[first:])
        leading, trailing = range(index_rank, index_rank + first), range(index_rank + first, index_rank + rest)
        self.order = [*leading, *range(index_rank), *trailing]

    def __call__(self, gathered, inverse: bool = False):
        if self.order == sorted(self.order):
            return gathered
        return ops.transpose(gathered, [int(p) for p in np.argsort(self.order)] if inverse else self.order)

    def shape(self, flat, rows) -> tuple:
        """The shape of what ``x[key]`` reads (rows gathered at ``flat``, laid out)."""
        gathered = (*ops.shape(flat), *ops.shape(rows)[1:])
        return tuple(gathered[i] for i in self.order)

    def restore(self, rows):
        moved = ops.reshape(rows, self.moved_shape)
        if self.perm == sorted(self.perm):
            return moved
        return ops.transpose(moved, [int(p) for p in np.argsort(self.perm)])


def _scatter(rows, positions, updates, valid, reduce: str):
    """``rows`` with ``updates[k]`` written (or combined by ``reduce``) at row ``positions[k]`` where ``valid[k]``.

    The writes to drop go to a spare last row, cut off after.
    """
    count = dim(rows, 0)
    spare = ops.pad(rows, [(0, 1)] + [(0, 0)] * (len(rows.shape) - 1))
    target = ops.where(valid, positions, count)
    if reduce == "mul":  # the product of no update is 1
        written = spare * ops.segment_prod(updates, target, num_segments=count + 1)
    else:
        index = ops.expand_dims(target, -1)
        written = ops.scatter_update(spare, index, updates, reduction=None if reduce == "set" else reduce)
    return ops.slice(written, [0] * len(rows.shape), ops.shape(rows))
