"""ATen elementwise ops: math, activations, arithmetic, comparisons, casts and no-ops."""

from __future__ import annotations

from unigraph.frontends.torch_ops import aten, handles
from unigraph.frontends.builder import Builder, TensorRef
from unigraph.frontends.torch_ops.common import as_tensor, is_floating, promote, result_type


def _to_float(b: Builder, x: TensorRef) -> TensorRef:
    """Integer inputs of float math become float32, as torch computes them."""
    return x if is_floating(x.dtype) else b.emit("cast", x, dtype="float32")


def _unary(op: str, *, floating: bool):
    def handler(b: Builder, x, *_, **__):
        return b.emit(op, _to_float(b, x) if floating else x)

    handler.__name__ = op
    return handler


_FLOAT_UNARY = {
    "exp": (aten.exp, aten.exp_),
    "expm1": (aten.expm1,),
    "log": (aten.log, aten.log_),
    "log1p": (aten.log1p,),
    "log2": (aten.log2,),
    "sqrt": (aten.sqrt, aten.sqrt_),
    "rsqrt": (aten.rsqrt, aten.rsqrt_),
    "reciprocal": (aten.reciprocal, aten.reciprocal_),
    "sin": (aten.sin,),
    "cos": (aten.cos,),
    "tan": (aten.tan,),
    "asin": (aten.asin,),
    "acos": (aten.acos,),
    "atan": (aten.atan,),
    "sinh": (aten.sinh,),
    "cosh": (aten.cosh,),
    "tanh": (aten.tanh, aten.tanh_),
    "erf": (aten.erf,),
    "erfc": (aten.erfc,),
    "erfinv": (aten.erfinv,),
    "sigmoid": (aten.sigmoid, aten.sigmoid_),
    "silu": (aten.silu, aten.silu_),
    "mish": (aten.mish, aten.mish_),
    "selu": (aten.selu, aten.selu_),
    "hard_swish": (aten.hardswish, aten.hardswish_),
    "hard_sigmoid": (aten.hardsigmoid, aten.hardsigmoid_),
}

_SAME_DTYPE_UNARY = {
    "neg": (aten.neg, aten.neg_),
    "abs": (aten.abs, aten.abs_),
    "relu": (aten.relu, aten.relu_),
    "floor": (aten.floor,),
    "ceil": (aten.ceil,),
    "trunc": (aten.trunc,),
    "sign": (aten.sign,),
    "square": (aten.square,),
    "logical_not": (aten.logical_not,),
    "bitwise_not": (aten.bitwise_not,),
    "isnan": (aten.isnan,),
    "isinf": (aten.isinf,),
    "isfinite": (aten.isfinite,),
}

for _op, _targets in _FLOAT_UNARY.items():
    handles(*_targets)(_unary(_op, floating=True))
for _op, _targets in _SAME_DTYPE_UNARY.items():
    handles(*_targets)(_unary(_op, floating=False))


@handles(aten.round.default)
def round_(b: Builder, x):
    return b.emit("round", x)


@handles(aten.gelu, aten.gelu_)
def gelu(b: Builder, x, approximate="none"):
    return b.emit("gelu", _to_float(b, x), approximate=approximate == "tanh")


@handles(aten.leaky_relu, aten.leaky_relu_)
def leaky_relu(b: Builder, x, negative_slope=0.01):
    return b.emit("leaky_relu", x, alpha=float(negative_slope))


@handles(aten.elu, aten.elu_)
def elu(b: Builder, x, alpha=1.0, scale=1.0, input_scale=1.0):
    return b.emit("elu", x, alpha=float(alpha), scale=float(scale), input_scale=float(input_scale))


@handles(aten.softplus)
def softplus(b: Builder, x, beta=1.0, threshold=20.0):
    return b.emit("softplus", x, beta=float(beta), threshold=float(threshold))


@handles(aten.hardtanh, aten.hardtanh_)
def hardtanh(b: Builder, x, min_val=-1.0, max_val=1.0):
    return clamp(b, x, min_val, max_val)


@handles(aten.clamp, aten.clamp_, aten.clip)
def clamp(b: Builder, x, min=None, max=None):
    lo = None if min is None else as_tensor(b, min, result_type(x, min))
    hi = None if max is None else as_tensor(b, max, result_type(x, max))
    dtype = result_type(*(v for v in (x, min, max) if v is not None))
    x = as_tensor(b, x, dtype)
    return b.emit("clip", x, lo and as_tensor(b, lo, dtype), hi and as_tensor(b, hi, dtype))


@handles(aten.clamp_min, aten.clamp_min_)
def clamp_min(b: Builder, x, min):
    return clamp(b, x, min, None)


@handles(aten.clamp_max, aten.clamp_max_)
def clamp_max(b: Builder, x, max):
    return clamp(b, x, None, max)


# ---- binary arithmetic ------------------------------------------------------------------


def _scaled(b: Builder, other, alpha):
    if alpha == 1:
        return other
    if isinstance(other, TensorRef):
        x, a = promote(b, other, alpha)
        return b.emit("mul", x, a)
    return other * alpha


@handles(aten.add.Tensor, aten.add.Scalar, aten.add_.Tensor, aten.add_.Scalar)
def add(b: Builder, x, other, alpha=1):
    x, y = promote(b, x, _scaled(b, other, alpha))
    return b.emit("add", x, y)


@handles(aten.sub.Tensor, aten.sub.Scalar, aten.sub_.Tensor, aten.sub_.Scalar)
def sub(b: Builder, x, other, alpha=1):
    x, y = promote(b, x, _scaled(b, other, alpha))
    return b.emit("sub", x, y)


@handles(aten.rsub.Tensor, aten.rsub.Scalar)
def rsub(b: Builder, x, other, alpha=1):
    o, y = promote(b, other, _scaled(b, x, alpha))
    return b.emit("sub", o, y)


@handles(aten.mul.Tensor, aten.mul.Scalar, aten.mul_.Tensor, aten.mul_.Scalar)
def mul(b: Builder, x, other):
    x, y = promote(b, x, other)
    return b.emit("mul", x, y)


@handles(aten.div.Tensor, aten.div.Scalar, aten.div_.Tensor, aten.div_.Scalar)
def div(b: Builder, x, other):
    dtype = result_type(x, other)
    if not is_floating(dtype):
        dtype = "float32"
    return b.emit("div", as_tensor(b, x, dtype), as_tensor(b, other, dtype))


@handles(aten.div.Tensor_mode, aten.div.Scalar_mode, aten.div_.Tensor_mode)
def div_mode(b: Builder, x, other, *, rounding_mode=None):
    if rounding_mode is None:
        return div(b, x, other)
    x, y = promote(b, x, other)
    return b.emit("floor_divide" if rounding_mode == "floor" else "trunc_divide", x, y)


@handles(aten.floor_divide)
def floor_divide(b: Builder, x, other):
    x, y = promote(b, x, other)
    return b.emit("floor_divide", x, y)


@handles(aten.remainder)
def remainder(b: Builder, x, other):
    x, y = promote(b, x, other)
    return b.emit("remainder", x, y)


@handles(aten.fmod)
def fmod(b: Builder, x, other):
    x, y = promote(b, x, other)
    return b.emit("fmod", x, y)


@handles(aten.pow.Tensor_Scalar, aten.pow.Tensor_Tensor, aten.pow.Scalar, aten.pow_.Scalar)
def pow_(b: Builder, x, exponent):
    if not isinstance(x, TensorRef) and not isinstance(exponent, TensorRef):
        raise TypeError("pow of two scalars")
    if isinstance(exponent, (int, float)) and not isinstance(exponent, bool):
        tensor = x
        if exponent == 1:
            return tensor
        if exponent == 2:
            return b.emit("square", tensor)
        if exponent == 0.5 and is_floating(tensor.dtype):
            return b.emit("sqrt", tensor)
    x, y = promote(b, x, exponent)
    return b.emit("pow", x, y)


@handles(aten.maximum, aten.max.other)
def maximum(b: Builder, x, other):
    x, y = promote(b, x, other)
    return b.emit("maximum", x, y)


@handles(aten.minimum, aten.min.other)
def minimum(b: Builder, x, other):
    x, y = promote(b, x, other)
    return b.emit("minimum", x, y)


@handles(aten.atan2)
def atan2(b: Builder, x, other):
    dtype = result_type(x, other)
    dtype = dtype if is_floating(dtype) else "float32"
    return b.emit("atan2", as_tensor(b, x, dtype), as_tensor(b, other, dtype))


def _compare(op: str):
    def handler(b: Builder, x, other):
        x, y = promote(b, x, other)
        return b.emit(op, x, y)

    handler.__name__ = op
    return handler


for _op, _packet in {
    "equal": aten.eq,
    "not_equal": aten.ne,
    "less": aten.lt,
    "less_equal": aten.le,
    "greater": aten.gt,
    "greater_equal": aten.ge,
}.items():
    handles(_packet)(_compare(_op))


def _logical(op: str):
    def handler(b: Builder, x, other):
        return b.emit(op, *promote(b, x, other))

    handler.__name__ = op
    return handler


handles(aten.logical_and)(_logical("logical_and"))
handles(aten.logical_or)(_logical("logical_or"))
handles(aten.logical_xor)(_logical("logical_xor"))
handles(aten.bitwise_and, aten.__and__)(_logical("bitwise_and"))
handles(aten.bitwise_or, aten.__or__)(_logical("bitwise_or"))
handles(aten.bitwise_xor, aten.__xor__)(_logical("bitwise_xor"))


@handles(aten.where.self, aten.where.ScalarOther, aten.where.ScalarSelf, aten.where.Scalar)
def where(b: Builder, condition, x, other):
    x, y = promote(b, x, other)
    return b.emit("where", condition, x, y)


@handles(aten.masked_fill.Scalar, aten.masked_fill.Tensor, aten.masked_fill_.Scalar, aten.masked_fill_.Tensor)
def masked_fill(b: Builder, x, mask, value):
    return b.emit("where", mask, as_tensor(b, value, x.dtype), x)


# ---- casts and ops that are identities at inference --------------------------------------


@handles(aten._to_copy, aten.to.dtype, aten.to.dtype_layout, aten.to.device, aten.to.prim_Device)
def to(b: Builder, x, *args, dtype=None, **_):
    for a in args:  # the positional dtype of to.dtype / to.device (dtypes arrive as names)
        if isinstance(a, str):
            dtype = a
    return x if dtype is None else as_tensor(b, x, dtype)


@handles(aten.to.other, aten.type_as)
def type_as(b: Builder, x, other, *_, **__):
    return as_tensor(b, x, other.dtype)


@handles(
    aten.clone,
    aten.contiguous,
    aten.alias,
    aten.detach,
    aten.detach_,
    aten.lift_fresh_copy,
    aten.lift_fresh,
)
def identity(b: Builder, x, *_, **__):
    return x


@handles(aten.dropout, aten.dropout_, aten.feature_dropout, aten.alpha_dropout)
def dropout(b: Builder, x, p=0.5, train=False):
    if train and p > 0:
        raise NotImplementedError("dropout in training mode; call model.eval() before converting")
    return x


@handles(
    aten._assert_tensor_metadata,
    aten._assert_async,
    aten._assert_scalar,
    aten.sym_constrain_range_for_size,
    aten.sym_constrain_range,
    aten._functional_sym_constrain_range_for_size,
)
def no_op(b: Builder, *_, **__):
    return None
