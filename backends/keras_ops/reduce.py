"""Keras lowerings: reductions, softmax, cumulative ops, top-k and sorting.

``axes`` may be empty (reducing nothing), which ``keras.ops`` does not spell
alike under every backend (torch reads ``dim=()`` as every dim): each
lowering spells the empty case out. float16/bfloat16 are computed in float32
and cast back, as the JAX lowerings do (sums and products too, as torch's
kernels accumulate them). Index outputs are int64 (int32 where Keras's JAX
backend runs without x64).

Where ``keras.ops`` differs from the op, the op is composed of simpler ones:

- ``argmax``/``argmin``: the first index of the extreme, NaN winning (Keras's
  TensorFlow argmax ignores NaN and orders -0.0 below 0.0).
- ``cummax``/``cummin``: running extremes by doubling steps of shifted
  ``ops.maximum``/``ops.minimum`` (NaN propagates), the index of the latest
  extreme as the running maximum of the positions that attain it.
- ``sort``/``top_k``: a stable ``ops.argsort`` (stable under every backend) of
  integer keys: floats' bits (``ops.view``) mapped to integers of the same
  order. ``sort`` orders as ``lax.sort`` (-0.0 equals 0.0, NaN largest and
  equal); ``top_k`` as ``lax.top_k``, by IEEE total order (-NaN < -inf < -0.0
  < 0.0 < inf < NaN). Keras's TensorFlow argsort misplaces NaN, its top_k and
  sort are not stable alike across backends.
"""

from __future__ import annotations

import numpy as np
from keras import ops

from unigraph.backends.keras_ops import lowers

_HALF = ("float16", "bfloat16")
_SMALL_INTS = ("bool", "int8", "int16", "uint8", "uint16")


def _is_float(dtype: str) -> bool:
    return "float" in dtype


def _inexact(dtype: str) -> str:
    """The floating dtype JAX promotes ``dtype`` to (float32 up to 32-bit integers, float64 for 64-bit)."""
    if _is_float(dtype):
        return dtype
    return "float64" if dtype in ("int64", "uint64") else "float32"


def _float_compute(x):
    """``x`` in the dtype the floating ops compute in (float32 for half floats and small integers) and the dtype
    of the result."""
    dtype = ops.dtype(x)
    out = _inexact(dtype)
    return ops.cast(x, "float32" if out in _HALF else out), out


def _accumulator(dtype: str) -> str:
    """float32 for half floats, int32 for narrow integers (wrapping alike once cast back), else ``dtype``."""
    if dtype in _HALF:
        return "float32"
    return "int32" if dtype in _SMALL_INTS[1:] else dtype


def _count(x, axes):
    """The number of elements reduced over ``axes`` (an int where the shape is static)."""
    shape = ops.shape(x)
    count = 1
    for a in axes:
        count = count * shape[a]
    return count


# ---- reductions --------------------------------------------------------------------------


@lowers("reduce_sum")
def reduce_sum(x, /, *, axes, keepdims=False, dtype=None):
    out = dtype or ops.dtype(x)
    if out == "bool":
        return reduce_any(x, axes=axes, keepdims=keepdims)
    y = ops.cast(x, _accumulator(out))
    return ops.cast(ops.sum(y, axis=axes, keepdims=keepdims) if axes else y, out)


@lowers("reduce_mean")
def reduce_mean(x, /, *, axes, keepdims=False, dtype=None):
    out = dtype or ops.dtype(x)
    if not axes:
        return ops.cast(x, out)
    if _is_float(out):
        return ops.cast(ops.mean(ops.cast(x, _accumulator(out)), axis=axes, keepdims=keepdims), out)
    # an integer mean, as jnp.mean's: the sum in ``out`` divided, truncating toward zero
    total = ops.cast(ops.sum(ops.cast(x, _accumulator(out)), axis=axes, keepdims=keepdims), out)
    count = ops.cast(_count(x, axes), out)
    quotient = ops.floor_divide(total, count)
    inexact = ops.not_equal(total - quotient * count, 0)
    return ops.where(ops.logical_and(inexact, total < 0), quotient + 1, quotient)


@lowers("reduce_prod")
def reduce_prod(x, /, *, axes, keepdims=False, dtype=None):
    out = dtype or ops.dtype(x)
    if out == "bool":
        return reduce_all(x, axes=axes, keepdims=keepdims)
    y = ops.cast(x, _accumulator(out))
    return ops.cast(ops.prod(y, axis=axes, keepdims=keepdims) if axes else y, out)


@lowers("reduce_max")
def reduce_max(x, /, *, axes, keepdims=False):
    if not axes:
        return x
    if ops.dtype(x) == "bool":
        return ops.any(x, axis=axes, keepdims=keepdims)
    return ops.max(x, axis=axes, keepdims=keepdims)  # NaN propagates under every backend


@lowers("reduce_min")
def reduce_min(x, /, *, axes, keepdims=False):
    if not axes:
        return x
    if ops.dtype(x) == "bool":
        return ops.all(x, axis=axes, keepdims=keepdims)
    return ops.min(x, axis=axes, keepdims=keepdims)


def _nonzero(x):
    return x if ops.dtype(x) == "bool" else ops.not_equal(x, 0)


@lowers("reduce_any")
def reduce_any(x, /, *, axes, keepdims=False):
    return ops.any(_nonzero(x), axis=axes, keepdims=keepdims) if axes else _nonzero(x)


@lowers("reduce_all")
def reduce_all(x, /, *, axes, keepdims=False):
    return ops.all(_nonzero(x), axis=axes, keepdims=keepdims) if axes else _nonzero(x)


def _along(v, axis: int, ndim: int):
    """A vector shaped to lie along ``axis`` of a rank-``ndim`` tensor."""
    return ops.reshape(v, [-1 if a == axis else 1 for a in range(ndim)])


def _positions(x, axis: int, dtype: str = "int32"):
    """``0 … n-1`` along ``axis`` of ``x``, shaped to broadcast against it."""
    return _along(ops.arange(ops.shape(x)[axis], dtype=dtype), axis, len(x.shape))


def _first_extreme(x, axis, keepdims: bool, largest: bool):
    """The index (int64) of the first maximum (minimum) along ``axis``, of the flattened ``x`` when None; NaN wins."""
    rank = len(x.shape)
    if ops.dtype(x) == "bool":
        x = ops.cast(x, "int32")
    if axis is None:
        x, axis = ops.reshape(x, (-1,)), 0
        flat = True
    else:
        axis, flat = axis % rank, False
    extreme = (ops.max if largest else ops.min)(x, axis=axis, keepdims=True)  # NaN where the slice has one
    hit = ops.equal(x, extreme)
    if _is_float(ops.dtype(x)):
        hit = ops.logical_or(hit, ops.isnan(x))
    size = ops.shape(x)[axis]
    index = ops.min(ops.where(hit, _positions(x, axis), size), axis=axis, keepdims=keepdims and not flat)
    if flat and keepdims:
        index = ops.reshape(index, (1,) * rank)
    return ops.cast(index, "int64")


@lowers("argmax")
def argmax(x, /, *, axis, keepdims=False):
    return _first_extreme(x, axis, keepdims, largest=True)


@lowers("argmin")
def argmin(x, /, *, axis, keepdims=False):
    return _first_extreme(x, axis, keepdims, largest=False)


@lowers("variance")
def variance(x, /, *, axes, correction=1.0, keepdims=False):
    xf, out = _float_compute(x)
    count = _count(xf, axes)
    if not isinstance(count, int):
        count = ops.cast(count, ops.dtype(xf))
    if not axes:
        centered = ops.square(xf - xf)  # 0, NaN where x is not finite
    else:
        centered = ops.sum(ops.square(xf - ops.mean(xf, axis=axes, keepdims=True)), axis=axes, keepdims=keepdims)
    normalizer = count - correction
    result = centered / normalizer
    if isinstance(normalizer, (int, float)):
        result = result if normalizer > 0 else ops.full_like(result, np.nan)
    else:
        result = ops.where(normalizer > 0, result, np.nan)
    return ops.cast(result, out)


@lowers("logsumexp")
def logsumexp(x, /, *, axes, keepdims=False):
    xf, out = _float_compute(x)
    if not axes:  # log(exp(x - x)) + x, -inf where x is
        return ops.cast(xf, out)
    peak = ops.max(xf, axis=axes, keepdims=True)
    peak = ops.stop_gradient(ops.where(ops.isfinite(peak), peak, ops.zeros_like(peak)))
    total = ops.sum(ops.exp(xf - peak), axis=axes, keepdims=keepdims)
    peak = peak if keepdims else ops.squeeze(peak, axis=axes)
    return ops.cast(ops.log(total) + peak, out)


@lowers("vector_norm")
def vector_norm(x, /, *, ord=2.0, axes, keepdims=False):
    xf, out = _float_compute(x)

    def total(y):
        return ops.sum(y, axis=axes, keepdims=keepdims) if axes else y

    if ord == 2:
        result = ops.sqrt(total(xf * xf))
    elif ord == float("inf"):
        result = ops.max(ops.abs(xf), axis=axes, keepdims=keepdims) if axes else ops.abs(xf)
    elif ord == -float("inf"):
        result = ops.min(ops.abs(xf), axis=axes, keepdims=keepdims) if axes else ops.abs(xf)
    elif ord == 0:
        result = total(ops.cast(ops.not_equal(xf, 0), ops.dtype(xf)))
    elif ord == 1:
        result = total(ops.abs(xf))
    else:
        dtype = ops.dtype(xf)
        power = ops.cast(ord, dtype)
        result = ops.power(total(ops.power(ops.abs(xf), power)), ops.divide(ops.cast(1, dtype), power))
    return ops.cast(result, out)


# ---- softmax -----------------------------------------------------------------------------


@lowers("softmax")
def softmax(x, /, *, axis):
    xf, out = _float_compute(x)
    peak = ops.stop_gradient(ops.max(xf, axis=axis, keepdims=True))
    unnormalized = ops.exp(xf - peak)  # NaN where the whole slice is -inf, as jax.nn.softmax
    return ops.cast(unnormalized / ops.sum(unnormalized, axis=axis, keepdims=True), out)


@lowers("log_softmax")
def log_softmax(x, /, *, axis):
    xf, out = _float_compute(x)
    shifted = xf - ops.stop_gradient(ops.max(xf, axis=axis, keepdims=True))
    return ops.cast(shifted - ops.log(ops.sum(ops.exp(shifted), axis=axis, keepdims=True)), out)


# ---- cumulative ops ----------------------------------------------------------------------


@lowers("cumsum")
def cumsum(x, /, *, axis, dtype=None):
    out = dtype or ops.dtype(x)
    if out == "bool":  # a running "or"
        return ops.cumsum(ops.cast(_nonzero(x), "int32"), axis=axis) > 0
    return ops.cast(ops.cumsum(ops.cast(x, _accumulator(out)), axis=axis), out)


@lowers("cumprod")
def cumprod(x, /, *, axis, dtype=None):
    out = dtype or ops.dtype(x)
    if out == "bool":  # a running "and": no zero so far
        return ops.cumsum(ops.cast(ops.logical_not(_nonzero(x)), "int32"), axis=axis) == 0
    return ops.cast(ops.cumprod(ops.cast(x, _accumulator(out)), axis=axis), out)


def _running(x, axis: int, largest: bool):
    """The running maximum (minimum) of ``x`` along ``axis``: NaN, once met, sticks."""
    pick = ops.maximum if largest else ops.minimum
    size = ops.shape(x)[axis]
    if not isinstance(size, int):  # a dynamic length: Keras's own scan (TensorFlow's loses the rank)
        return ops.reshape(ops.associative_scan(pick, x, axis=axis), ops.shape(x))
    rank = len(x.shape)

    def part(start, stop):
        return x[tuple(slice(start, stop) if a == axis else slice(None) for a in range(rank))]

    shift = 1
    while shift < size:  # after each step, position i holds the extreme of the 2*shift elements up to i
        # x shifted by ``shift``, its head repeated in front (the extreme of an element and itself is the element)
        x = pick(x, ops.concatenate([part(None, shift), part(None, size - shift)], axis=axis))
        shift *= 2
    return x


def _running_extreme(x, axis: int, largest: bool):
    """Running extremes along ``axis`` and the index (int64) of the last element that attains each."""
    axis = axis % len(x.shape)
    dtype = ops.dtype(x)
    values = _running(ops.cast(x, "int32") if dtype == "bool" else x, axis, largest)
    values = ops.cast(values, dtype)
    hit = ops.equal(x, values)
    if _is_float(dtype):
        hit = ops.logical_or(hit, ops.isnan(x))
    positions = _positions(x, axis, "int64")
    return values, _running(ops.where(hit, positions, ops.zeros_like(positions)), axis, largest=True)


@lowers("cummax")
def cummax(x, /, *, axis):
    return _running_extreme(x, axis, largest=True)


@lowers("cummin")
def cummin(x, /, *, axis):
    return _running_extreme(x, axis, largest=False)


# ---- top-k and sorting -------------------------------------------------------------------

_BITS = {"float16": "int16", "bfloat16": "int16", "float32": "int32", "float64": "int64"}


def _order_key(x):
    """Integers ordered as ``x`` (floats by IEEE total order: -NaN < -inf < -0.0 < 0.0 < inf < NaN)."""
    dtype = ops.dtype(x)
    if dtype in _BITS:
        bits = ops.view(x, _BITS[dtype])
        # a negative float's bits order backwards: flip all but the sign bit
        flipped = ops.bitwise_xor(bits, np.iinfo(_BITS[dtype]).max)
        key = ops.where(bits < 0, flipped, bits)
        return ops.cast(key, "int32") if _BITS[dtype] == "int16" else key  # argsort takes no int16 everywhere
    if dtype in _SMALL_INTS:
        return ops.cast(x, "int32")
    return ops.cast(x, "int64") if dtype == "uint32" else x


def _canonical(x):
    """``x`` with -0.0 as 0.0 and every NaN as one NaN: the keys ``lax.sort`` compares."""
    if not _is_float(ops.dtype(x)):
        return x
    x = ops.where(ops.equal(x, 0), ops.zeros_like(x), x)
    return ops.where(ops.isnan(x), ops.full_like(x, np.nan), x)


def _stable_order(key, axis: int, descending: bool):
    """The positions that sort integer ``key`` along ``axis``; equal keys keep their order."""
    return ops.argsort(ops.bitwise_invert(key) if descending else key, axis=axis)  # ~key reverses the order exactly


def _reverse_order(x):
    """``lax.top_k``'s smallest-first key: ``-x`` for floats, ``~x`` for integers and bools."""
    dtype = ops.dtype(x)
    if _is_float(dtype):
        return ops.negative(x)
    return ops.logical_not(x) if dtype == "bool" else ops.bitwise_invert(x)


@lowers("top_k")
def top_k(x, /, *, k, axis, largest=True):
    axis = axis % len(x.shape)
    key = _canonical(x)  # NaN largest whatever its sign, -0.0 ties with 0.0, as torch compares
    order = _stable_order(_order_key(key if largest else _reverse_order(key)), axis, descending=True)
    indices = order[tuple(slice(None, k) if a == axis else slice(None) for a in range(len(x.shape)))]
    return ops.take_along_axis(x, indices, axis=axis), ops.cast(indices, "int64")


@lowers("sort")
def sort(x, /, *, axis, descending=False):
    axis = axis % len(x.shape)
    indices = _stable_order(_order_key(_canonical(x)), axis, descending)
    return ops.take_along_axis(x, indices, axis=axis), ops.cast(indices, "int64")
