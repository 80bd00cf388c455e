"""Reductions, arg-reductions, cumulative ops, sorting and top-k.

unigraph's index-returning ops give int64 (int32 when JAX runs without x64);
JAX's primitives name their index dtype, so the handlers cast to it.
"""

from __future__ import annotations

import numpy as np

from unigraph.frontends.builder import TensorRef
from unigraph.frontends.jax_ops import handles
from unigraph.frontends.jax_ops.common import ints
from unigraph.frontends.jax_ops.context import Context, Unsupported

_REDUCTIONS = {
    "reduce_sum": "reduce_sum",
    "reduce_max": "reduce_max",
    "reduce_min": "reduce_min",
    "reduce_prod": "reduce_prod",
    "reduce_and": "reduce_all",
    "reduce_or": "reduce_any",
}


def _reduction(op: str):
    def handler(cx: Context, x, *, axes, **_):
        return cx.emit(op, x, axes=tuple(sorted(ints(axes))))

    handler.__name__ = op
    return handler


for _primitive, _op in _REDUCTIONS.items():
    handles(_primitive)(_reduction(_op))


@handles("argmax", "argmin")
def arg_reduction(cx: Context, x, *, axes, **_):
    (axis,) = ints(axes)
    return cx.cast(cx.emit(cx.primitive, x, axis=axis), cx.out_type.dtype)


def _along(cx: Context, op: str, x: TensorRef, axis: int, reverse: bool, n_out: int = 1):
    """A cumulative op, run from the end of the axis when ``reverse`` (flip, op, flip back)."""
    if reverse:
        x = cx.emit("flip", x, axes=(axis,))
    out = cx.emit(op, x, axis=axis, n_out=n_out)
    values = out[0] if n_out > 1 else out
    return cx.emit("flip", values, axes=(axis,)) if reverse else values


@handles("cumsum", "cumprod")
def cumulative(cx: Context, x, *, axis, reverse=False, **_):
    return _along(cx, cx.primitive, x, int(axis), bool(reverse))


@handles("cummax", "cummin")
def running_extreme(cx: Context, x, *, axis, reverse=False, **_):
    """unigraph's ``cummax``/``cummin`` also give the indices; only the values are used."""
    return _along(cx, cx.primitive, x, int(axis), bool(reverse), n_out=2)


@handles("sort")
def sort(cx: Context, *operands, dimension, num_keys=1, **_):
    """``lax.sort`` by the first operand (stable); the others follow its permutation.

    An operand that is an iota along the sorted axis (``jnp.argsort``) is the
    permutation itself; others are gathered with it. Sorting by several keys
    has no unigraph op.
    """
    if num_keys != 1:
        raise Unsupported(f"sort by {num_keys} keys (lexicographic sorts)")
    axis = int(dimension)
    values, order = cx.emit("sort", operands[0], axis=axis, n_out=2)
    results = [values]
    for operand, out in zip(operands[1:], cx.out_types[1:]):
        if _is_iota(cx.constant(operand), axis):
            results.append(cx.cast(order, out.dtype))
        else:
            results.append(cx.emit("take_along_axis", operand, order, axis=axis))
    return results


def _is_iota(array: np.ndarray | None, axis: int) -> bool:
    if array is None or array.ndim == 0:
        return False
    ramp = np.arange(array.shape[axis]).reshape([-1 if a == axis else 1 for a in range(array.ndim)])
    return bool(np.array_equal(array, np.broadcast_to(ramp, array.shape)))


@handles("top_k")
def top_k(cx: Context, x, *, k, axis=-1, **_):
    values, indices = cx.emit("top_k", x, k=int(k), axis=int(axis) % x.rank, n_out=2)
    return values, cx.cast(indices, cx.out_types[1].dtype)
