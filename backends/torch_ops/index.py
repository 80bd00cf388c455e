"""torch lowerings: gathers by index tensors and their scatter counterparts.

Index semantics are JAX's (``unigraph.ops.index``): the reads clamp indices
that are out of range (``take`` and ``embedding`` clamp negative ones to 0,
``take_along_axis`` and ``index`` count them from the end first), so a bad
index never faults a device; the writes count negative indices from the end
and expect the others in range (JAX drops out-of-range writes, torch raises).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from unigraph.backends.torch_ops import lowers

#: Bounds at least this large are open ends (as in ``unigraph.ops.shape``).
OPEN = 2**62


@lowers("take")
def take(x, indices, /, *, axis):
    """Slices of ``x`` along ``axis`` at ``indices`` (any shape): ``x[:axis] + indices + x[axis+1:]``."""
    axis = axis % x.ndim
    flat = _indexable(indices).reshape(-1).clamp(0, x.shape[axis] - 1)
    taken = torch.index_select(x, axis, flat)
    return taken.reshape(x.shape[:axis] + indices.shape + x.shape[axis + 1 :])


@lowers("embedding")
def embedding(table, ids, /):
    return F.embedding(_indexable(ids).clamp(0, table.shape[0] - 1), table)


@lowers("take_along_axis")
def take_along_axis(x, indices, /, *, axis):
    return torch.gather(x, axis, _wrap_clamp(indices, x.shape[axis]))


@lowers("index")
def index(x, /, *indices, axes):
    return x[_key(x, axes, indices)]


@lowers("index_update")
def index_update(x, values, /, *indices, axes, reduce="set"):
    # (the conditional folds to a literal in generated code)
    return torch.ops.aten.index_put(
        x, _put_key(x, axes, indices), values.to(x.dtype), accumulate=True if reduce == "add" else False
    )


@lowers("put_along_axis")
def put_along_axis(x, indices, updates, /, *, axis, reduce="set"):
    """``x`` with ``updates`` written (or combined by ``reduce``) at ``indices`` along ``axis``."""
    indices = _indexable(indices)
    indices = torch.where(indices < 0, indices + x.shape[axis], indices)
    updates = updates.to(x.dtype)
    if reduce == "set":
        return x.scatter(axis, indices, updates)
    if reduce == "add":
        return x.scatter_add(axis, indices, updates)
    return x.scatter_reduce(axis, indices, updates, {"mul": "prod", "max": "amax", "min": "amin"}[reduce])


@lowers("slice_update")
def slice_update(x, updates, /, *, axis, start=0, end=OPEN, step=1):
    # an open end is None, as in the slice lowering
    return torch.slice_scatter(x, updates, axis, start, None if isinstance(end, int) and end >= OPEN else end, step)


def _wrap_clamp(indices, n):
    """Indices counted from the end where negative, then clamped into ``[0, n)`` (JAX's gather rule)."""
    return _indexable(indices).clamp(-n, n - 1) % n


def _indexable(indices):
    """An index tensor torch's indexing takes: int32 or int64 (uint8 would read as a mask)."""
    return indices if indices.dtype in (torch.int32, torch.int64) else indices.long()


def _key(x, axes, indices):
    """``x[key]``'s key: the (clamped) index tensors at ``axes``, ``:`` elsewhere."""
    key = [slice(None)] * (max((a % x.ndim for a in axes), default=-1) + 1)
    for axis, i in zip(axes, indices):
        n = x.shape[axis]
        key[axis % x.ndim] = _indexable(i).clamp(-n, n - 1)
    return tuple(key)


def _put_key(x, axes, indices):
    """``aten.index_put``'s indices: the index tensors at ``axes``, None elsewhere."""
    key = [None] * (max((a % x.ndim for a in axes), default=-1) + 1)
    for axis, i in zip(axes, indices):
        key[axis % x.ndim] = _indexable(i)
    return key
