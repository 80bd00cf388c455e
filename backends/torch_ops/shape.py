"""torch lowerings: reshape, transpose, broadcast, squeeze, concat/split, slice, pad, tile, flip, roll, windows.

Slices follow Python's rules through ``aten.slice`` (negative bounds count
from the end, out-of-range bounds clamp), with an end of ``OPEN`` or more
passed as None (open). Shapes, bounds and pad amounts may be SymInts: the
lowerings compare them with nothing but literals known to hold, so tracing
by ``torch.export`` adds no guards of its own.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from unigraph.backends.torch_ops import lowers

#: Bounds at least this large are open ends (as in ``unigraph.ops.shape``).
OPEN = 2**62


@lowers("reshape")
def reshape(x, /, *, shape):
    return x.reshape(shape)


@lowers("transpose")
def transpose(x, /, *, perm):
    return x.permute(perm)


@lowers("broadcast_to")
def broadcast_to(x, /, *, shape):
    return x.expand(shape)


@lowers("squeeze")
def squeeze(x, /, *, axes):
    return x.squeeze(axes)


@lowers("expand_dims")
def expand_dims(x, /, *, axes):
    """Size-1 axes at ``axes`` of the output (negative ones count from the output's end)."""
    rank = x.ndim + len(axes)
    for axis in sorted(a % rank for a in axes):
        x = x.unsqueeze(axis)
    return x


@lowers("concat")
def concat(*xs, axis):
    return torch.cat(xs, axis)


@lowers("split")
def split(x, /, *, sizes, axis):
    # one piece is ``x`` itself (the node then has one output, not a tuple)
    return torch.split(x, sizes, axis) if sizes[1:] else x


@lowers("slice")
def slice_(x, /, *, axis, start=0, end=OPEN, step=1):
    # An open end (a literal OPEN or more) is None: torch compares any other literal end with
    # the (possibly symbolic) size, which under torch.export guards the dynamic size below it.
    return torch.ops.aten.slice(x, axis, start, None if isinstance(end, int) and end >= OPEN else end, step)


@lowers("pad")
def pad(x, /, *, low, high, mode="constant", value=0.0):
    # constant: F.pad, where negative amounts crop; other modes pad from x's own borders
    return F.pad(x, _pad_widths(low, high), value=value) if mode == "constant" else _pad_border(x, low, high, mode)


def _pad_border(x, low, high, mode):
    """``x`` padded by ``low[i]`` / ``high[i]`` in mode reflect, edge or wrap (see ``unigraph.ops.shape.pad``)."""
    if all(_is_zero(d) for d in (*low, *high)):
        return x
    torch_mode = {"reflect": "reflect", "edge": "replicate", "wrap": "circular"}[mode]
    dtype = x.dtype
    if dtype == torch.bool:  # torch's reflection and replication kernels take no bool
        x = x.to(torch.uint8)
    widths = _pad_widths(low, high)
    if len(widths) <= 6:  # the padded axes are among the last three: one padding kernel
        x = _pad_last(x, widths, torch_mode)
    else:  # one axis at a time, each moved last
        for axis, (lo, hi) in enumerate(zip(low, high)):
            if not (_is_zero(lo) and _is_zero(hi)):
                x = _pad_last(x.movedim(axis, -1), [lo, hi], torch_mode).movedim(-1, axis)
    return x.to(dtype)


def _pad_widths(low, high):
    """``F.pad``'s amounts: (low, high) pairs from the last axis back, leading all-zero pairs left out."""
    widths = [w for lo, hi in zip(reversed(low), reversed(high)) for w in (lo, hi)]
    while len(widths) > 2 and _is_zero(widths[-1]) and _is_zero(widths[-2]):
        widths = widths[:-2]
    return widths


def _pad_last(x, widths, mode):
    """``F.pad`` in a non-constant mode of the last ``len(widths) // 2`` (at most 3) axes of ``x``.

    torch pads k axes of a tensor of rank k + 1 or k + 2 only: other leading
    axes are merged into one, or one is added.
    """
    k = len(widths) // 2
    if x.ndim - k in (1, 2):
        return F.pad(x, widths, mode=mode)
    merged = x.reshape((-1,) + tuple(x.shape[x.ndim - k :])) if x.ndim > k else x.unsqueeze(0)
    padded = F.pad(merged, widths, mode=mode)
    return padded.reshape(tuple(x.shape[: x.ndim - k]) + tuple(padded.shape[1:]))


def _is_zero(d):
    """Whether an amount is a literal 0 (a SymInt is taken as non-zero, without a guard)."""
    return isinstance(d, int) and d == 0


@lowers("tile")
def tile(x, /, *, reps):
    return torch.tile(x, reps)


@lowers("flip")
def flip(x, /, *, axes):
    return torch.flip(x, axes)


@lowers("roll")
def roll(x, /, *, shifts, axes):
    return torch.roll(x, shifts, axes)


@lowers("sliding_window")
def sliding_window(x, /, *, axis, size, step):
    return x.unfold(axis, size, step)
