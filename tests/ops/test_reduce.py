"""Reductions, softmax, cumulative ops, top-k and sorting, with torch's dtype rules."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.ops.harness import Case, T, params, run_case
from tests.ops.harness import run_node as harness_run_node

X = T((2, 3, 4))
X5 = T((3, 5, 7))
I = T((2, 3, 4), "int64", low=-5, high=6)
I32 = T((2, 3, 4), "int32", low=-5, high=6)
TIES = T((2, 9), "int64", low=0, high=3)  # many equal elements
B = T((2, 3, 4), "bool")
U8 = T((2, 3, 4), "uint8", low=0, high=2)
H = T((2, 3, 16), "float16")
# bfloat16 inputs are made inside the functions: the harness passes inputs through Tensor.numpy()
POS = T((2, 3, 4), low=0.5, high=2.0)
INF = float("inf")

# var_single_element_nan divides by N - 1 = 0 on purpose
pytestmark = pytest.mark.filterwarnings("ignore:.*degrees of freedom is <= 0:UserWarning")


def _with_negative_nan(x):
    """``-x`` with NaN (sign bit set, as x86 computes ``inf - inf``) at index 1 of the last axis."""
    return -x.index_fill(-1, torch.tensor([1]), float("nan"))


def _with_neg_inf(x):
    """``x`` with entries below -0.5 and every row whose maximum is below 1 set to -inf."""
    return x.masked_fill((x < -0.5) | (x.amax(-1, keepdim=True) < 1), -INF)


CASES = [
    # sum: all dims, one, several, negative, keepdim; ints and bools sum to int64
    Case("sum_all", torch.sum, [X], ("reduce_sum",)),
    Case("sum_dim", lambda x: x.sum(1), [X], ("reduce_sum",)),
    Case("sum_dims_keepdim", lambda x: x.sum((0, 2), keepdim=True), [X], ("reduce_sum",)),
    Case("sum_neg_dim", lambda x: x.sum(-1), [X], ("reduce_sum",)),
    Case("sum_batch_dim", lambda x: x.sum(0), [X], ("reduce_sum",)),
    Case("sum_empty_dims_all", lambda x: x.sum(dim=()), [X], ("reduce_sum",)),
    Case("sum_int", lambda x: x.sum(1), [I], ("reduce_sum",)),
    Case("sum_int32_to_int64", torch.sum, [I32], ("reduce_sum",)),
    Case("sum_bool", lambda m: m.sum(-1), [B], ("reduce_sum",)),
    Case("sum_dtype", lambda x: x.sum(1, dtype=torch.float32), [H], ("reduce_sum",), rtol=1e-3, atol=1e-3),
    # float16 sums accumulate in float32 like torch; the last rounding to half may differ by one ulp
    Case("sum_half", lambda x: x.sum(-1), [H], ("reduce_sum",), rtol=1e-3, atol=1e-2),
    # mean
    Case("mean_all", torch.mean, [X], ("reduce_mean",)),
    Case("mean_dim_keepdim", lambda x: x.mean(-1, keepdim=True), [X], ("reduce_mean",)),
    Case("mean_batch_dim", lambda x: x.mean((0, 1)), [X], ("reduce_mean",)),
    Case("mean_dtype", lambda x: x.mean(1, dtype=torch.float32), [H], ("reduce_mean",), rtol=1e-3, atol=1e-3),
    Case("mean_bfloat16", lambda x: x.bfloat16().mean(-1), [X], ("reduce_mean",), rtol=1e-2, atol=1e-2),
    # prod
    Case("prod_all", torch.prod, [POS], ("reduce_prod",)),
    Case("prod_dim_keepdim", lambda x: x.prod(1, keepdim=True), [X], ("reduce_prod",)),
    Case("prod_int", lambda x: x.prod(-1), [I], ("reduce_prod",)),
    Case("prod_bool", lambda m: m.prod(1), [B], ("reduce_prod",)),
    # max / min: amax, full reductions, values + indices
    Case("amax", lambda x: x.amax(1), [X], ("reduce_max",)),
    Case("amin_dims_keepdim", lambda x: x.amin((0, -1), keepdim=True), [X], ("reduce_min",)),
    Case("amax_int", lambda x: x.amax(-1), [I], ("reduce_max",)),
    Case("max_all", torch.max, [X], ("reduce_max",)),
    Case("min_all_int", torch.min, [I], ("reduce_min",)),
    Case("max_dim", lambda x: tuple(x.max(1)), [X], ("reduce_max", "argmax")),
    Case("min_dim_keepdim", lambda x: tuple(x.min(-1, keepdim=True)), [X], ("reduce_min", "argmin")),
    Case("max_dim_int_ties", lambda x: tuple(x.max(1)), [TIES], ("reduce_max", "argmax")),
    Case("max_dim_bool", lambda m: tuple(m.max(1)), [B], ("reduce_max", "argmax")),
    Case("max_nan", lambda x: tuple(torch.log(x).max(-1)), [X], ("reduce_max", "argmax")),
    # argmax / argmin: None flattens
    Case("argmax_flat", torch.argmax, [X], ("argmax",)),
    Case("argmax_flat_keepdim", lambda x: x.argmax(keepdim=True), [X], ("argmax",)),
    Case("argmax_dim", lambda x: x.argmax(1), [X], ("argmax",)),
    Case("argmin_neg_keepdim", lambda x: x.argmin(-1, keepdim=True), [X], ("argmin",)),
    Case("argmin_int_ties", lambda x: x.argmin(1), [TIES], ("argmin",)),
    # any / all: default, dim, dims; [] reduces nothing; uint8 stays uint8
    Case("any_all_default", lambda m: (m.any(), m.all()), [B], ("reduce_any", "reduce_all")),
    Case("any_dim", lambda m: m.any(1), [B], ("reduce_any",)),
    Case("all_dims_keepdim", lambda m: m.all((0, 2), keepdim=True), [B], ("reduce_all",)),
    Case("any_empty_dims", lambda m: m.any(dim=()), [B], ("reduce_any",)),
    Case("any_float", lambda x: (x > 1).float().any(-1), [X], ("reduce_any",)),
    Case("all_int", lambda x: x.all(1), [I], ("reduce_all",)),
    Case("any_uint8", lambda x: (x.any(), x.all(-1)), [U8], ("reduce_any", "reduce_all", "cast")),
    # variance and standard deviation: correction / unbiased spellings
    Case("var_default", torch.var, [X], ("variance",)),
    Case("var_dim", lambda x: x.var(1), [X], ("variance",)),
    Case("var_biased_keepdim", lambda x: x.var(-1, unbiased=False, keepdim=True), [X], ("variance",)),
    Case("var_correction", lambda x: torch.var(x, (0, 2), correction=2), [X5], ("variance",)),
    Case("var_single_element_nan", lambda x: x.var(-1), [T((2, 3, 1))], ("variance",)),
    Case("std_dim", lambda x: x.std(1), [X], ("variance", "sqrt")),
    Case("std_correction0", lambda x: x.std(-1, correction=0), [X], ("variance", "sqrt")),
    Case("var_mean", lambda x: torch.var_mean(x, 1), [X], ("variance", "reduce_mean")),
    Case("std_mean", lambda x: torch.std_mean(x, dim=(0, 2), correction=0, keepdim=True), [X], ("variance", "reduce_mean")),
    Case("var_half", lambda x: x.var(-1), [H], ("variance",), rtol=1e-3, atol=1e-3),
    # logsumexp
    Case("logsumexp", lambda x: torch.logsumexp(x * 30, 1), [X], ("logsumexp",), rtol=1e-5, atol=1e-5),
    Case("logsumexp_dims_keepdim", lambda x: torch.logsumexp(x, (0, 2), keepdim=True), [X], ("logsumexp",)),
    Case("logsumexp_neg_inf", lambda x: torch.logsumexp(_with_neg_inf(x), -1), [X], ("logsumexp",)),
    Case("logsumexp_int", lambda x: torch.logsumexp(x, -1), [I], ("logsumexp", "cast")),
    # vector norms
    Case("norm_2", lambda x: torch.linalg.vector_norm(x, dim=-1), [X], ("vector_norm",)),
    Case("norm_2_all", torch.linalg.vector_norm, [X], ("vector_norm",)),
    Case("norm_1", lambda x: x.norm(p=1, dim=1), [X], ("vector_norm",)),
    Case("norm_inf", lambda x: torch.linalg.vector_norm(x, INF, dim=(1, 2)), [X], ("vector_norm",)),
    Case("norm_neg_inf", lambda x: torch.linalg.vector_norm(x, -INF, dim=1), [X], ("vector_norm",)),
    Case("norm_0", lambda x: torch.linalg.vector_norm(torch.relu(x), 0, dim=-1), [X], ("vector_norm",)),
    Case("norm_3_keepdim", lambda x: torch.linalg.vector_norm(x, 3, dim=-1, keepdim=True), [X], ("vector_norm",)),
    Case("norm_half_p", lambda x: torch.norm(x, p=0.5, dim=-1), [X], ("vector_norm",), rtol=1e-4),
    Case("norm_dtype", lambda x: torch.linalg.vector_norm(x, dim=-1, dtype=torch.float32), [H], ("vector_norm",), rtol=1e-3, atol=1e-3),
    # softmax and log_softmax: any dim, float16/bfloat16 computed in float32, -inf rows NaN as torch
    Case("softmax", lambda x: x.softmax(1), [X], ("softmax",)),
    Case("softmax_last", lambda x: F.softmax(x * 10, dim=-1), [X], ("softmax",)),
    Case("softmax_batch_dim", lambda x: F.softmax(x, dim=0), [X], ("softmax",)),
    Case("softmax_module", torch.nn.Softmax(dim=-1), [X], ("softmax",)),
    Case("softmax_half", lambda x: x.softmax(-1), [H], ("softmax",), rtol=1e-3, atol=1e-3),
    Case("softmax_bfloat16", lambda x: x.bfloat16().softmax(-1), [X], ("softmax",), rtol=1e-2, atol=1e-2),
    Case("softmax_dtype", lambda x: x.softmax(-1, dtype=torch.float32), [H], ("softmax", "cast"), rtol=1e-3, atol=1e-4),
    Case("softmax_int_dtype", lambda x: F.softmax(x, 1, dtype=torch.float32), [I], ("softmax", "cast")),
    Case("softmax_neg_inf", lambda x: _with_neg_inf(x).softmax(-1), [X], ("softmax",)),
    Case("softmax_aten", lambda x: torch.ops.aten._softmax(x, 1, False), [X], ("softmax",)),
    Case("log_softmax", lambda x: F.log_softmax(x, -1), [X], ("log_softmax",)),
    Case("log_softmax_aten", lambda x: torch.ops.aten._log_softmax(x, -1, False), [X], ("log_softmax",)),
    Case("log_softmax_dim0", lambda x: F.log_softmax(x, 0), [X], ("log_softmax",)),
    Case("log_softmax_half", lambda x: F.log_softmax(x, 1), [H], ("log_softmax",), rtol=1e-3, atol=1e-3),
    Case("log_softmax_dtype", lambda x: F.log_softmax(x.bfloat16(), -1, dtype=torch.float32), [X], ("log_softmax",), rtol=1e-2, atol=1e-2),
    # cumulative ops
    Case("cumsum", lambda x: x.cumsum(1), [X], ("cumsum",)),
    Case("cumsum_batch_dim", lambda x: x.cumsum(0), [X], ("cumsum",)),
    Case("cumsum_int", lambda x: x.cumsum(-1), [I32], ("cumsum",)),
    Case("cumsum_bool", lambda m: m.cumsum(-1), [B], ("cumsum",)),
    Case("cumsum_dtype", lambda x: x.cumsum(-1, dtype=torch.float32), [H], ("cumsum",), rtol=1e-3, atol=1e-3),
    Case("cumsum_half", lambda x: x.cumsum(-1), [H], ("cumsum",), rtol=1e-3, atol=1e-2),
    Case("cumsum_inplace", lambda x: x.clone().cumsum_(1), [X], ("cumsum",)),
    Case("cumprod", lambda x: x.cumprod(-1), [POS], ("cumprod",)),
    Case("cumprod_int", lambda x: x.cumprod(1), [I], ("cumprod",)),
    Case("cummax", lambda x: tuple(torch.cummax(x, 1)), [X], ("cummax",)),
    Case("cummax_ties", lambda x: tuple(torch.cummax(x, -1)), [TIES], ("cummax",)),
    Case("cummin_ties", lambda x: tuple(torch.cummin(x, 1)), [TIES], ("cummin",)),
    Case("cummax_nan", lambda x: tuple(torch.cummax(torch.log(x), -1)), [X], ("cummax",)),
    # top-k: largest / smallest, any dim, ints
    Case("topk", lambda x: tuple(x.topk(3)), [X5], ("top_k",)),
    Case("topk_dim", lambda x: tuple(x.topk(2, dim=1)), [X5], ("top_k",)),
    Case("topk_smallest", lambda x: tuple(x.topk(2, dim=-1, largest=False)), [X5], ("top_k",)),
    Case("topk_negative_nan", lambda x: tuple(_with_negative_nan(x).topk(3)), [X5], ("top_k",)),
    Case("topk_smallest_negative_nan", lambda x: tuple(_with_negative_nan(x).topk(7, largest=False)), [X5], ("top_k",)),
    Case("topk_smallest_int", lambda x: tuple(torch.topk(x, 4, largest=False)), [T((3, 9), "int64", low=-50, high=50)], ("top_k",)),
    Case("topk_unsorted", lambda x: x.topk(3, sorted=False).values.sort(-1).values, [X5], ("top_k", "sort")),
    # sort / argsort / msort: stable, descending, NaN
    Case("sort", lambda x: tuple(x.sort()), [X5], ("sort",)),
    Case("sort_dim_descending", lambda x: tuple(x.sort(dim=1, descending=True)), [X5], ("sort",)),
    Case("sort_stable_ties", lambda x: tuple(x.sort(stable=True)), [TIES], ("sort",)),
    Case("sort_stable_descending_ties", lambda x: tuple(x.sort(dim=-1, descending=True, stable=True)), [TIES], ("sort",)),
    Case("sort_nan", lambda x: tuple(torch.log(x).sort(descending=True)), [X5], ("sort",)),
    Case("sort_bool", lambda m: m.sort(dim=-1, stable=True).indices, [B], ("sort",)),
    Case("argsort", lambda x: x.argsort(1), [X5], ("sort",)),
    Case("argsort_stable_descending", lambda x: x.argsort(dim=-1, descending=True, stable=True), [TIES], ("sort",)),
    Case("msort", torch.msort, [X5], ("sort",)),
    # count_nonzero
    Case("count_nonzero", torch.count_nonzero, [I], ("reduce_sum", "not_equal")),
    Case("count_nonzero_dims", lambda x: torch.count_nonzero(torch.relu(x), (0, 2)), [X], ("reduce_sum",)),
]


@pytest.mark.parametrize("case", params(CASES))
def test_op(case):
    run_case(case)


# ---- graphs built directly: attributes the torch frontend never writes ------------------------


def run_node(op, inputs, **options):
    """One ``op`` node on static-shaped inputs: the torch backend's module against the JAX op."""
    harness_run_node(op, inputs, dynamic=False, **options)
_rng = np.random.default_rng(0)
XF = _rng.standard_normal((2, 3, 4)).astype(np.float32)
XF_NEG_INF = np.where(XF < -0.5, -np.inf, XF).astype(np.float32)
XH = XF.astype(np.float16)
XI = _rng.integers(-5, 6, (2, 3, 4)).astype(np.int32)
XB = XF > 0
TIES_F = np.array([[1.0, np.nan, 3.0, -np.inf, 2.0, np.nan, 3.0, 1.0]], np.float32).T  # sorted along axis 0
TIES_I = _rng.integers(0, 3, (9, 2)).astype(np.int32)
# -0.0 ties with 0.0, and a NaN with the sign bit set is as large as any NaN (torch's order, not IEEE's total order)
SIGNED = np.array([[0.0, -0.0, np.nan, 1.0, -0.0, np.nan, 0.0, -1.0]], np.float32).T
SIGNED[2] = -SIGNED[2]

DIRECT = {
    # axes=(): torch's dim=() would reduce every dim; the op reduces none
    "sum_no_axes_int64": ("reduce_sum", XI, dict(axes=(), dtype="int64")),
    "sum_no_axes_keepdims": ("reduce_sum", XF, dict(axes=(), keepdims=True)),
    "mean_no_axes_dtype": ("reduce_mean", XH, dict(axes=(), dtype="float32")),
    "prod_no_axes": ("reduce_prod", XI, dict(axes=())),
    "max_no_axes": ("reduce_max", XF, dict(axes=())),
    "min_no_axes_keepdims": ("reduce_min", XI, dict(axes=(), keepdims=True)),
    "all_no_axes_float": ("reduce_all", XF, dict(axes=())),
    "var_no_axes": ("variance", XF, dict(axes=())),  # 0 / 0: NaN, as jnp.var
    "var_no_axes_biased": ("variance", XF, dict(axes=(), correction=0.0)),
    "logsumexp_no_axes": ("logsumexp", XF_NEG_INF, dict(axes=())),
    "norm_no_axes": ("vector_norm", XF, dict(axes=())),
    "norm_0_no_axes": ("vector_norm", XF, dict(axes=(), ord=0.0)),
    # dtype None keeps an integer dtype (torch would widen to int64); integer means truncate
    "sum_int32_stays": ("reduce_sum", XI, dict(axes=(1,))),
    "cumsum_int32_stays": ("cumsum", XI, dict(axis=2)),
    "cumprod_int32_stays": ("cumprod", XI, dict(axis=0)),
    "mean_int32": ("reduce_mean", XI, dict(axes=(0, 2), keepdims=True)),
    "mean_int_to_int64": ("reduce_mean", XI, dict(axes=(1,), dtype="int64")),
    "mean_int_to_float": ("reduce_mean", XI, dict(axes=(1, 2), dtype="float32")),
    # products over several axes, bool sums as the op's dtype says
    "prod_axes_keepdims_float64": ("reduce_prod", XF, dict(axes=(0, 2), keepdims=True, dtype="float64")),
    "sum_bool_as_bool": ("reduce_sum", XB, dict(axes=(2,), dtype="bool")),
    "prod_bool_as_bool": ("reduce_prod", XB, dict(axes=(0, 1), dtype="bool")),
    "argmax_bool_flat_keepdims": ("argmax", XB, dict(axis=None, keepdims=True)),
    "argmin_bool": ("argmin", XB, dict(axis=1)),
    # ties and NaN along a leading axis
    "top_k_ties_nan_axis0": ("top_k", TIES_F, dict(k=5, axis=0)),
    "top_k_signed_zeros_and_nans_axis0": ("top_k", SIGNED, dict(k=6, axis=0)),
    "top_k_smallest_signed_zeros_and_nans_axis0": ("top_k", SIGNED, dict(k=8, axis=0, largest=False)),
    "top_k_smallest_int_ties_axis0": ("top_k", TIES_I, dict(k=4, axis=0, largest=False)),
    "sort_descending_ties_nan_axis0": ("sort", TIES_F, dict(axis=0, descending=True)),
    "sort_int_ties_axis0": ("sort", TIES_I, dict(axis=0)),
    "cummin_nan": ("cummin", TIES_F, dict(axis=0)),
}


@pytest.mark.parametrize("name", DIRECT)
@pytest.mark.filterwarnings("ignore:.*degrees of freedom is <= 0")
def test_attributes_the_torch_frontend_never_writes(name):
    op, x, attrs = DIRECT[name]
    run_node(op, [x], **attrs)
