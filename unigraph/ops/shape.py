"""Shape ops: reshape, transpose, broadcast, squeeze, concat/split, slice, pad, tile, flip, roll.

Every op works on symbolic shapes. Slice bounds follow Python slicing (negative
bounds count from the end, out-of-range bounds clamp); where a comparison with
a symbolic dimension cannot be decided, the bound is taken to be in range, as
torch.export assumes (it guards on the example's sizes), while concrete shapes
at run time always clamp exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import jax
import jax.numpy as jnp
from jax import lax

from unigraph.ops.registry import SymDim, SymShape, op

#: Bounds at least this large are open ends (torch writes ``x[1:]`` as end=INT64_MAX).
OPEN = 2**62


@op("reshape")
def reshape(x, /, *, shape: SymShape):
    """``x`` with the same elements in row-major order and shape ``shape`` (one entry may be -1)."""
    return jnp.reshape(x, shape)


@op("transpose")
def transpose(x, /, *, perm: tuple[int, ...]):
    """``x`` with axes permuted: output axis i is input axis ``perm[i]``."""
    return jnp.transpose(x, perm)


@op("broadcast_to")
def broadcast_to(x, /, *, shape: SymShape):
    """``x`` broadcast NumPy-style to ``shape`` (new axes are leading, size-1 axes stretch)."""
    return jnp.broadcast_to(x, shape)


@op("squeeze")
def squeeze(x, /, *, axes: tuple[int, ...]):
    """``x`` without the size-1 axes ``axes``."""
    return jnp.squeeze(x, axes)


@op("expand_dims")
def expand_dims(x, /, *, axes: tuple[int, ...]):
    """``x`` with size-1 axes inserted so that they sit at ``axes`` of the output."""
    return jnp.expand_dims(x, axes)


@op("concat")
def concat(*xs, axis: int):
    """The inputs (same dtype, same shape but along ``axis``) joined along ``axis``."""
    return jnp.concatenate(xs, axis=axis)


@op("split")
def split(x, /, *, sizes: SymShape, axis: int):
    """``len(sizes)`` consecutive pieces of ``x`` along ``axis`` (``sum(sizes)`` is its length)."""
    pieces, start = [], 0
    for size in sizes:
        pieces.append(slice_in_range(x, axis, start, start + size))
        start = start + size
    return tuple(pieces)


@op("slice")
def slice_(x, /, *, axis: int, start: SymDim = 0, end: SymDim = OPEN, step: int = 1):
    """``x[start:end:step]`` along ``axis`` with Python's slicing rules (``step >= 1``)."""
    start, end = slice_bounds(x.shape[axis], start, end)
    return slice_in_range(x, axis, start, end, step)


@op("pad")
def pad(
    x,
    /,
    *,
    low: SymShape,
    high: SymShape,
    mode: Literal["constant", "reflect", "edge", "wrap"] = "constant",
    value: float | bool = 0.0,
):
    """``x`` padded by ``low[i]`` / ``high[i]`` elements before / after axis i.

    ``constant`` fills with ``value`` and accepts negative amounts (they crop);
    ``reflect`` mirrors without repeating the edge (torch ``reflect``, NumPy
    ``reflect``), ``edge`` repeats the edge (torch ``replicate``), ``wrap``
    repeats periodically (torch ``circular``).
    """
    if mode == "constant":
        config = [(lo, hi, 0) for lo, hi in zip(low, high)]
        return lax.pad(x, jnp.asarray(value, x.dtype), config)
    for axis, (lo, hi) in enumerate(zip(low, high)):
        x = _pad_axis(x, axis, lo, hi, mode)
    return x


def _pad_axis(x, axis: int, lo, hi, mode: str):
    """``x`` padded along one axis by borders cut from ``x`` itself (symbolic-safe)."""
    if _is_zero(lo) and _is_zero(hi):
        return x
    n = x.shape[axis]
    if mode == "edge":
        first, last = (slice_in_range(x, axis, i, i + 1) for i in (0, n - 1))
        before = jnp.broadcast_to(first, _with(x.shape, axis, lo))
        after = jnp.broadcast_to(last, _with(x.shape, axis, hi))
    elif mode == "reflect":
        before = jnp.flip(slice_in_range(x, axis, 1, lo + 1), axis)
        after = jnp.flip(slice_in_range(x, axis, n - 1 - hi, n - 1), axis)
    else:
        before = slice_in_range(x, axis, n - lo, n)
        after = slice_in_range(x, axis, 0, hi)
    return jnp.concatenate([before, x, after], axis=axis)


@op("tile")
def tile(x, /, *, reps: SymShape):
    """``x`` repeated ``reps[i]`` times along axis i, aligned at the last axis (NumPy ``tile``).

    The shorter of ``reps`` and ``x.shape`` is padded with leading ones.
    """
    reps = (1,) * (x.ndim - len(reps)) + tuple(reps)
    shape = (1,) * (len(reps) - x.ndim) + tuple(x.shape)
    interleaved = [d for pair in zip((1,) * len(shape), shape) for d in pair]
    target = [d for pair in zip(reps, shape) for d in pair]
    tiled = jnp.broadcast_to(jnp.reshape(x, interleaved), target)
    return jnp.reshape(tiled, tuple(r * d for r, d in zip(reps, shape)))


@op("flip")
def flip(x, /, *, axes: tuple[int, ...]):
    """``x`` reversed along ``axes``."""
    return jnp.flip(x, axes)


@op("roll")
def roll(x, /, *, shifts: SymShape, axes: tuple[int, ...]):
    """``x`` rotated by ``shifts[i]`` along ``axes[i]``: element j moves to ``(j + shift) % n``."""
    for shift, axis in zip(shifts, axes):
        n = x.shape[axis]
        shift = shift % n
        if not _is_zero(shift):
            cut = n - shift
            x = jnp.concatenate([slice_in_range(x, axis, cut, n), slice_in_range(x, axis, 0, cut)], axis)
    return x


@op("sliding_window")
def sliding_window(x, /, *, axis: int, size: int, step: int):
    """Windows of ``size`` elements every ``step`` along ``axis`` (torch ``Tensor.unfold``).

    ``[..., n, ...]`` becomes ``[..., (n - size) // step + 1, ..., size]``: the
    window index replaces ``axis`` and the position in the window is last.
    """
    axis %= x.ndim
    count = (x.shape[axis] - size) // step + 1
    positions = lax.iota(jnp.int32, count)[:, None] * step + lax.iota(jnp.int32, size)[None, :]
    windows = jnp.take(x, positions, axis=axis, mode="clip")
    return jnp.moveaxis(windows, axis + 1, -1)


# ---- slicing helpers, shared with the index ops -------------------------------------------


def decided(condition: Callable[[], bool], assume: bool) -> bool:
    """``condition()`` (a comparison of possibly symbolic dims), or ``assume`` where JAX cannot tell."""
    try:
        return bool(condition())
    except jax.errors.InconclusiveDimensionOperation:
        return assume


def slice_bounds(n, start, end):
    """``start, end`` resolved like ``slice(start, end).indices(n)`` for a step of 1 or more."""
    return _bound(start, n), _bound(end, n)


def _bound(v, n):
    if isinstance(v, int) and abs(v) >= OPEN:
        return n if v > 0 else 0
    if decided(lambda: v < 0, False):
        v = v + n
    if decided(lambda: v < 0, False):
        return 0
    return n if decided(lambda: v > n, False) else v


def slice_in_range(x, axis: int, start, end, step: int = 1):
    """``x[start:end:step]`` along ``axis`` for bounds already resolved (``start, end`` in [0, n]).

    A gather where the shape is symbolic and JAX cannot prove the bounds in
    range (``pos_embed[:, :seq]`` on a static axis of 512) or would write the
    strided length in another form than ``(end - start + step - 1) // step``.
    """
    n = x.shape[axis]
    if decided(lambda: end < start, False):
        end = start
    static = all(isinstance(v, int) for v in (start, end, n))
    checks = (lambda: start >= 0, lambda: end <= n, lambda: start <= end)
    if static or (step == 1 and all(decided(c, False) for c in checks)):
        return lax.slice_in_dim(x, start, end, step, axis)
    count = (end - start + step - 1) // step
    positions = jnp.asarray(start) + step * lax.iota(jnp.asarray(start).dtype, count)
    return jnp.take(x, positions, axis=axis, mode="clip")


def _is_zero(d) -> bool:
    return isinstance(d, int) and d == 0


def _with(shape, axis: int, size):
    return tuple(size if i == axis else d for i, d in enumerate(shape))
