"""Indexing ops: gathers by index tensors and their scatter counterparts.

Reads: ``take`` (whole slices along one axis at the indices), ``embedding``
(``take`` on axis 0 of a table), ``take_along_axis`` (one element per index)
and ``index`` (NumPy advanced indexing on several axes). Writes:
``slice_update`` (the positions of a ``slice``), ``put_along_axis`` (those of
``take_along_axis``, with a reduction) and ``index_update`` (those of
``index``). Indices may have any integer dtype; ``index`` and the writes
accept negative indices (counted from the end), the reads along one axis
expect indices in range and clamp others.
"""

from __future__ import annotations

from typing import Literal

import jax.numpy as jnp
from jax import lax

from unigraph.ops.registry import SymDim, op
from unigraph.ops.shape import OPEN, decided, slice_bounds

Reduce = Literal["set", "add", "mul", "max", "min"]


@op("take")
def take(x, indices, /, *, axis: int):
    """Slices of ``x`` along ``axis`` at ``indices``: shape ``x[:axis] + indices + x[axis+1:]``."""
    return jnp.take(x, indices, axis=axis, mode="clip")


@op("embedding")
def embedding(table, ids, /):
    """Rows of ``table [vocab, dim]`` at integer ``ids [...]``: ``[..., dim]``."""
    return jnp.take(table, ids, axis=0, mode="clip")


@op("take_along_axis")
def take_along_axis(x, indices, /, *, axis: int):
    """``out[..., i, ...] = x[..., indices[..., i, ...], ...]`` along ``axis``; shapes equal elsewhere."""
    return jnp.take_along_axis(x, indices, axis=axis, mode="clip")


@op("index")
def index(x, /, *indices, axes: tuple[int, ...]):
    """NumPy advanced indexing: ``x[key]`` with ``key[axes[i]] = indices[i]`` and ``:`` elsewhere.

    The index tensors broadcast together; their dims replace the indexed axes
    in place when those are adjacent and lead the result otherwise.
    """
    return x[_key(x.ndim, axes, indices)]


@op("index_update")
def index_update(x, values, /, *indices, axes: tuple[int, ...], reduce: Literal["set", "add"] = "set"):
    """``x`` with ``x[key] = values`` (or ``+= values``, duplicates accumulating) for ``index``'s key."""
    return _apply(x.at[_key(x.ndim, axes, indices)], reduce, values)


@op("put_along_axis")
def put_along_axis(x, indices, updates, /, *, axis: int, reduce: Reduce = "set"):
    """``x`` with ``x[..., indices[..., i, ...], ...] (reduce)= updates[..., i, ...]`` along ``axis``.

    ``indices`` and ``updates`` have one shape, no larger than ``x`` on the other
    axes (torch ``scatter``); duplicate indices combine by ``reduce``.
    """
    key = tuple(
        indices if a == axis else lax.broadcasted_iota(indices.dtype, indices.shape, a)
        for a in range(x.ndim)
    )
    return _apply(x.at[key], reduce, updates)


@op("slice_update")
def slice_update(x, updates, /, *, axis: int, start: SymDim = 0, end: SymDim = OPEN, step: int = 1):
    """``x`` with ``x[start:end:step] = updates`` along ``axis`` (bounds as in ``slice``)."""
    start, end = slice_bounds(x.shape[axis], start, end)
    count = updates.shape[axis]
    if step == 1 and decided(lambda: count <= x.shape[axis], False):
        return lax.dynamic_update_slice_in_dim(x, updates, jnp.asarray(start), axis)
    positions = jnp.asarray(start) + step * lax.iota(jnp.asarray(start).dtype, count)
    return x.at[(slice(None),) * axis + (positions,)].set(updates)


def _key(rank: int, axes, indices) -> tuple:
    key = [slice(None)] * rank
    for axis, i in zip(axes, indices):
        key[axis] = i
    return tuple(key)


def _apply(ref, reduce: str, values):
    method = {"set": ref.set, "add": ref.add, "mul": ref.multiply, "max": ref.max, "min": ref.min}[reduce]
    return method(values)
