"""Keras lowerings: max and average pools, adaptive pools.

Pools are composed of ``ops.pad`` and strided slices rather than Keras's own
``max_pool``/``average_pool``, whose padding is only "valid"/"same" (not the
op's ``(lo, hi)`` pairs, nor ``ceil_mode``'s growth), whose averages count
padding as each backend likes, which take no dilation, return no indices, and
under TensorFlow run channels-last floats only. A window is a box, so each
spatial axis is reduced in turn (``sum(window)`` strided slices, not
``prod(window)``): the padded axis's ``k`` taps ``x[j*d : P - span + 1 + j*d : s]``
combined by ``ops.maximum`` (NaN propagates under every backend) or summed
(float32 for half inputs). Any layout works as is: no transposes.

Indices (``return_indices``) are reduced the same way as (value, flat spatial
index) pairs under the op's order: NaN wins (the last NaN), else the largest
value, the lowest index among equal ones; padding holds the lowest value and
the largest index, so it never wins over an input element. Adaptive pools
follow the JAX lowering: reshapes where bins divide the size, else gathers
of each bin's taps (sizes must be static there, as in JAX).
"""

from __future__ import annotations

import math

import numpy as np
from keras import ops

from unigraph.backends.keras_ops import lowers
from unigraph.ops.pool import bin_taps, box_positions


def _spatial_axes(rank: int, n: int, channels_last: bool) -> tuple[int, ...]:
    return tuple(range(rank - 1 - n, rank - 1)) if channels_last else tuple(range(rank - n, rank))


def _is_float(dtype: str) -> bool:
    return "float" in dtype


def _accumulator(dtype: str) -> str:
    return "float32" if dtype in ("float16", "bfloat16") else dtype


def _lowest(dtype: str):
    return -np.inf if _is_float(dtype) else np.iinfo(dtype).min


def _larger(a, b):
    if isinstance(a, int) and isinstance(b, int):
        return max(a, b)
    return ops.maximum(a, b)


def _ceil_padding(size, window: int, stride: int, pad, dilation: int):
    """``pad`` with ``hi`` grown so the output has torch's ``ceil_mode`` length (the JAX lowering's rule).

    The output length rounds up, but its last window must start inside the
    input or the left padding; ``hi`` never shrinks.
    """
    lo, hi = pad
    span = dilation * (window - 1) + 1
    out = -(-(size + lo + hi - span) // stride) + 1
    if isinstance(out, int):
        out = out - 1 if (out - 1) * stride >= size + lo else out
    else:
        out = ops.where((out - 1) * stride >= size + lo, out - 1, out)
    return lo, _larger(hi, (out - 1) * stride + span - size - lo)


def _window_padding(x, axes, window, strides, padding, dilation, ceil_mode) -> list:
    """The ``(lo, hi)`` padding of each spatial axis, ``ceil_mode``'s growth included."""
    if not ceil_mode:
        return [tuple(p) for p in padding]
    shape = ops.shape(x)
    return [_ceil_padding(shape[a], k, s, p, d) for a, k, s, p, d in zip(axes, window, strides, padding, dilation)]


def _pad(x, axes, pads, value):
    """``x`` padded with ``value`` by ``(lo, hi)`` at each of ``axes``.

    Blocks of ``ops.full`` concatenated rather than ``ops.pad``: torch's pad
    takes its value as a float, which 64-bit integer extremes overflow.
    """
    dtype = ops.dtype(x)
    for a, (lo, hi) in zip(axes, pads):
        parts = [x]
        for amount, at in ((lo, 0), (hi, 1)):
            if isinstance(amount, int) and amount == 0:
                continue
            shape = list(ops.shape(x))
            shape[a] = amount
            parts.insert(at * len(parts), ops.full(shape, value, dtype=dtype))
        if len(parts) > 1:
            x = ops.concatenate(parts, axis=a)
    return x


def _taps(x, axis: int, window: int, stride: int, dilation: int):
    """The ``window`` strided slices of ``x`` along ``axis`` whose elementwise reduction is the windowed one."""
    span = dilation * (window - 1) + 1
    taps = []
    for j in range(window):
        start, trim = j * dilation, span - 1 - j * dilation
        index = [slice(None)] * len(x.shape)
        index[axis] = slice(start, -trim if trim else None, stride)
        taps.append(x[tuple(index)])
    return taps


def _max_along(x, axis, window, stride, dilation):
    taps = _taps(x, axis, window, stride, dilation)
    out = taps[0]
    for tap in taps[1:]:
        out = ops.maximum(out, tap)
    return out


def _sum_along(x, axis, window, stride, dilation=1):
    taps = _taps(x, axis, window, stride, dilation)
    out = taps[0]
    for tap in taps[1:]:
        out = out + tap
    return out


def _first_max(a, b, floating: bool):
    """The winner of two (value, index) pairs: NaN (the later one), else the larger value, else the lower index."""
    (av, ai), (bv, bi) = a, b
    a_wins = ops.logical_or(av > bv, ops.logical_and(ops.equal(av, bv), ai < bi))
    if floating:
        a_nan, b_nan = ops.isnan(av), ops.isnan(bv)
        both = ops.logical_and(a_nan, b_nan)
        a_wins = ops.where(both, ai > bi, ops.logical_or(ops.logical_and(a_nan, ops.logical_not(b_nan)), a_wins))
    return ops.where(a_wins, av, bv), ops.where(a_wins, ai, bi)


def _flat_positions(x, axes):
    """The flat index (int64) within ``axes`` of each element of ``x``, shaped to broadcast against it."""
    rank, shape = len(x.shape), ops.shape(x)
    flat = None
    for a in axes:
        iota = ops.reshape(ops.arange(shape[a], dtype="int64"), [-1 if i == a else 1 for i in range(rank)])
        size = shape[a] if isinstance(shape[a], int) else ops.cast(shape[a], "int64")
        flat = iota if flat is None else flat * size + iota
    return flat


@lowers("max_pool")
def max_pool(
    x, /, *, window, strides, padding, dilation, ceil_mode=False, channels_last=False, return_indices=False
):
    axes = _spatial_axes(len(x.shape), len(window), channels_last)
    pads = _window_padding(x, axes, window, strides, padding, dilation, ceil_mode)
    lowest = _lowest(ops.dtype(x))
    padded = _pad(x, axes, pads, lowest)
    values = padded
    for a, k, s, d in zip(axes, window, strides, dilation):
        values = _max_along(values, a, k, s, d)
    if not return_indices:
        return values
    positions = _flat_positions(x, axes)
    never = np.iinfo(ops.dtype(positions)).max
    pairs = padded, _pad(positions, axes, pads, never)
    floating = _is_float(ops.dtype(x))
    for a, k, s, d in zip(axes, window, strides, dilation):
        taps = list(zip(*(_taps(t, a, k, s, d) for t in pairs)))
        best = taps[0]
        for tap in taps[1:]:
            best = _first_max(tap, best, floating)
        pairs = best
    return values, ops.broadcast_to(pairs[1], ops.shape(values))


@lowers("avg_pool")
def avg_pool(
    x,
    /,
    *,
    window,
    strides,
    padding,
    ceil_mode=False,
    count_include_pad=True,
    divisor_override=None,
    channels_last=False,
):
    axes = _spatial_axes(len(x.shape), len(window), channels_last)
    ones = (1,) * len(window)
    pads = _window_padding(x, axes, window, strides, padding, ones, ceil_mode)
    acc = _accumulator(ops.dtype(x))
    total = _pad(ops.cast(x, acc), axes, pads, 0)
    for a, k, s in zip(axes, window, strides):
        total = _sum_along(total, a, k, s)
    if divisor_override is not None:
        return ops.cast(total / divisor_override, ops.dtype(x))
    # The divisor of a box is the product of each axis's count: the input's elements and, with
    # count_include_pad, the explicit padding's, never those ceil_mode adds.
    rank, shape = len(x.shape), ops.shape(x)
    count = None
    for a, k, s, (lo, hi), (grown_lo, grown_hi) in zip(axes, window, strides, padding, pads):
        counted = _pad(ops.ones((shape[a],), acc), (0,), [(lo, hi)], 1 if count_include_pad else 0)
        counted = _pad(counted, (0,), [(grown_lo - lo, grown_hi - hi)], 0)
        along = ops.reshape(_sum_along(counted, 0, k, s), [-1 if i == a else 1 for i in range(rank)])
        count = along if count is None else count * along
    return ops.cast(total / count, ops.dtype(x))


# ---- adaptive pools ----------------------------------------------------------------------


def _pool_axis(x, axis: int, out: int, kind: str):
    """``x`` with ``axis`` pooled into ``out`` adaptive bins by ``"mean"`` or ``"max"``."""
    reduce = ops.mean if kind == "mean" else ops.max
    if out == 1:
        return reduce(x, axis=axis, keepdims=True)
    shape = list(ops.shape(x))
    size = int(shape[axis])
    if size % out == 0:
        return reduce(ops.reshape(x, [*shape[:axis], out, size // out, *shape[axis + 1 :]]), axis=axis + 1)
    taps, mask = bin_taps(size, out)
    windows = ops.take(x, taps.reshape(-1), axis=axis)
    windows = ops.reshape(windows, [*shape[:axis], *taps.shape, *shape[axis + 1 :]])
    if kind == "max":
        return ops.max(windows, axis=axis + 1)  # a repeated tap does not change the max
    lead, trailing = (1,) * axis, (1,) * (len(shape) - axis - 1)
    mask_b = ops.convert_to_tensor(mask.reshape(*lead, *mask.shape, *trailing))
    total = ops.sum(ops.where(mask_b, windows, ops.zeros_like(windows)), axis=axis + 1)
    counts = mask.sum(axis=1).reshape(*lead, -1, *trailing)
    return total / ops.cast(counts, ops.dtype(x))


@lowers("adaptive_avg_pool")
def adaptive_avg_pool(x, /, *, output_size, channels_last=False):
    dtype = ops.dtype(x)
    y = ops.cast(x, _accumulator(dtype))
    for axis, out in zip(_spatial_axes(len(x.shape), len(output_size), channels_last), output_size):
        y = _pool_axis(y, axis, out, "mean")
    return ops.cast(y, dtype)


@lowers("adaptive_max_pool")
def adaptive_max_pool(x, /, *, output_size, channels_last=False, return_indices=False):
    axes = _spatial_axes(len(x.shape), len(output_size), channels_last)
    values = x
    for axis, out in zip(axes, output_size):
        values = _pool_axis(values, axis, out, "max")
    if not return_indices:
        return values
    return values, _adaptive_argmax(x, axes, output_size)


def _first_argmax(x, axis: int):
    """The index of the first maximum along ``axis``, kept as a size-1 axis (NaN wins, the first NaN)."""
    peak = ops.max(x, axis=axis, keepdims=True)
    hit = ops.equal(x, peak)
    if _is_float(ops.dtype(x)):
        hit = ops.logical_or(hit, ops.isnan(x))
    size = ops.shape(x)[axis]
    positions = ops.reshape(ops.arange(size, dtype="int32"), [-1 if i == axis else 1 for i in range(len(x.shape))])
    return ops.min(ops.where(hit, positions, size), axis=axis, keepdims=True)


def _adaptive_argmax(x, axes, output_size):
    """The flat spatial index (int64) of the first maximum of each adaptive box (all boxes gathered at once)."""
    first, n = axes[0], len(axes)
    shape = list(ops.shape(x))
    lead, rest = shape[:first], shape[first + n :]
    if all(out == 1 for out in output_size):  # one box: the input, whatever its size
        best = _first_argmax(ops.reshape(x, [*lead, -1, *rest]), first)
        return ops.cast(ops.reshape(best, [*lead, *output_size, *rest]), "int64")
    sizes = tuple(int(shape[a]) for a in axes)
    positions = box_positions(sizes, output_size)
    flat = ops.reshape(x, [*lead, math.prod(sizes), *rest])
    boxes = ops.take(flat, positions.reshape(-1), axis=first)
    boxes = ops.reshape(boxes, [*lead, *positions.shape, *rest])
    best = _first_argmax(boxes, first + n)
    table = ops.cast(positions.reshape(*(1,) * first, *positions.shape, *(1,) * len(rest)), "int64")
    table = ops.broadcast_to(table, ops.shape(boxes))
    return ops.squeeze(ops.take_along_axis(table, best, axis=first + n), axis=first + n)
