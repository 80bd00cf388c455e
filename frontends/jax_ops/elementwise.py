"""Elementwise primitives: math, arithmetic, comparisons, logic, selection, casts and no-ops.

jaxpr operands of a binary primitive already share one dtype (JAX inserts
``convert_element_type`` where it promotes), so every handler maps to one
unigraph op without casts of its own, except where the JAX primitive means
something dtype-specific: ``div`` of integers truncates, ``rem`` takes the
dividend's sign, ``and``/``or``/``not`` are logical on bools and bitwise on
integers.
"""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np

from unigraph import dims
from unigraph.dtypes import numpy_dtype
from unigraph.frontends.builder import TensorRef
from unigraph.frontends.jax_ops import grouping, handles
from unigraph.frontends.jax_ops.common import is_bool, is_floating, select
from unigraph.frontends.jax_ops.context import Context, Unsupported

#: Primitives that are one unigraph op of the same arity, operands as they are.
_DIRECT = {
    "neg": "neg",
    "abs": "abs",
    "sign": "sign",
    "floor": "floor",
    "ceil": "ceil",
    "exp": "exp",
    "expm1": "expm1",
    "log": "log",
    "log1p": "log1p",
    "sqrt": "sqrt",
    "rsqrt": "rsqrt",
    "square": "square",
    "sin": "sin",
    "cos": "cos",
    "tan": "tan",
    "asin": "asin",
    "acos": "acos",
    "atan": "atan",
    "sinh": "sinh",
    "cosh": "cosh",
    "tanh": "tanh",
    "logistic": "sigmoid",
    "erf": "erf",
    "erfc": "erfc",
    "erf_inv": "erfinv",
    "is_finite": "isfinite",
    "add": "add",
    "add_any": "add",
    "mul": "mul",
    "pow": "pow",
    "atan2": "atan2",
    "rem": "fmod",
    "eq": "equal",
    "ne": "not_equal",
    "lt": "less",
    "le": "less_equal",
    "gt": "greater",
    "ge": "greater_equal",
    "min": "minimum",
}


def _direct(op: str):
    def handler(cx: Context, *xs, **_):
        return cx.emit(op, *xs)

    handler.__name__ = op
    return handler


for _primitive, _op in _DIRECT.items():
    handles(_primitive)(_direct(_op))


@handles("max")
def maximum(cx: Context, x, y, **_):
    """``max(x, 0)`` is ``jax.nn.relu`` exactly; other maxima are ``maximum``."""
    for a, b in ((x, y), (y, x)):
        zero = cx.constant(b)
        positive_zero = zero is not None and zero.ndim == 0 and zero == 0 and not np.signbit(zero)
        if is_floating(a.dtype) and positive_zero and a.type == cx.out_type:
            return cx.emit("relu", a)
    return cx.emit("maximum", x, y)


@handles("div")
def div(cx: Context, x, y, **_):
    """``lax.div``: true division of floats (or the end of a softmax), integer division rounding toward zero."""
    if not is_floating(x.dtype):
        return cx.emit("trunc_divide", x, y)
    return grouping.softmax(cx) or cx.emit("div", x, y)


@handles("sub")
def sub(cx: Context, x, y, **_):
    """Subtraction, or the end of a log-softmax."""
    return (is_floating(x.dtype) and grouping.log_softmax(cx)) or cx.emit("sub", x, y)


def _logical_or_bitwise(logical: str, bitwise: str):
    def handler(cx: Context, *xs, **_):
        return cx.emit(logical if is_bool(xs[0].dtype) else bitwise, *xs)

    handler.__name__ = logical
    return handler


handles("and")(_logical_or_bitwise("logical_and", "bitwise_and"))
handles("or")(_logical_or_bitwise("logical_or", "bitwise_or"))
handles("xor")(_logical_or_bitwise("logical_xor", "bitwise_xor"))
handles("not")(_logical_or_bitwise("logical_not", "bitwise_not"))


@handles("integer_pow")
def integer_pow(cx: Context, x, *, y: int, **_):
    """``x ** y`` by repeated squaring, the products XLA computes for ``lax.integer_pow``."""
    if y == 0:
        return cx.emit("broadcast_to", cx.scalar(1, x.dtype), shape=x.shape)
    n, result, power = abs(y), None, x
    while n:
        if n & 1:
            result = power if result is None else cx.emit("mul", result, power)
        n >>= 1
        if n:
            power = cx.emit("square", power)
    return cx.emit("reciprocal", result) if y < 0 else result


@handles("exp2")
def exp2(cx: Context, x, **_):
    """``2 ** x`` as XLA computes ``lax.exp2``: ``exp(log(2) * x)``."""
    return cx.emit("exp", cx.emit("mul", cx.scalar(math.log(2), x.dtype), x))


@handles("round")
def round_(cx: Context, x, *, rounding_method=0, **_):
    """``lax.round``: half to even (``jnp.round``) or half away from zero (the default).

    Away from zero is ``trunc(x)`` moved one step toward ``x``'s sign where the
    fraction ``x - trunc(x)`` (exact in floating point) is at least one half.
    """
    if int(rounding_method) == 1:
        return cx.emit("round", x)
    whole = cx.emit("trunc", x)
    fraction = cx.emit("abs", cx.emit("sub", x, whole))
    away = cx.emit("greater_equal", fraction, cx.scalar(0.5, x.dtype))
    return cx.emit("where", away, cx.emit("add", whole, cx.emit("sign", x)), whole)


@handles("clamp")
def clamp(cx: Context, lo, x, hi, **_):
    """``lax.clamp(lo, x, hi)``: ``min(max(x, lo), hi)``."""
    return cx.emit("clip", x, lo, hi)


@handles("select_n")
def select_n(cx: Context, which, *cases, **_):
    return select(cx, which, cases)


@handles("convert_element_type")
def convert_element_type(cx: Context, x, *, new_dtype, **_):
    return cx.cast(x, np.dtype(new_dtype).name)


@handles("reduce_precision")
def reduce_precision(cx: Context, x, *, exponent_bits: int, mantissa_bits: int, **_):
    """Rounding to a narrower float format: the identity for ``x``'s own, a cast round trip for half formats."""
    for dtype in (x.dtype, "bfloat16", "float16"):
        info = ml_dtypes.finfo(numpy_dtype(dtype))
        if (exponent_bits, mantissa_bits) == (info.nexp, info.nmant):
            return cx.cast(cx.cast(x, dtype), x.dtype)
    raise Unsupported(f"reduce_precision to {exponent_bits} exponent and {mantissa_bits} mantissa bits")


@handles("stop_gradient", "copy", "optimization_barrier", "sharding_constraint")
def identity(cx: Context, *xs: TensorRef, **_):
    """Primitives that change gradients, placement or scheduling, not values."""
    return xs if cx.eqn.primitive.multiple_results else xs[0]


@handles("dim_as_value")
def dim_as_value(cx: Context, *, dim, **_):
    """A (symbolic) dimension used as a number: ``jnp.mean`` over the batch divides by it."""
    return cx.emit("dim_value", dim=dims.from_jax(dim), dtype=cx.out_type.dtype)

