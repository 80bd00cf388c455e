"""torch lowerings: reductions, softmax, cumulative ops, top-k and sorting.

``axes`` are sorted, non-negative and possibly empty (reducing nothing),
whereas torch's ``dim=()`` means every dim for most reductions: each lowering
spells the empty case out. A ``dtype`` attribute is the dtype the op
accumulates in and returns (``x``'s when None; torch would widen integers to
int64 by itself, so it is always passed). torch's kernels already compute
float16/bfloat16 softmax, logsumexp, norms, variances and cumulative sums in
float32, as the JAX lowerings do. Index outputs are int64.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from unigraph.backends.torch_ops import lowers

# ---- reductions --------------------------------------------------------------------------


@lowers("reduce_sum")
def reduce_sum(x, /, *, axes, keepdims=False, dtype=None):
    return (
        torch.sum(x, axes, keepdims, dtype=getattr(torch, dtype) if dtype else x.dtype)
        if axes
        else x.to(getattr(torch, dtype) if dtype else x.dtype)
    )


@lowers("reduce_mean")
def reduce_mean(x, /, *, axes, keepdims=False, dtype=None):
    dtype = getattr(torch, dtype) if dtype else x.dtype
    if not axes:
        return x.to(dtype)
    if dtype.is_floating_point or dtype.is_complex:
        return torch.mean(x, axes, keepdims, dtype=dtype)
    # An integer mean, as jnp.mean with an integer dtype: the sum divided, truncating.
    count = math.prod(x.shape[axis] for axis in axes)
    return torch.div(torch.sum(x, axes, keepdims, dtype=dtype), count, rounding_mode="trunc")


@lowers("reduce_prod")
def reduce_prod(x, /, *, axes, keepdims=False, dtype=None):
    dtype = getattr(torch, dtype) if dtype else x.dtype
    for axis in reversed(axes):  # torch.prod takes one dim; the last first keeps the others' numbers
        x = torch.prod(x, axis, keepdims, dtype=dtype)
    return x.to(dtype)


@lowers("reduce_max")
def reduce_max(x, /, *, axes, keepdims=False):
    return torch.amax(x, axes, keepdims) if axes else x


@lowers("reduce_min")
def reduce_min(x, /, *, axes, keepdims=False):
    return torch.amin(x, axes, keepdims) if axes else x


@lowers("reduce_any")
def reduce_any(x, /, *, axes, keepdims=False):
    return torch.any(x, axes, keepdims).bool() if axes else x.bool()


@lowers("reduce_all")
def reduce_all(x, /, *, axes, keepdims=False):
    return torch.all(x, axes, keepdims).bool() if axes else x.bool()


@lowers("argmax")
def argmax(x, /, *, axis, keepdims=False):
    return torch.argmax(_ordered(x), axis, keepdims)


@lowers("argmin")
def argmin(x, /, *, axis, keepdims=False):
    return torch.argmin(_ordered(x), axis, keepdims)


def _ordered(x):
    """``x`` in a dtype torch's argmax/argmin take: bool as uint8."""
    return x.to(torch.uint8) if x.dtype == torch.bool else x


@lowers("variance")
def variance(x, /, *, axes, correction=1.0, keepdims=False):
    return (
        torch.var(x, axes, correction=correction, keepdim=keepdims)
        if axes
        else torch.var(x.unsqueeze(0), 0, correction=correction)
    )


@lowers("logsumexp")
def logsumexp(x, /, *, axes, keepdims=False):
    return torch.logsumexp(x, axes, keepdims) if axes else x


@lowers("vector_norm")
def vector_norm(x, /, *, ord=2.0, axes, keepdims=False):
    return (
        torch.linalg.vector_norm(x, ord, axes, keepdims)
        if axes
        else torch.linalg.vector_norm(x.unsqueeze(0), ord, 0)
    )


# ---- softmax -----------------------------------------------------------------------------


@lowers("softmax")
def softmax(x, /, *, axis):
    return F.softmax(x, axis)


@lowers("log_softmax")
def log_softmax(x, /, *, axis):
    return F.log_softmax(x, axis)


# ---- cumulative ops ----------------------------------------------------------------------


@lowers("cumsum")
def cumsum(x, /, *, axis, dtype=None):
    return torch.cumsum(x, axis, dtype=getattr(torch, dtype) if dtype else x.dtype)


@lowers("cumprod")
def cumprod(x, /, *, axis, dtype=None):
    return torch.cumprod(x, axis, dtype=getattr(torch, dtype) if dtype else x.dtype)


@lowers("cummax")
def cummax(x, /, *, axis):
    return torch.cummax(x, axis)


@lowers("cummin")
def cummin(x, /, *, axis):
    return torch.cummin(x, axis)


# ---- top-k and sorting -------------------------------------------------------------------


@lowers("top_k")
def top_k(x, /, *, k, axis, largest=True):
    # A stable sort, not torch.topk: torch.topk orders (and picks among) equal elements as it
    # likes, the op keeps the lower index first.
    values, indices = torch.sort(x, dim=axis, descending=largest, stable=True)
    return values.narrow(axis, 0, k), indices.narrow(axis, 0, k)


@lowers("sort")
def sort(x, /, *, axis, descending=False):
    return torch.sort(x, dim=axis, descending=descending, stable=True)
