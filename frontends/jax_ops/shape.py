"""Shape primitives: broadcasts, reshapes, transposes, slicing (static and dynamic), padding, iota, split,
stack, tile.

Sizes in parameters may be symbolic (``new_sizes=(batch, 32)``); they are
written as dimension expressions, so the graph stays batch-dynamic. Dynamic
slices clamp their start so the window fits, as ``lax.dynamic_slice`` does:
a constant start is clamped at conversion time, a computed one in the graph.
"""

from __future__ import annotations

from unigraph import dims
from unigraph.frontends.builder import TensorRef
from unigraph.frontends.jax_ops import handles
from unigraph.frontends.jax_ops.common import ints
from unigraph.frontends.jax_ops.context import Context, Unsupported


@handles("broadcast_in_dim")
def broadcast_in_dim(cx: Context, x, *, broadcast_dimensions, **_):
    """Operand axis i becomes output axis ``broadcast_dimensions[i]``; the others are new (size-1 axes stretch)."""
    shape = cx.out_type.shape
    kept = ints(broadcast_dimensions)
    new = tuple(a for a in range(len(shape)) if a not in kept)
    if new and new != tuple(range(len(new))):  # new axes other than leading ones: insert them first
        x = cx.emit("expand_dims", x, axes=new)
    return x if cx.same_shape(x.shape, shape) else cx.emit("broadcast_to", x, shape=shape)


@handles("reshape")
def reshape(cx: Context, x, *, dimensions=None, **_):
    if dimensions is not None:
        x = cx.emit("transpose", x, perm=ints(dimensions))
    shape = cx.out_type.shape
    return x if cx.same_shape(x.shape, shape) else cx.emit("reshape", x, shape=shape)


@handles("transpose")
def transpose(cx: Context, x, *, permutation, **_):
    return cx.emit("transpose", x, perm=ints(permutation))


@handles("squeeze")
def squeeze(cx: Context, x, *, dimensions, **_):
    return cx.emit("squeeze", x, axes=ints(dimensions))


@handles("concatenate")
def concatenate(cx: Context, *xs, dimension, **_):
    return cx.emit("concat", *xs, axis=int(dimension))


@handles("stack")
def stack(cx: Context, *xs, axis, **_):
    """jax 0.10's ``stack`` primitive (``jnp.stack``): each input given a size-1 ``axis``, then joined there."""
    axis = int(axis) % (xs[0].rank + 1)
    return cx.emit("concat", *(cx.emit("expand_dims", x, axes=(axis,)) for x in xs), axis=axis)


@handles("tile")
def tile(cx: Context, x, *, reps, **_):
    """jax 0.10's ``tile`` primitive (``jnp.tile``, after it broadcast the operand to ``len(reps)`` axes)."""
    return cx.emit("tile", x, reps=tuple(dims.from_jax(r) for r in reps))


@handles("split")
def split(cx: Context, x, *, sizes, axis, **_):
    sizes = tuple(dims.from_jax(s) for s in sizes)
    return cx.emit("split", x, n_out=len(sizes), sizes=sizes, axis=int(axis))


@handles("rev")
def rev(cx: Context, x, *, dimensions, **_):
    return cx.emit("flip", x, axes=ints(dimensions))


@handles("slice")
def slice_(cx: Context, x, *, start_indices, limit_indices, strides=None, **_):
    """One ``slice`` node per axis the slice changes."""
    y = x
    for axis, (start, limit) in enumerate(zip(start_indices, limit_indices)):
        start, limit = dims.from_jax(start), dims.from_jax(limit)
        step = 1 if strides is None else int(strides[axis])
        if start == 0 and step == 1 and cx.same_dim(limit, x.shape[axis]):
            continue
        y = cx.emit("slice", y, axis=axis, start=start, end=limit, step=step)
    return y


def offset(cx: Context, start: int, size: dims.Dim) -> dims.Dim:
    """``start + size``, written as ``size`` itself for a start of 0."""
    return size if start == 0 else cx.arith(size, "+", start)


def window_start(cx: Context, start: TensorRef, n: dims.Dim, size: dims.Dim) -> int | None:
    """The clamped start of a ``size`` window in ``n`` when it is known at conversion time."""
    value = cx.constant(start)
    room = cx.arith(n, "-", size)
    if value is None or not isinstance(room, int):
        return None
    return min(max(int(value), 0), room)


def window_positions(cx: Context, start: TensorRef, n: dims.Dim, size: dims.Dim) -> TensorRef:
    """``clamp(start, 0, n - size) + arange(size)``: the positions of a dynamic window, computed in the graph."""
    dtype = start.dtype
    last = cx.arith(n, "-", size)
    hi = cx.scalar(last, dtype) if isinstance(last, int) else cx.emit("dim_value", dim=last, dtype=dtype)
    first = cx.emit("clip", start, cx.scalar(0, dtype), hi)
    return cx.emit("add", cx.emit("arange", end=size, dtype=dtype), first)


@handles("dynamic_slice")
def dynamic_slice(cx: Context, x, *starts, slice_sizes, **_):
    """``lax.dynamic_slice``: a static ``slice`` where the start is known, else a ``take`` of the window."""
    y = x
    for axis, (start, size) in enumerate(zip(starts, slice_sizes)):
        n, size = x.shape[axis], dims.from_jax(size)
        if cx.same_dim(size, n):
            continue  # the start clamps to 0
        first = window_start(cx, start, n, size)
        if first is not None:
            y = cx.emit("slice", y, axis=axis, start=first, end=offset(cx, first, size))
        else:
            y = cx.emit("take", y, window_positions(cx, start, n, size), axis=axis)
    return y


@handles("dynamic_update_slice")
def dynamic_update_slice(cx: Context, x, update, *starts, **_):
    """``lax.dynamic_update_slice``: ``slice_update`` for one known window, else ``index_update``.

    The window positions of each updated axis broadcast against each other
    (``index``'s advanced indexing); when those axes are not adjacent the
    indexed dims lead, so the update is transposed to match.
    """
    axes = [a for a in range(x.rank) if not cx.same_dim(update.shape[a], x.shape[a])]
    if not axes:
        return update
    if len(axes) == 1:
        (axis,) = axes
        first = window_start(cx, starts[axis], x.shape[axis], update.shape[axis])
        if first is not None:
            end = offset(cx, first, update.shape[axis])
            return cx.emit("slice_update", x, update, axis=axis, start=first, end=end)
    positions = []
    for k, axis in enumerate(axes):
        p = window_positions(cx, starts[axis], x.shape[axis], update.shape[axis])
        others = tuple(i for i in range(len(axes)) if i != k)
        positions.append(cx.emit("expand_dims", p, axes=others) if others else p)
    if axes != list(range(axes[0], axes[0] + len(axes))):
        rest = [a for a in range(x.rank) if a not in axes]
        update = cx.emit("transpose", update, perm=(*axes, *rest))
    return cx.emit("index_update", x, update, *positions, axes=tuple(axes), reduce="set")


@handles("pad")
def pad(cx: Context, x, value, *, padding_config, **_):
    """``lax.pad``: interior padding first (per axis), then edges; negative edges crop."""
    fill = cx.constant(value)
    if fill is None:
        raise Unsupported("pad with a padding value computed from the inputs")
    fill = bool(fill) if x.dtype == "bool" else float(fill)
    config = [ints(c) for c in padding_config]
    y = x
    for axis, (_, _, interior) in enumerate(config):
        if interior:
            y = _interior(cx, y, axis, interior, fill)
    low, high = tuple(c[0] for c in config), tuple(c[1] for c in config)
    if any(low) or any(high):
        y = cx.emit("pad", y, low=low, high=high, value=fill)
    return y


def _interior(cx: Context, x: TensorRef, axis: int, interior: int, fill) -> TensorRef:
    """``interior`` fill elements between neighbours along ``axis``: pad a new trailing axis, flatten, crop."""
    n = x.shape[axis]
    spread = cx.emit("expand_dims", x, axes=(axis + 1,))
    high = tuple(interior if a == axis + 1 else 0 for a in range(spread.rank))
    spread = cx.emit("pad", spread, low=(0,) * spread.rank, high=high, value=fill)
    long = cx.arith(n, "*", interior + 1)
    flat = cx.emit("reshape", spread, shape=(*x.shape[:axis], long, *x.shape[axis + 1 :]))
    return cx.emit("slice", flat, axis=axis, start=0, end=cx.arith(long, "-", interior))


@handles("iota")
def iota(cx: Context, *, dimension, **_):
    """``lax.iota`` of a shape with symbolic sizes (static ones are folded into constants)."""
    shape, axis = cx.out_type.shape, int(dimension)
    ramp = cx.emit("arange", end=shape[axis], dtype=cx.out_type.dtype)
    if len(shape) == 1:
        return ramp
    ramp = cx.emit("expand_dims", ramp, axes=tuple(a for a in range(len(shape)) if a != axis))
    return cx.emit("broadcast_to", ramp, shape=shape)
