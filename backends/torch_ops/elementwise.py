"""torch lowerings: elementwise math, activations, arithmetic, comparisons, casts."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from unigraph.backends.torch_ops import lowers

_UNARY = {
    "neg": torch.neg,
    "abs": torch.abs,
    "exp": torch.exp,
    "expm1": torch.expm1,
    "log": torch.log,
    "log1p": torch.log1p,
    "log2": torch.log2,
    "sqrt": torch.sqrt,
    "rsqrt": torch.rsqrt,
    "reciprocal": torch.reciprocal,
    "square": torch.square,
    "sin": torch.sin,
    "cos": torch.cos,
    "tan": torch.tan,
    "asin": torch.asin,
    "acos": torch.acos,
    "atan": torch.atan,
    "sinh": torch.sinh,
    "cosh": torch.cosh,
    "tanh": torch.tanh,
    "erf": torch.erf,
    "erfc": torch.erfc,
    "erfinv": torch.erfinv,
    "floor": torch.floor,
    "ceil": torch.ceil,
    "round": torch.round,
    "trunc": torch.trunc,
    "sign": torch.sign,
    "sigmoid": torch.sigmoid,
    "relu": torch.relu,
    "silu": F.silu,
    "mish": F.mish,
    "selu": F.selu,
    "hard_swish": F.hardswish,
    "hard_sigmoid": F.hardsigmoid,
    "logical_not": torch.logical_not,
    "bitwise_not": torch.bitwise_not,
    "isnan": torch.isnan,
    "isinf": torch.isinf,
    "isfinite": torch.isfinite,
}

_BINARY = {
    "add": torch.add,
    "sub": torch.sub,
    "mul": torch.mul,
    "div": torch.true_divide,
    "floor_divide": torch.floor_divide,
    "remainder": torch.remainder,
    "fmod": torch.fmod,
    "pow": torch.pow,
    "maximum": torch.maximum,
    "minimum": torch.minimum,
    "atan2": torch.atan2,
    "equal": torch.eq,
    "not_equal": torch.ne,
    "less": torch.lt,
    "less_equal": torch.le,
    "greater": torch.gt,
    "greater_equal": torch.ge,
    "logical_and": torch.logical_and,
    "logical_or": torch.logical_or,
    "logical_xor": torch.logical_xor,
    "bitwise_and": torch.bitwise_and,
    "bitwise_or": torch.bitwise_or,
    "bitwise_xor": torch.bitwise_xor,
}

for _name, _fn in _UNARY.items():
    lowers(_name)(_fn)
for _name, _fn in _BINARY.items():
    lowers(_name)(_fn)


@lowers("trunc_divide")
def trunc_divide(x, y, /):
    return torch.div(x, y, rounding_mode="trunc")


@lowers("where")
def where(condition, x, y, /):
    return torch.where(condition, x, y)


@lowers("clip")
def clip(x, lo=None, hi=None, /):
    return torch.clamp(x, lo, hi)


@lowers("cast")
def cast(x, /, *, dtype):
    return x.to(getattr(torch, dtype))


@lowers("gelu")
def gelu(x, /, *, approximate=False):
    return F.gelu(x, approximate="tanh" if approximate else "none")


@lowers("leaky_relu")
def leaky_relu(x, /, *, alpha=0.01):
    return F.leaky_relu(x, alpha)


@lowers("elu")
def elu(x, /, *, alpha=1.0, scale=1.0, input_scale=1.0):
    return torch.ops.aten.elu(x, alpha, scale, input_scale)


@lowers("softplus")
def softplus(x, /, *, beta=1.0, threshold=20.0):
    return F.softplus(x, beta, threshold)
