"""Keras lowerings: elementwise math, activations, arithmetic, comparisons, casts."""

from __future__ import annotations

from keras import ops

from unigraph.backends.keras_ops import lowers

_UNARY = {
    "neg": ops.negative,
    "abs": ops.abs,
    "exp": ops.exp,
    "expm1": ops.expm1,
    "log": ops.log,
    "log1p": ops.log1p,
    "log2": ops.log2,
    "sqrt": ops.sqrt,
    "rsqrt": ops.rsqrt,
    "reciprocal": ops.reciprocal,
    "square": ops.square,
    "sin": ops.sin,
    "cos": ops.cos,
    "tan": ops.tan,
    "asin": ops.arcsin,
    "acos": ops.arccos,
    "atan": ops.arctan,
    "sinh": ops.sinh,
    "cosh": ops.cosh,
    "tanh": ops.tanh,
    "erf": ops.erf,
    "erfc": ops.erfc,
    "erfinv": ops.erfinv,
    "floor": ops.floor,
    "ceil": ops.ceil,
    "round": ops.round,
    "trunc": ops.trunc,
    "sign": ops.sign,
    "sigmoid": ops.sigmoid,
    "relu": ops.relu,
    "silu": ops.silu,
    "selu": ops.selu,
    "hard_swish": ops.hard_swish,
    "hard_sigmoid": ops.hard_sigmoid,
    "logical_not": ops.logical_not,
    "isnan": ops.isnan,
    "isinf": ops.isinf,
    "isfinite": ops.isfinite,
}

_BINARY = {
    "sub": ops.subtract,
    "div": ops.true_divide,
    "floor_divide": ops.floor_divide,
    "remainder": ops.mod,
    "fmod": ops.fmod,
    "pow": ops.power,
    "maximum": ops.maximum,
    "minimum": ops.minimum,
    "atan2": ops.arctan2,
    "equal": ops.equal,
    "not_equal": ops.not_equal,
    "less": ops.less,
    "less_equal": ops.less_equal,
    "greater": ops.greater,
    "greater_equal": ops.greater_equal,
    "logical_and": ops.logical_and,
    "logical_or": ops.logical_or,
    "logical_xor": ops.logical_xor,
}

for _name, _fn in _UNARY.items():
    lowers(_name)(_fn)
for _name, _fn in _BINARY.items():
    lowers(_name)(_fn)


@lowers("add")
def add(x, y, /):
    if ops.dtype(x) == "bool":
        return ops.logical_or(x, y)  # as JAX adds booleans
    # Not ops.add: Keras 3.15's TensorFlow add takes a (1, n) or (n, 1) operand for a bias and adds it
    # along the wrong axis ((1, 3) + (3, 1) gives (1, 3), not (3, 3)). Subtracting the negation is the
    # same sum, bit for bit (negation is exact, and integers wrap the same way).
    return ops.subtract(x, ops.negative(y))


@lowers("mul")
def mul(x, y, /):
    return ops.logical_and(x, y) if ops.dtype(x) == "bool" else ops.multiply(x, y)


@lowers("bitwise_not")
def bitwise_not(x, /):
    return ops.logical_not(x) if ops.dtype(x) == "bool" else ops.bitwise_not(x)


@lowers("bitwise_and")
def bitwise_and(x, y, /):
    return ops.logical_and(x, y) if ops.dtype(x) == "bool" else ops.bitwise_and(x, y)


@lowers("bitwise_or")
def bitwise_or(x, y, /):
    return ops.logical_or(x, y) if ops.dtype(x) == "bool" else ops.bitwise_or(x, y)


@lowers("bitwise_xor")
def bitwise_xor(x, y, /):
    return ops.logical_xor(x, y) if ops.dtype(x) == "bool" else ops.bitwise_xor(x, y)


@lowers("mish")
def mish(x, /):
    return x * ops.tanh(ops.softplus(x))


@lowers("trunc_divide")
def trunc_divide(x, y, /):
    if "int" not in ops.dtype(x) or "int" not in ops.dtype(y):
        return ops.trunc(ops.true_divide(x, y))
    quotient = ops.floor_divide(x, y)  # floor, one more than truncation where the signs differ, inexactly
    inexact = ops.not_equal(x - quotient * y, 0)
    return ops.where(ops.logical_and(inexact, ops.not_equal(x < 0, y < 0)), quotient + 1, quotient)


@lowers("where")
def where(condition, x, y, /):
    return ops.where(condition, x, y)


@lowers("clip")
def clip(x, lo=None, hi=None, /):
    if lo is not None:
        x = ops.maximum(x, ops.cast(lo, x.dtype))
    if hi is not None:
        x = ops.minimum(x, ops.cast(hi, x.dtype))
    return x


@lowers("cast")
def cast(x, /, *, dtype):
    return ops.cast(x, dtype)


@lowers("gelu")
def gelu(x, /, *, approximate=False):
    return ops.gelu(x, approximate=approximate)


@lowers("leaky_relu")
def leaky_relu(x, /, *, alpha=0.01):
    return ops.where(x > 0, x, x * alpha)


@lowers("elu")
def elu(x, /, *, alpha=1.0, scale=1.0, input_scale=1.0):
    return scale * ops.where(x > 0, x, alpha * ops.expm1(x * input_scale))


@lowers("softplus")
def softplus(x, /, *, beta=1.0, threshold=20.0):
    scaled = x * beta
    soft = ops.log1p(ops.exp(ops.minimum(scaled, threshold))) / beta
    return ops.where(scaled > threshold, x, soft)
