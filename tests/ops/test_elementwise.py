"""Elementwise ops: unary math, activations, arithmetic with torch's type promotion, casts."""

import pytest
import torch
import torch.nn.functional as F

from tests.ops.harness import Case, T, params, run_case

X = T((2, 3, 4))
POS = T((2, 3, 4), low=0.1, high=3.0)
UNIT = T((2, 3, 4), low=-0.9, high=0.9)
I = T((2, 3, 4), "int64", low=-5, high=6)
NZ = T((2, 3, 4), "int64", low=1, high=6)
B = T((2, 3, 4), "bool")

CASES = [
    # unary math (floats, and ints promoted to float like torch)
    Case("neg", torch.neg, [X], ("neg",)),
    Case("neg_int", torch.neg, [I], ("neg",)),
    Case("abs", torch.abs, [X], ("abs",)),
    Case("exp", torch.exp, [X], ("exp",)),
    Case("exp_int", torch.exp, [T((2, 3), "int64", low=-3, high=3)], ("exp", "cast")),
    Case("expm1", torch.expm1, [X], ("expm1",)),
    Case("log", torch.log, [POS], ("log",)),
    Case("log1p", torch.log1p, [POS], ("log1p",)),
    Case("log2", torch.log2, [POS], ("log2",)),
    Case("sqrt", torch.sqrt, [POS], ("sqrt",)),
    Case("rsqrt", torch.rsqrt, [POS], ("rsqrt",), rtol=1e-5),
    Case("reciprocal", torch.reciprocal, [POS], ("reciprocal",)),
    Case("square", torch.square, [X], ("square",)),
    Case("sin", torch.sin, [X], ("sin",)),
    Case("cos", torch.cos, [X], ("cos",)),
    Case("tan", torch.tan, [UNIT], ("tan",)),
    Case("asin", torch.asin, [UNIT], ("asin",)),
    Case("acos", torch.acos, [UNIT], ("acos",)),
    Case("atan", torch.atan, [X], ("atan",)),
    Case("sinh", torch.sinh, [X], ("sinh",)),
    Case("cosh", torch.cosh, [X], ("cosh",)),
    Case("tanh", torch.tanh, [X], ("tanh",)),
    Case("erf", torch.erf, [X], ("erf",)),
    Case("erfc", torch.erfc, [T((2, 8), low=-2, high=6)], ("erfc",)),  # the right tail keeps its precision
    Case("erfinv", torch.erfinv, [UNIT], ("erfinv",), rtol=1e-4, atol=1e-5),
    Case("floor", torch.floor, [X], ("floor",)),
    Case("ceil", torch.ceil, [X], ("ceil",)),
    Case("round", torch.round, [T((2, 8), low=-4, high=4)], ("round",)),
    Case("round_half_even", lambda x: torch.round(x + 0.5), [T((2, 6), "int64", low=-4, high=4)], ("round",)),
    Case("trunc", torch.trunc, [X], ("trunc",)),
    Case("sign", torch.sign, [X], ("sign",)),
    Case("isnan", lambda x: torch.isnan(torch.log(x)), [X], ("isnan",)),
    Case("isinf", lambda x: torch.isinf(1 / (x > 0).float() - 1), [X], ("isinf",)),
    Case("isfinite", lambda x: torch.isfinite(torch.log(x)), [X], ("isfinite",)),
    Case("logical_not", torch.logical_not, [B], ("logical_not",)),
    Case("bitwise_not", torch.bitwise_not, [I], ("bitwise_not",)),
    Case("bitwise_not_bool", lambda m: ~m, [B], ("bitwise_not",)),
    # activations: the functional, module and plain-function spellings all convert
    Case("relu", torch.relu, [X], ("relu",)),
    Case("relu_functional", F.relu, [X], ("relu",)),
    Case("relu_module", torch.nn.ReLU(), [X], ("relu",)),
    Case("relu_inplace", torch.nn.ReLU(inplace=True), [X], ("relu",)),
    Case("relu6", F.relu6, [T((2, 8), low=-8, high=8)], ("clip",)),
    Case("sigmoid", torch.sigmoid, [X], ("sigmoid",)),
    Case("silu", F.silu, [X], ("silu",)),
    Case("mish", F.mish, [X], ("mish",), rtol=1e-5, atol=1e-6),
    Case("selu", F.selu, [X], ("selu",)),
    Case("hardswish", F.hardswish, [T((2, 8), low=-5, high=5)], ("hard_swish",)),
    Case("hardsigmoid", F.hardsigmoid, [T((2, 8), low=-5, high=5)], ("hard_sigmoid",)),
    Case("hardtanh", lambda x: F.hardtanh(x, -0.5, 0.5), [X], ("clip",)),
    Case("gelu", F.gelu, [X], ("gelu",)),
    Case("gelu_tanh", lambda x: F.gelu(x, approximate="tanh"), [X], ("gelu",)),
    Case("leaky_relu", lambda x: F.leaky_relu(x, 0.2), [X], ("leaky_relu",)),
    Case("elu", lambda x: F.elu(x, 0.7), [X], ("elu",)),
    Case("celu_decomposed", lambda x: F.celu(x, 1.3), [X], ("expm1", "where")),
    Case("softplus", lambda x: F.softplus(x * 10, beta=2.0, threshold=5.0), [X], ("softplus",), rtol=1e-5),
    # clamp in all spellings
    Case("clamp", lambda x: torch.clamp(x, -0.5, 0.7), [X], ("clip",)),
    Case("clamp_min", lambda x: torch.clamp(x, min=0.1), [X], ("clip",)),
    Case("clamp_max", lambda x: x.clamp_max(0.1), [X], ("clip",)),
    Case("clamp_tensor", lambda x, lo: torch.clamp(x, lo, lo + 1), [X, T((3, 4))], ("clip",), dynamic=False),
    Case("clamp_int", lambda x: torch.clamp(x, -2, 3), [I], ("clip",)),
    # binary arithmetic with torch's promotion: scalars are weak, 0-d tensors too
    Case("add", torch.add, [X, X], ("add",)),
    Case("add_broadcast", torch.add, [X, T((4,))], ("add",), dynamic=False),
    # an operand that looks like a bias to Keras's TensorFlow add, which then broadcasts it wrongly
    Case("add_outer_broadcast", torch.add, [T((1, 3)), T((3, 1))], ("add",), dynamic=False),
    Case("add_alpha", lambda x, y: torch.add(x, y, alpha=2.5), [X, X], ("add", "mul")),
    Case("add_scalar", lambda x: x + 2, [X], ("add",)),
    Case("add_int_float_scalar", lambda x: x + 0.5, [I], ("add",)),
    Case("add_int_int", torch.add, [I, I], ("add",)),
    Case("add_half_0d_float", lambda x, s: x.half() + s, [X, T(())], ("add",), rtol=1e-3, atol=1e-3, dynamic=False),
    Case("sub", torch.sub, [X, X], ("sub",)),
    Case("rsub", lambda x: 1 - x, [X], ("sub",)),
    Case("rsub_alpha", lambda x, y: torch.rsub(x, y, alpha=3), [X, X], ("sub",)),
    Case("mul", torch.mul, [X, X], ("mul",)),
    Case("mul_bert_scale", lambda x: x * 32**-0.25, [T((2, 16, 16))], ("mul",)),
    Case("mul_bool", torch.mul, [B, B], ("mul",)),
    Case("div", torch.div, [X, POS], ("div",)),
    Case("div_int_int", torch.div, [I, NZ], ("div", "cast")),
    Case("div_scalar_square_matrix", lambda x: x / 8.0, [T((2, 16, 16))], ("div",)),
    Case("div_floor", lambda x, y: torch.div(x, y, rounding_mode="floor"), [X, POS], ("floor_divide",)),
    Case("div_floor_int", lambda x, y: torch.div(x, y, rounding_mode="floor"), [I, NZ], ("floor_divide",)),
    Case("div_trunc", lambda x, y: torch.div(x, y, rounding_mode="trunc"), [X, POS], ("trunc_divide",)),
    Case("div_trunc_int", lambda x, y: torch.div(x, y, rounding_mode="trunc"), [I, NZ], ("trunc_divide",)),
    Case("floor_divide", lambda x: x // 3, [I], ("floor_divide",)),
    Case("remainder", torch.remainder, [X, POS], ("remainder",), atol=1e-5),
    Case("remainder_int", lambda x: x % 4, [I], ("remainder",)),
    Case("fmod", torch.fmod, [X, POS], ("fmod",), atol=1e-5),
    Case("fmod_scalar_int", lambda x: torch.fmod(x, 3), [I], ("fmod",)),
    Case("pow_scalar", lambda x: torch.pow(x, 3), [X], ("pow",), rtol=1e-5),
    Case("pow_square", lambda x: x**2, [X], ("square",)),
    Case("pow_half", lambda x: x**0.5, [POS], ("sqrt",)),
    Case("pow_tensor", torch.pow, [POS, X], ("pow",), rtol=1e-5),
    Case("pow_scalar_base", lambda x: 2.0**x, [X], ("pow",), rtol=1e-5),
    Case("pow_int", lambda x: x**2 + x**3, [I], ("square", "pow")),
    Case("maximum", torch.maximum, [X, X], ("maximum",)),
    Case("minimum", torch.minimum, [X, X], ("minimum",)),
    Case("max_other", torch.max, [X, X], ("maximum",)),
    Case("min_other", torch.min, [X, X], ("minimum",)),
    Case("atan2", torch.atan2, [X, X], ("atan2",), atol=1e-6),
    # comparisons and logic
    Case("eq", torch.eq, [I, I], ("equal",)),
    Case("eq_scalar", lambda x: x == 2, [I], ("equal",)),
    Case("ne", lambda x: x != 0.0, [X], ("not_equal",)),
    Case("lt", torch.lt, [X, X], ("less",)),
    Case("le", lambda x: x <= 0.5, [X], ("less_equal",)),
    Case("gt", lambda x, y: x > y, [X, X], ("greater",)),
    Case("ge_int_float", lambda x: x >= 0.5, [I], ("greater_equal",)),
    Case("logical_and", torch.logical_and, [B, B], ("logical_and",)),
    Case("logical_or", torch.logical_or, [B, B], ("logical_or",)),
    Case("logical_xor", torch.logical_xor, [B, B], ("logical_xor",)),
    Case("bitwise_and", lambda a, b: a & b, [B, B], ("bitwise_and",)),
    Case("bitwise_or_int", lambda a, b: a | b, [I, I], ("bitwise_or",)),
    Case("bitwise_xor", lambda a, b: a ^ b, [B, B], ("bitwise_xor",)),
    Case("where", torch.where, [B, X, X], ("where",)),
    Case("where_scalar", lambda m, x: torch.where(m, x, 0.0), [B, X], ("where",)),
    Case("masked_fill", lambda x, m: x.masked_fill(m, -1e9), [X, B], ("where",)),
    # casts, no-ops
    Case("cast_float_int", lambda x: (x * 3).to(torch.int32), [X], ("cast",)),
    Case("cast_int_float", lambda x: x.float(), [I], ("cast",)),
    Case("cast_bool", lambda x: x.bool(), [I], ("cast",)),
    Case("cast_bfloat16", lambda x: x.to(torch.bfloat16).float(), [X], ("cast",)),
    Case("cast_half", lambda x: x.half() * 2, [X], ("cast", "mul"), rtol=1e-3, atol=1e-3),
    Case("type_as", lambda x, y: x.type_as(y), [I, X], ("cast",)),
    Case("clone_detach_contiguous", lambda x: x.clone().detach().contiguous() + 1, [X], ("add",)),
    Case("dropout_eval", torch.nn.Dropout(0.5), [X], ()),
]


@pytest.mark.parametrize("case", params(CASES))
def test_op(case):
    run_case(case)
