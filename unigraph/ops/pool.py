"""Pooling: windowed max/average (``lax.reduce_window``) and adaptive pools with torch's bins.

Pools act on the ``n`` spatial dimensions of an activation in its source
layout: the trailing ones (``channels_last=False``) or those before the
trailing channel axis (``channels_last=True``); any leading axes (batch, or
none) pass through. Indices, where returned, are flat positions within the
input's spatial dimensions (``h*W + w`` in 2-d), as torch returns them.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from jax import lax

from unigraph.dtypes import jax_dtype
from unigraph.ops.conv import Pairs, layout_axes
from unigraph.ops.norm import compute_dtype
from unigraph.ops.registry import op


def _spatial_axes(x, n: int, channels_last: bool) -> tuple[int, ...]:
    return layout_axes(x.ndim, n, channels_last)[1]


def _full(x, axes, values, fill) -> tuple:
    """A per-axis tuple for ``x`` holding ``values`` at ``axes`` and ``fill`` elsewhere."""
    out = [fill] * x.ndim
    for axis, value in zip(axes, values):
        out[axis] = value
    return tuple(out)


def _ceil_padding(size, window: int, stride: int, pad: tuple[int, int], dilation: int) -> tuple[int, int]:
    """``pad`` with ``hi`` grown so the output has torch's ``ceil_mode`` length.

    The output length rounds up, but its last window must start inside the
    input or the left padding; ``hi`` never shrinks (the windows stay the same).
    """
    lo, hi = pad
    span = dilation * (window - 1) + 1
    out = -(-(size + lo + hi - span) // stride) + 1
    if (out - 1) * stride >= size + lo:
        out -= 1
    return lo, max(hi, (out - 1) * stride + span - size - lo)


def _window_padding(x, axes, window, strides, padding, dilation, ceil_mode) -> list[tuple[int, int]]:
    """The ``(lo, hi)`` padding of each spatial axis, ceil-mode growth included."""
    if not ceil_mode:
        return list(padding)
    return [
        _ceil_padding(x.shape[a], k, s, p, d)
        for a, k, s, p, d in zip(axes, window, strides, padding, dilation)
    ]


def _lowest(dtype):
    return -jnp.inf if jnp.issubdtype(dtype, jnp.floating) else jnp.iinfo(dtype).min


def _flat_positions(shape, axes, dtype):
    """For each element of an array of ``shape``, its flat index within the ``axes`` (row-major)."""
    flat = jnp.zeros(shape, dtype)
    for a in axes:
        flat = flat * shape[a] + lax.broadcasted_iota(dtype, shape, a)
    return flat


def _first_max(a, b):
    """Reducer of (value, index) pairs: torch's pick (largest value, first index; NaN wins, the last NaN)."""
    (av, ai), (bv, bi) = a, b
    a_nan, b_nan = av != av, bv != bv
    a_wins = (a_nan & ~b_nan) | (a_nan & b_nan & (ai > bi)) | (
        ~a_nan & ~b_nan & ((av > bv) | ((av == bv) & (ai < bi)))
    )
    return jnp.where(a_wins, av, bv), jnp.where(a_wins, ai, bi)


@op("max_pool")
def max_pool(
    x,
    /,
    *,
    window: tuple[int, ...],
    strides: tuple[int, ...],
    padding: Pairs,
    dilation: tuple[int, ...],
    ceil_mode: bool = False,
    channels_last: bool = False,
    return_indices: bool = False,
):
    """Max over windows of the spatial dims (torch ``max_poolNd``); padded positions never win.

    With ``return_indices`` also returns the flat spatial index (int64) of
    each maximum, computed separately so that it costs nothing when unused.
    """
    axes = _spatial_axes(x, len(window), channels_last)
    pads = _window_padding(x, axes, window, strides, padding, dilation, ceil_mode)
    dims = _full(x, axes, window, 1)
    steps = _full(x, axes, strides, 1)
    rates = _full(x, axes, dilation, 1)
    pad_all = _full(x, axes, pads, (0, 0))
    # NumPy init values: a traced one makes lax.reduce_window the generic form, which has no VJP
    lowest = np.asarray(_lowest(x.dtype), x.dtype)
    values = lax.reduce_window(x, lowest, lax.max, dims, steps, pad_all, window_dilation=rates)
    if not return_indices:
        return values
    index_dtype = jax_dtype("int64")
    positions = _flat_positions(x.shape, axes, index_dtype)
    never = np.asarray(jnp.iinfo(index_dtype).max, index_dtype)
    _, indices = lax.reduce_window(
        (x, positions), (lowest, never), _first_max, dims, steps, pad_all, window_dilation=rates
    )
    return values, indices


@op("avg_pool")
def avg_pool(
    x,
    /,
    *,
    window: tuple[int, ...],
    strides: tuple[int, ...],
    padding: Pairs,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
    channels_last: bool = False,
):
    """Mean over windows of the spatial dims (torch ``avg_poolNd``), zero padding.

    The divisor is ``divisor_override`` if given; else the number of window
    elements inside the input and its explicit padding
    (``count_include_pad``), or inside the input only. Elements added by
    ``ceil_mode`` are never counted.
    """
    axes = _spatial_axes(x, len(window), channels_last)
    pads = _window_padding(x, axes, window, strides, padding, (1,) * len(window), ceil_mode)
    acc = compute_dtype(x.dtype)
    zero = np.asarray(0, acc)
    dims, steps = _full(x, axes, window, 1), _full(x, axes, strides, 1)
    total = lax.reduce_window(x.astype(acc), zero, lax.add, dims, steps, _full(x, axes, pads, (0, 0)))
    if divisor_override is not None:
        return (total / divisor_override).astype(x.dtype)
    counted = jnp.ones(tuple(x.shape[a] for a in axes), acc)
    counted = jnp.pad(counted, padding, constant_values=1 if count_include_pad else 0)
    ceil_extra = [(0, hi - p_hi) for (_, hi), (_, p_hi) in zip(pads, padding)]
    count = lax.reduce_window(counted, zero, lax.add, window, strides, ceil_extra)
    return (total / jnp.reshape(count, _full(x, axes, count.shape, 1))).astype(x.dtype)


def adaptive_bins(size: int, out: int) -> tuple[np.ndarray, np.ndarray]:
    """torch's adaptive bins: ``[floor(i*size/out), ceil((i+1)*size/out))`` for each output ``i``."""
    i = np.arange(out)
    return (i * size) // out, -((-(i + 1) * size) // out)


def bin_taps(size: int, out: int) -> tuple[np.ndarray, np.ndarray]:
    """``(out, k)`` input positions covering each bin (its last one repeated) and the mask of first visits.

    NumPy on static sizes: the Keras lowerings use it too."""
    start, end = adaptive_bins(size, out)
    taps = start[:, None] + np.arange(int((end - start).max()))[None, :]
    return np.minimum(taps, end[:, None] - 1), taps < end[:, None]


def _pool_axis(x, axis: int, out: int, kind: str):
    """``x`` with ``axis`` pooled into ``out`` adaptive bins by ``"mean"`` or ``"max"``."""
    reduce = jnp.mean if kind == "mean" else jnp.max
    if out == 1:
        return reduce(x, axis=axis, keepdims=True)
    size = int(x.shape[axis])
    if size % out == 0:
        return reduce(jnp.reshape(x, (*x.shape[:axis], out, size // out, *x.shape[axis + 1 :])), axis=axis + 1)
    taps, mask = bin_taps(size, out)
    windows = jnp.take(x, taps.reshape(-1), axis=axis)
    windows = jnp.reshape(windows, (*x.shape[:axis], *taps.shape, *x.shape[axis + 1 :]))
    if kind == "max":
        return jnp.max(windows, axis=axis + 1)  # a repeated tap does not change the max
    lead, trailing = (1,) * axis, (1,) * (x.ndim - axis - 1)
    total = jnp.sum(jnp.where(mask.reshape(*lead, *mask.shape, *trailing), windows, 0), axis=axis + 1)
    return total / mask.sum(axis=1).reshape(*lead, -1, *trailing).astype(x.dtype)


@op("adaptive_avg_pool")
def adaptive_avg_pool(x, /, *, output_size: tuple[int, ...], channels_last: bool = False):
    """Mean over torch's adaptive bins of each spatial dim (torch ``adaptive_avg_poolNd``).

    Output ``i`` of a dim of size ``L`` averages ``[floor(i*L/out), ceil((i+1)*L/out))``;
    bins overlap and differ in size when ``out`` does not divide ``L``.
    """
    y = x.astype(compute_dtype(x.dtype))
    for axis, out in zip(_spatial_axes(x, len(output_size), channels_last), output_size):
        y = _pool_axis(y, axis, out, "mean")
    return y.astype(x.dtype)


@op("adaptive_max_pool")
def adaptive_max_pool(
    x, /, *, output_size: tuple[int, ...], channels_last: bool = False, return_indices: bool = False
):
    """Max over torch's adaptive bins of each spatial dim (torch ``adaptive_max_poolNd``).

    With ``return_indices`` also returns the flat spatial index (int64) of
    each maximum (the first in row-major order), computed separately so that
    it costs nothing when unused.
    """
    axes = _spatial_axes(x, len(output_size), channels_last)
    values = x
    for axis, out in zip(axes, output_size):
        values = _pool_axis(values, axis, out, "max")
    if not return_indices:
        return values
    return values, _adaptive_argmax(x, axes, output_size)


def box_positions(sizes, output_size) -> np.ndarray:
    """``[*output_size, k]``: the flat spatial index of each tap of each adaptive box (NumPy: the Keras
    lowerings use it too)."""
    n = len(sizes)
    positions = np.zeros((), np.int64)
    for d, (size, out) in enumerate(zip(sizes, output_size)):
        taps = bin_taps(size, out)[0]
        shape = [1] * (2 * n)
        shape[d], shape[n + d] = taps.shape
        positions = positions * size + taps.reshape(shape)
    return positions.reshape(*output_size, -1)


def _adaptive_argmax(x, axes, output_size):
    """The flat spatial index of the first maximum of each adaptive box (all boxes gathered at once)."""
    first, n = axes[0], len(axes)
    lead, rest = x.shape[:first], x.shape[first + n :]
    index_dtype = jax_dtype("int64")
    if all(out == 1 for out in output_size):  # one box: the input, whatever its (dynamic) size
        best = jnp.argmax(jnp.reshape(x, (*lead, -1, *rest)), axis=first)
        return jnp.reshape(best, (*lead, *output_size, *rest)).astype(index_dtype)
    sizes = tuple(int(x.shape[a]) for a in axes)
    positions = box_positions(sizes, output_size)
    flat = jnp.reshape(x, (*lead, math.prod(sizes), *rest))
    boxes = jnp.take(flat, positions.reshape(-1), axis=first)
    boxes = jnp.reshape(boxes, (*lead, *positions.shape, *rest))
    best = jnp.argmax(boxes, axis=first + n, keepdims=True)
    table = jnp.asarray(positions, index_dtype)
    table = jnp.reshape(table, (*(1,) * first, *positions.shape, *(1,) * len(rest)))
    return jnp.squeeze(jnp.take_along_axis(table, best, axis=first + n), axis=first + n)
