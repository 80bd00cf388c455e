"""Windowed reductions: ``reduce_window_max``/``_min``/``_sum`` and ``reduce_window`` as pools.

A window that is 1 (no stride, no padding) on the leading axes, and on the
last one or not, is a pool over the axes in between, channels-last or
channels-first; unigraph's pools take every such window. ``flax.linen``'s
``avg_pool`` (and Keras's under JAX) is a window sum divided by the window
size: that pair becomes one ``avg_pool`` (padding counted, as the division
by the full size counts it). A sum not followed by that division is an
``avg_pool`` with divisor 1, which is the sum exactly.
"""

from __future__ import annotations

import math

import numpy as np

from unigraph.frontends.builder import TensorRef
from unigraph.frontends.jax_ops import handles
from unigraph.frontends.jax_ops.common import ints, is_floating, window_layout
from unigraph.frontends.jax_ops.context import Context, Unsupported


def _pool_attrs(
    x: TensorRef, *, window_dimensions, window_strides, padding, base_dilation, window_dilation, **_
) -> dict:
    """The pool attributes (window, strides, padding, dilation, channels_last) of a window over ``x``."""
    if any(d != 1 for d in ints(base_dilation)):
        raise Unsupported("reduce_window with base (input) dilation")
    window, strides, dilation = ints(window_dimensions), ints(window_strides), ints(window_dilation)
    pads = tuple(ints(p) for p in padding)
    trivial = [w == 1 and s == 1 and p == (0, 0) and d == 1 for w, s, p, d in zip(window, strides, pads, dilation)]
    channels_last, axes = window_layout(x.rank, trivial)
    return dict(
        window=tuple(window[a] for a in axes),
        strides=tuple(strides[a] for a in axes),
        padding=tuple(pads[a] for a in axes),
        dilation=tuple(dilation[a] for a in axes),
        channels_last=channels_last,
    )


@handles("reduce_window_max")
def reduce_window_max(cx: Context, x, **window):
    return cx.emit("max_pool", x, **_pool_attrs(x, **window))


@handles("reduce_window_min")
def reduce_window_min(cx: Context, x, **window):
    """``-max_pool(-x)``: exact for floats (negation is; the padding's -inf becomes +inf)."""
    if not is_floating(x.dtype):
        raise Unsupported(f"reduce_window_min of {x.dtype} values")
    pooled = cx.emit("max_pool", cx.emit("neg", x), **_pool_attrs(x, **window))
    return cx.emit("neg", pooled)


@handles("reduce_window_sum")
def reduce_window_sum(cx: Context, x, **window):
    attrs = _pool_attrs(x, **window)
    if not is_floating(x.dtype) or any(d != 1 for d in attrs.pop("dilation")):
        raise Unsupported(f"reduce_window_sum of {x.dtype} values or with window dilation")
    mean = _division_by_size(cx, math.prod(attrs["window"]))
    if mean is not None:
        out = cx.emit("avg_pool", x, **attrs, count_include_pad=True)
        cx.absorb(mean, out)
        return out
    return cx.emit("avg_pool", x, **attrs, divisor_override=1)


def _division_by_size(cx: Context, size: int):
    """The equation dividing this one's output by the window ``size`` (a constant), if it is the sole consumer."""
    out = cx.eqn.outvars[0]
    div = cx.sole_consumer(out)
    if div is None or div.primitive.name != "div" or div.invars[0] is not out:
        return None
    divisor = cx.known(div.invars[1])
    value = None if divisor is None else cx.constant(divisor)
    if value is None or not np.all(value == size) or divisor.rank > out.aval.ndim:
        return None
    return div


_MONOIDS = {"add": reduce_window_sum, "max": reduce_window_max, "min": reduce_window_min}


@handles("reduce_window")
def reduce_window(cx: Context, *operands, jaxpr, consts=(), **window):
    """A window reduction by a custom computation: a pool when it is one ``add``/``max``/``min`` from its identity."""
    body = getattr(jaxpr, "jaxpr", jaxpr)
    if len(operands) != 2 or consts or len(body.eqns) != 1 or body.eqns[0].primitive.name not in _MONOIDS:
        raise Unsupported("reduce_window with a computation other than one add, max or min")
    x, init = operands
    kind = body.eqns[0].primitive.name
    identity = {"add": 0, "max": -np.inf, "min": np.inf}[kind]
    value = cx.constant(init)
    if value is None or value != identity:
        raise Unsupported(f"reduce_window by {kind} starting from a value other than {identity}")
    return _MONOIDS[kind](cx, x, **window)

