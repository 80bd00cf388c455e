"""Reductions, softmax, cumulative ops, top-k and sorting.

Reductions take ``axes``: sorted, non-negative, possibly empty (reducing
nothing); a frontend spells out "all axes". Index outputs are ``int64``
(``int32`` when JAX runs without x64). Where torch's kernels accumulate
float16/bfloat16 in float32 (softmax, logsumexp, norms, cumulative sums),
so do these lowerings, and the result is cast back.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from unigraph.dtypes import jax_dtype
from unigraph.ops.registry import DType, op

_HALF = (jnp.float16, jnp.bfloat16)


def _index_dtype():
    return jax_dtype("int64")


def _out_dtype(x, dtype: str | None):
    return x.dtype if dtype is None else jax_dtype(dtype)


def _accumulator(dtype):
    """float32 for half-precision floats, else ``dtype`` itself."""
    return jnp.float32 if dtype in _HALF else dtype


def _float32_compute(fn):
    """Runs ``fn`` on float16/bfloat16 ``x`` in float32 and casts the result back."""

    @functools.wraps(fn)
    def lowering(x, /, **attrs):
        if x.dtype in _HALF:
            return fn(x.astype(jnp.float32), **attrs).astype(x.dtype)
        return fn(x, **attrs)

    return lowering


# ---- reductions --------------------------------------------------------------------------


@op("reduce_sum")
def reduce_sum(x, /, *, axes: tuple[int, ...], keepdims: bool = False, dtype: DType | None = None):
    """Sum of ``x`` over ``axes``, accumulated and returned in ``dtype`` (default ``x``'s)."""
    return jnp.sum(x, axis=axes, keepdims=keepdims, dtype=_out_dtype(x, dtype))


@op("reduce_mean")
def reduce_mean(x, /, *, axes: tuple[int, ...], keepdims: bool = False, dtype: DType | None = None):
    """Mean of ``x`` over ``axes``, computed and returned in ``dtype`` (default ``x``'s)."""
    return jnp.mean(x, axis=axes, keepdims=keepdims, dtype=_out_dtype(x, dtype))


@op("reduce_prod")
def reduce_prod(x, /, *, axes: tuple[int, ...], keepdims: bool = False, dtype: DType | None = None):
    """Product of ``x`` over ``axes``, accumulated and returned in ``dtype`` (default ``x``'s)."""
    return jnp.prod(x, axis=axes, keepdims=keepdims, dtype=_out_dtype(x, dtype))


@op("reduce_max")
def reduce_max(x, /, *, axes: tuple[int, ...], keepdims: bool = False):
    """Maximum of ``x`` over ``axes`` (NaN wins)."""
    return jnp.max(x, axis=axes, keepdims=keepdims)


@op("reduce_min")
def reduce_min(x, /, *, axes: tuple[int, ...], keepdims: bool = False):
    """Minimum of ``x`` over ``axes`` (NaN wins)."""
    return jnp.min(x, axis=axes, keepdims=keepdims)


@op("reduce_any")
def reduce_any(x, /, *, axes: tuple[int, ...], keepdims: bool = False):
    """Whether any element of ``x`` over ``axes`` is nonzero (bool)."""
    return jnp.any(x, axis=axes, keepdims=keepdims)


@op("reduce_all")
def reduce_all(x, /, *, axes: tuple[int, ...], keepdims: bool = False):
    """Whether every element of ``x`` over ``axes`` is nonzero (bool)."""
    return jnp.all(x, axis=axes, keepdims=keepdims)


@op("argmax")
def argmax(x, /, *, axis: int | None, keepdims: bool = False):
    """Index of the first maximum along ``axis`` (of the flattened ``x`` when None); NaN wins."""
    return jnp.argmax(x, axis=axis, keepdims=keepdims).astype(_index_dtype())


@op("argmin")
def argmin(x, /, *, axis: int | None, keepdims: bool = False):
    """Index of the first minimum along ``axis`` (of the flattened ``x`` when None); NaN wins."""
    return jnp.argmin(x, axis=axis, keepdims=keepdims).astype(_index_dtype())


@op("variance")
@_float32_compute
def variance(x, /, *, axes: tuple[int, ...], correction: float = 1.0, keepdims: bool = False):
    """``sum((x - mean)**2) / (N - correction)`` over ``axes`` (N elements reduced)."""
    return jnp.var(x, axis=axes, ddof=correction, keepdims=keepdims)


@op("logsumexp")
@_float32_compute
def logsumexp(x, /, *, axes: tuple[int, ...], keepdims: bool = False):
    """``log(sum(exp(x)))`` over ``axes``, stable for large values; -inf for all -inf."""
    return jax.nn.logsumexp(x, axis=axes, keepdims=keepdims)


@op("vector_norm")
@_float32_compute
def vector_norm(x, /, *, ord: float = 2.0, axes: tuple[int, ...], keepdims: bool = False):
    """The ``ord``-norm of ``x`` over ``axes``: ``sum(|x|**ord)**(1/ord)``.

    ``ord`` inf / -inf is the max / min of ``|x|``; 0 counts the nonzero elements.
    """
    return jnp.linalg.vector_norm(x, axis=axes, keepdims=keepdims, ord=ord)


# ---- softmax -----------------------------------------------------------------------------


@op("softmax")
@_float32_compute
def softmax(x, /, *, axis: int):
    """``exp(x) / sum(exp(x))`` along ``axis`` (NaN where the whole slice is -inf, like torch)."""
    return jax.nn.softmax(x, axis=axis)


@op("log_softmax")
@_float32_compute
def log_softmax(x, /, *, axis: int):
    """``x - logsumexp(x)`` along ``axis``."""
    return jax.nn.log_softmax(x, axis=axis)


# ---- cumulative ops ----------------------------------------------------------------------


@op("cumsum")
def cumsum(x, /, *, axis: int, dtype: DType | None = None):
    """Inclusive running sum along ``axis``, accumulated and returned in ``dtype`` (default ``x``'s)."""
    out = _out_dtype(x, dtype)
    return jnp.cumsum(x, axis=axis, dtype=_accumulator(out)).astype(out)


@op("cumprod")
def cumprod(x, /, *, axis: int, dtype: DType | None = None):
    """Inclusive running product along ``axis``, accumulated and returned in ``dtype`` (default ``x``'s)."""
    out = _out_dtype(x, dtype)
    return jnp.cumprod(x, axis=axis, dtype=_accumulator(out)).astype(out)


def _running_extreme(x, axis: int, running):
    """Running max/min values and the index of the last element that attains them (NaN sticks)."""
    values = running(x, axis=axis)
    hit = (x == values) | jnp.isnan(x) if jnp.issubdtype(x.dtype, jnp.floating) else x == values
    positions = lax.broadcasted_iota(_index_dtype(), x.shape, axis)
    return values, lax.cummax(jnp.where(hit, positions, 0), axis=axis)


@op("cummax")
def cummax(x, /, *, axis: int):
    """Running maximum along ``axis`` and, at each position, the index of the latest maximum."""
    return _running_extreme(x, axis, lax.cummax)


@op("cummin")
def cummin(x, /, *, axis: int):
    """Running minimum along ``axis`` and, at each position, the index of the latest minimum."""
    return _running_extreme(x, axis, lax.cummin)


# ---- top-k and sorting -------------------------------------------------------------------


def _reverse_order(x):
    """An order-reversing involution: ``-x`` for floats, ``~x`` for integers and bools."""
    return -x if jnp.issubdtype(x.dtype, jnp.inexact) else ~x


@op("top_k")
def top_k(x, /, *, k: int, axis: int, largest: bool = True):
    """The ``k`` largest (or smallest) elements along ``axis``, sorted, and their indices.

    ``x`` is ``[..., n, ...]``; both outputs are ``[..., k, ...]``. Ties keep the lower index first.
    As in torch, NaN is larger than any number whatever its sign bit, and -0.0 ties with 0.0:
    ``lax.top_k`` orders floats by their IEEE total order (a NaN with the sign bit set, which x86
    computes for ``inf - inf``, below -inf; -0.0 below 0.0), so it ranks keys with every NaN and zero
    made positive, and the values are gathered from ``x`` itself.
    """
    moved = jnp.moveaxis(x, axis, -1)
    key = _canonical(moved)
    _, indices = lax.top_k(key if largest else _reverse_order(key), k)
    values = jnp.take_along_axis(moved, indices, axis=-1)
    return jnp.moveaxis(values, -1, axis), jnp.moveaxis(indices.astype(_index_dtype()), -1, axis)


def _canonical(x):
    """Floats with every NaN positive and -0.0 as 0.0 (the order torch compares them in); others as they are."""
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        return x
    return jnp.where(jnp.isnan(x), jnp.nan, jnp.where(x == 0, jnp.zeros_like(x), x))


@op("sort")
def sort(x, /, *, axis: int, descending: bool = False):
    """``x`` sorted along ``axis`` and the source index of each element (stable; NaN is largest)."""
    positions = lax.broadcasted_iota(_index_dtype(), x.shape, axis)
    if not descending:
        return lax.sort((x, positions), dimension=axis, num_keys=1, is_stable=True)
    # Ascending by (x, -index), then reversed: descending, equal elements in source order.
    values, negated = lax.sort((x, -positions), dimension=axis, num_keys=2)
    return lax.rev(values, (axis,)), -lax.rev(negated, (axis,))
