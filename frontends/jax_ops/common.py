"""Helpers shared by the primitive handlers: dtype classes, selection by index, window layouts."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from unigraph.dtypes import numpy_dtype
from unigraph.frontends.builder import TensorRef
from unigraph.frontends.jax_ops.context import Context, Unsupported


def is_floating(dtype: str) -> bool:
    return np.issubdtype(numpy_dtype(dtype), np.floating)


def is_bool(dtype: str) -> bool:
    return dtype == "bool"


def ints(values) -> tuple[int, ...]:
    """A parameter's sequence of (NumPy or Python) ints as Python ints."""
    return tuple(int(v) for v in values)


def select(cx: Context, index: TensorRef, cases: Sequence[TensorRef]) -> TensorRef:
    """``cases[index]`` elementwise (``lax.select_n``): a bool index picks ``cases[1]`` where true.

    An integer index is compared with each case number; out-of-range indices
    are undefined in JAX and take the last case here.
    """
    if len(cases) == 1:
        return cases[0]
    if index.dtype == "bool":
        if len(cases) != 2:
            raise Unsupported(f"select_n with a bool predicate and {len(cases)} cases")
        return cx.emit("where", index, cases[1], cases[0])
    result = cases[-1]
    for i in reversed(range(len(cases) - 1)):
        result = cx.emit("where", cx.emit("equal", index, cx.scalar(i, index.dtype)), cases[i], result)
    return result


def window_layout(
    rank: int, trivial: Sequence[bool]
) -> tuple[bool, tuple[int, ...]]:
    """``(channels_last, spatial_axes)`` for a windowed op whose ``trivial`` axes it leaves alone.

    unigraph's pools and convolutions act on the trailing spatial axes
    (channels-first) or on those before a trailing channel axis
    (channels-last), with leading axes passed through. Every window fits one:
    the spatial axes run from the first axis the window touches to the last
    axis, or to the one before it when the window leaves that one alone
    (channels-last); a window over the batch axis makes it spatial too.
    """
    touched = [a for a in range(rank) if not trivial[a]]
    if not touched:
        return False, (rank - 1,) if rank else ()
    first = touched[0]
    if trivial[rank - 1] and first < rank - 1:
        return True, tuple(range(first, rank - 1))
    return False, tuple(range(first, rank))
