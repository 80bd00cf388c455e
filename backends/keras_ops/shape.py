"""Keras lowerings: reshapes, transposes, slices, concatenation, padding and the like.

Slice bounds follow Python's rules as in ``unigraph.ops.shape`` (negative
bounds count from the end, out-of-range ones clamp, an end of ``OPEN`` or more
is open). Attributes that are dimension expressions arrive as Python ints in
an eager run and may arrive as scalar tensors under TensorFlow's graph mode
(a dynamic batch): the helpers below compute in Python where every operand is
an int and with ``keras.ops`` otherwise, where every bound clamps exactly.
Non-constant padding is composed of slices, flips and broadcasts (TensorFlow's
``pad`` has no edge or wrap mode, torch's pads only some ranks).
"""

from __future__ import annotations

import numpy as np
from keras import ops

from unigraph.backends.keras_ops import lowers

#: Bounds at least this large are open ends (as in ``unigraph.ops.shape``).
OPEN = 2**62


@lowers("reshape")
def reshape(x, /, *, shape):
    return ops.reshape(x, tuple(shape))


@lowers("transpose")
def transpose(x, /, *, perm):
    rank = len(x.shape)
    return ops.transpose(x, tuple(p % rank for p in perm))


@lowers("broadcast_to")
def broadcast_to(x, /, *, shape):
    return ops.broadcast_to(x, tuple(shape))


@lowers("squeeze")
def squeeze(x, /, *, axes):
    # no axes squeezes nothing (ops.squeeze would squeeze every size-1 axis under TensorFlow)
    return ops.squeeze(x, axis=tuple(a % len(x.shape) for a in axes)) if axes else x


@lowers("expand_dims")
def expand_dims(x, /, *, axes):
    """Size-1 axes at ``axes`` of the output (negative ones count from the output's end)."""
    rank = len(x.shape) + len(axes)
    for axis in sorted(a % rank for a in axes):
        x = ops.expand_dims(x, axis)
    return x


@lowers("concat")
def concat(*xs, axis):
    return ops.concatenate(list(xs), axis=axis)


@lowers("split")
def split(x, /, *, sizes, axis):
    pieces, start = [], 0
    for size in sizes:
        pieces.append(slice_in_range(x, axis, start, start + size))
        start = start + size
    return tuple(pieces)


@lowers("slice")
def slice_(x, /, *, axis, start=0, end=OPEN, step=1):
    start, end = slice_bounds(dim(x, axis), start, end)
    return slice_in_range(x, axis, start, end, step)


@lowers("pad")
def pad(x, /, *, low, high, mode="constant", value=0.0):
    if mode != "constant":
        for axis, (lo, hi) in enumerate(zip(low, high)):
            x = _pad_axis(x, axis, lo, hi, mode)
        return x
    # negative amounts crop (as lax.pad), positive ones pad
    for axis, (lo, hi) in enumerate(zip(low, high)):
        if not (_at_least_zero(lo) and _at_least_zero(hi)):
            n = dim(x, axis)
            x = slice_in_range(x, axis, _maximum(-lo, 0), n - _maximum(-hi, 0))
    widths = [(_maximum(lo, 0), _maximum(hi, 0)) for lo, hi in zip(low, high)]
    if all(is_zero(w) for pair in widths for w in pair):
        return x
    return ops.pad(x, widths, constant_values=scalar(value, ops.dtype(x)))


def _pad_axis(x, axis: int, lo, hi, mode: str):
    """``x`` padded along one axis by borders cut from ``x`` itself (``unigraph.ops.shape._pad_axis``)."""
    if is_zero(lo) and is_zero(hi):
        return x
    n = dim(x, axis)
    if mode == "edge":
        first, last = (slice_in_range(x, axis, i, i + 1) for i in (0, n - 1))
        before = ops.broadcast_to(first, _with(ops.shape(x), axis, lo))
        after = ops.broadcast_to(last, _with(ops.shape(x), axis, hi))
    elif mode == "reflect":
        before = ops.flip(slice_in_range(x, axis, 1, lo + 1), axis)
        after = ops.flip(slice_in_range(x, axis, n - 1 - hi, n - 1), axis)
    else:  # wrap
        before = slice_in_range(x, axis, n - lo, n)
        after = slice_in_range(x, axis, 0, hi)
    return ops.concatenate([before, x, after], axis=axis)


@lowers("tile")
def tile(x, /, *, reps):
    """NumPy's ``tile``, as the op writes it: a reshape, a broadcast and a reshape."""
    rank = len(x.shape)
    reps = (1,) * (rank - len(reps)) + tuple(reps)
    shape = (1,) * (len(reps) - rank) + tuple(ops.shape(x))
    if all(is_one(r) for r in reps):
        return ops.reshape(x, shape) if len(shape) != rank else x
    interleaved = [d for pair in zip((1,) * len(shape), shape) for d in pair]
    target = [d for pair in zip(reps, shape) for d in pair]
    tiled = ops.broadcast_to(ops.reshape(x, interleaved), target)
    return ops.reshape(tiled, tuple(r * d for r, d in zip(reps, shape)))


@lowers("flip")
def flip(x, /, *, axes):
    return ops.flip(x, axis=tuple(axes)) if axes else x


@lowers("roll")
def roll(x, /, *, shifts, axes):
    for shift, axis in zip(shifts, axes):
        n = dim(x, axis)
        if is_static(shift) and is_static(n) and n and shift % n == 0:
            continue
        x = ops.roll(x, shift, axis=axis % len(x.shape))
    return x


@lowers("sliding_window")
def sliding_window(x, /, *, axis, size, step):
    axis %= len(x.shape)
    count = _maximum((dim(x, axis) - size) // step + 1, 0)
    if is_static(count):
        positions = np.arange(count, dtype=np.int32)[:, None] * step + np.arange(size, dtype=np.int32)[None, :]
    else:
        starts = ops.expand_dims(ops.arange(count, dtype="int32") * step, 1)
        positions = starts + np.arange(size, dtype=np.int32)[None, :]
    windows = ops.take(x, positions, axis=axis)  # every position is in range
    return ops.moveaxis(windows, axis + 1, -1)


# ---- helpers, shared with the index and creation lowerings ------------------------------------


def is_static(v) -> bool:
    """Whether ``v`` is a Python (or NumPy) int rather than a tensor."""
    return isinstance(v, (int, np.integer))


def is_zero(v) -> bool:
    return is_static(v) and v == 0


def is_one(v) -> bool:
    return is_static(v) and v == 1


def _at_least_zero(v) -> bool:
    """Whether ``v`` is known not to be negative (a tensor is not)."""
    return is_static(v) and v >= 0


def _maximum(a, b):
    return max(a, b) if is_static(a) and is_static(b) else ops.maximum(a, b)


def _minimum(a, b):
    return min(a, b) if is_static(a) and is_static(b) else ops.minimum(a, b)


def clamp(v, lo, hi):
    """``v`` clamped into ``[lo, hi]``."""
    return _minimum(_maximum(v, lo), hi)


def dim(x, axis: int):
    """The size of ``x`` along ``axis``: an int, or a scalar tensor for a dynamic one (TensorFlow graphs)."""
    return ops.shape(x)[axis]


def slice_bounds(n, start, end):
    """``start, end`` resolved like ``slice(start, end).indices(n)`` for a step of 1 or more."""
    return _bound(start, n), _bound(end, n)


def _bound(v, n):
    if is_static(v) and abs(v) >= OPEN:
        return n if v > 0 else 0
    if is_static(v) and v < 0:
        return _maximum(v + n, 0)
    if is_static(v):
        return _minimum(v, n)
    return clamp(ops.where(v < 0, v + n, v), 0, n)


def slice_in_range(x, axis: int, start, end, step: int = 1):
    """``x[start:end:step]`` along ``axis`` for bounds already resolved (``start, end`` in ``[0, n]``)."""
    axis %= len(x.shape)
    shape = ops.shape(x)
    end = _maximum(end, start)
    count = (end - start + step - 1) // step
    if is_zero(start) and step == 1 and is_static(count) and is_static(shape[axis]) and count == shape[axis]:
        return x
    if step == 1:
        starts = [0] * len(shape)
        starts[axis] = start
        return ops.slice(x, starts, _with(shape, axis, count))
    if is_static(start) and is_static(count):
        positions = np.arange(start, start + step * count, step, dtype=np.int32)
    else:
        positions = ops.cast(start, "int32") + step * ops.arange(count, dtype="int32")
    return ops.take(x, positions, axis=axis)


def scalar(value, dtype: str):
    """``value`` as the Python scalar a tensor of ``dtype`` holds (``jnp.asarray(value, dtype)``'s value)."""
    if dtype == "bool":
        return bool(value)
    if "int" in dtype:
        return int(np.asarray(value).astype(dtype))
    return float(value)


def _with(shape, axis: int, size) -> list:
    return [size if i == axis else d for i, d in enumerate(shape)]
