"""Elementwise ops: unary math, activations, binary arithmetic, comparisons, casts.

Binary ops broadcast NumPy-style and promote dtypes the JAX way; a frontend
whose framework promotes differently inserts ``cast`` nodes (a torch integer
division, say) so that every value's dtype is stated in the graph.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from unigraph.dtypes import jax_dtype
from unigraph.ops.registry import DType, op


def _unary(fn, doc: str):
    def lowering(x, /):
        return fn(x)

    lowering.__doc__ = doc
    return lowering


def _binary(fn, doc: str):
    def lowering(x, y, /):
        return fn(x, y)

    lowering.__doc__ = doc
    return lowering


_UNARY = {
    "neg": jnp.negative,
    "abs": jnp.abs,
    "exp": jnp.exp,
    "expm1": jnp.expm1,
    "log": jnp.log,
    "log1p": jnp.log1p,
    "log2": jnp.log2,
    "sqrt": jnp.sqrt,
    "rsqrt": lax.rsqrt,
    "reciprocal": jnp.reciprocal,
    "square": jnp.square,
    "sin": jnp.sin,
    "cos": jnp.cos,
    "tan": jnp.tan,
    "asin": jnp.arcsin,
    "acos": jnp.arccos,
    "atan": jnp.arctan,
    "sinh": jnp.sinh,
    "cosh": jnp.cosh,
    "tanh": jnp.tanh,
    "erf": jax.scipy.special.erf,
    "erfc": jax.scipy.special.erfc,
    "erfinv": jax.scipy.special.erfinv,
    "floor": jnp.floor,
    "ceil": jnp.ceil,
    "round": jnp.round,
    "trunc": jnp.trunc,
    "sign": jnp.sign,
    "sigmoid": jax.nn.sigmoid,
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
    "mish": lambda x: x * jnp.tanh(jax.nn.softplus(x)),
    "selu": jax.nn.selu,
    "hard_swish": jax.nn.hard_swish,
    "hard_sigmoid": jax.nn.hard_sigmoid,
    "logical_not": jnp.logical_not,
    "bitwise_not": jnp.invert,
    "isnan": jnp.isnan,
    "isinf": jnp.isinf,
    "isfinite": jnp.isfinite,
}

_BINARY = {
    "add": jnp.add,
    "sub": jnp.subtract,
    "mul": jnp.multiply,
    "div": jnp.true_divide,
    "floor_divide": jnp.floor_divide,
    "remainder": jnp.remainder,
    "fmod": jnp.fmod,
    "pow": jnp.power,
    "maximum": jnp.maximum,
    "minimum": jnp.minimum,
    "atan2": jnp.arctan2,
    "equal": jnp.equal,
    "not_equal": jnp.not_equal,
    "less": jnp.less,
    "less_equal": jnp.less_equal,
    "greater": jnp.greater,
    "greater_equal": jnp.greater_equal,
    "logical_and": jnp.logical_and,
    "logical_or": jnp.logical_or,
    "logical_xor": jnp.logical_xor,
    "bitwise_and": jnp.bitwise_and,
    "bitwise_or": jnp.bitwise_or,
    "bitwise_xor": jnp.bitwise_xor,
}

for _name, _fn in _UNARY.items():
    op(_name)(_unary(_fn, f"Elementwise {_name}(x)."))
for _name, _fn in _BINARY.items():
    op(_name)(_binary(_fn, f"Elementwise {_name}(x, y), broadcasting."))


@op("trunc_divide")
def trunc_divide(x, y, /):
    """x / y rounded toward zero (torch ``div(rounding_mode='trunc')``)."""
    if jnp.issubdtype(jnp.result_type(x, y), jnp.integer):
        return lax.div(*jnp.broadcast_arrays(*_promote(x, y)))
    return jnp.trunc(jnp.true_divide(x, y))


def _promote(x, y):
    dtype = jnp.result_type(x, y)
    return jnp.asarray(x, dtype), jnp.asarray(y, dtype)


@op("where")
def where(condition, x, y, /):
    """Elementwise ``x`` where ``condition`` else ``y``, broadcasting."""
    return jnp.where(condition, x, y)


@op("clip")
def clip(x, lo=None, hi=None, /):
    """``x`` limited to [lo, hi]; either bound may be absent (torch ``clamp``)."""
    if lo is not None:
        x = jnp.maximum(x, lo.astype(x.dtype))
    if hi is not None:
        x = jnp.minimum(x, hi.astype(x.dtype))
    return x


@op("cast")
def cast(x, /, *, dtype: DType):
    """``x`` converted to ``dtype`` (floats to ints truncate toward zero)."""
    return x.astype(jax_dtype(dtype))


@op("gelu")
def gelu(x, /, *, approximate: bool = False):
    """GELU; ``approximate=True`` is the tanh form."""
    return jax.nn.gelu(x, approximate=approximate)


@op("leaky_relu")
def leaky_relu(x, /, *, alpha: float = 0.01):
    """``x`` where x > 0 else ``alpha * x``."""
    return jnp.where(x > 0, x, x * jnp.asarray(alpha, x.dtype))


@op("elu")
def elu(x, /, *, alpha: float = 1.0, scale: float = 1.0, input_scale: float = 1.0):
    """``scale * (x if x > 0 else alpha * (exp(input_scale * x) - 1))``."""
    negative = alpha * jnp.expm1(x * input_scale)
    return (scale * jnp.where(x > 0, x, negative)).astype(x.dtype)


@op("softplus")
def softplus(x, /, *, beta: float = 1.0, threshold: float = 20.0):
    """``log(1 + exp(beta*x)) / beta``, linear where ``beta*x > threshold``."""
    scaled = x * beta
    soft = jnp.log1p(jnp.exp(jnp.minimum(scaled, threshold))) / beta
    return jnp.where(scaled > threshold, x, soft).astype(x.dtype)
