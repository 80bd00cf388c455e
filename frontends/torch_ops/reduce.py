"""ATen reductions, softmax, cumulative ops, top-k and sorting, with torch's dtype rules.

torch sums, multiplies and accumulates integers and bools in int64, returns
``any``/``all`` of uint8 as uint8, and computes the float ops of integer
inputs in float32; every such dtype is stated in the graph.
"""

from __future__ import annotations

from unigraph.frontends.torch_ops import aten, handles
from unigraph.frontends.builder import Builder, TensorRef
from unigraph.frontends.torch_ops.common import as_tensor, axes, axis, is_floating, is_integral


def _axes(dim, x: TensorRef) -> tuple[int, ...]:
    """Torch dims (int, list, None or [] for all) as axes of ``x`` (none for a 0-d tensor)."""
    return axes(dim, x.rank) if x.rank else ()


def _axis(dim: int, x: TensorRef) -> int:
    return axis(dim, x.rank)


def _to_float(b: Builder, x: TensorRef) -> TensorRef:
    return x if is_floating(x.dtype) else as_tensor(b, x, "float32")


def _accumulated(op: str):
    """A handler for ``op(self, dim=None, keepdim=False, *, dtype=None)`` (sum, prod)."""

    def handler(b: Builder, x, dim=None, keepdim=False, *, dtype=None):
        if dtype is None and is_integral(x.dtype):
            dtype = "int64"
        return b.emit(op, x, axes=_axes(dim, x), keepdims=keepdim, dtype=dtype or x.dtype)

    handler.__name__ = op
    handler.__doc__ = (
        f"aten::{op.removeprefix('reduce_')}(Tensor self, int[1]? dim, bool keepdim=False, *, ScalarType? dtype=None)"
    )
    return handler


handles(aten.sum.default, aten.sum.dim_IntList)(_accumulated("reduce_sum"))
handles(aten.prod.default, aten.prod.dim_int)(_accumulated("reduce_prod"))


@handles(aten.mean.default, aten.mean.dim)
def mean(b: Builder, x, dim=None, keepdim=False, *, dtype=None):
    """aten::mean.dim(Tensor self, int[1]? dim, bool keepdim=False, *, ScalarType? dtype=None)"""
    return b.emit("reduce_mean", x, axes=_axes(dim, x), keepdims=keepdim, dtype=dtype or x.dtype)


@handles(aten.amax)
def amax(b: Builder, x, dim=(), keepdim=False):
    """aten::amax(Tensor self, int[1] dim=[], bool keepdim=False)"""
    return b.emit("reduce_max", x, axes=_axes(dim, x), keepdims=keepdim)


@handles(aten.amin)
def amin(b: Builder, x, dim=(), keepdim=False):
    """aten::amin(Tensor self, int[1] dim=[], bool keepdim=False)"""
    return b.emit("reduce_min", x, axes=_axes(dim, x), keepdims=keepdim)


@handles(aten.max.default)
def max_all(b: Builder, x):
    """aten::max(Tensor self) -> Tensor"""
    return amax(b, x)


@handles(aten.min.default)
def min_all(b: Builder, x):
    """aten::min(Tensor self) -> Tensor"""
    return amin(b, x)


@handles(aten.max.dim)
def max_dim(b: Builder, x, dim, keepdim=False):
    """aten::max.dim(Tensor self, int dim, bool keepdim=False) -> (Tensor values, Tensor indices)"""
    return amax(b, x, [dim], keepdim), argmax(b, x, dim, keepdim)


@handles(aten.min.dim)
def min_dim(b: Builder, x, dim, keepdim=False):
    """aten::min.dim(Tensor self, int dim, bool keepdim=False) -> (Tensor values, Tensor indices)"""
    return amin(b, x, [dim], keepdim), argmin(b, x, dim, keepdim)


@handles(aten.argmax)
def argmax(b: Builder, x, dim=None, keepdim=False):
    """aten::argmax(Tensor self, int? dim=None, bool keepdim=False)"""
    return b.emit("argmax", x, axis=None if dim is None else _axis(dim, x), keepdims=keepdim)


@handles(aten.argmin)
def argmin(b: Builder, x, dim=None, keepdim=False):
    """aten::argmin(Tensor self, int? dim=None, bool keepdim=False)"""
    return b.emit("argmin", x, axis=None if dim is None else _axis(dim, x), keepdims=keepdim)


def _logical(op: str):
    """A handler for any/all: .default, .dim (an int) and .dims (a list; [] reduces nothing)."""

    def handler(b: Builder, x, dim=None, keepdim=False):
        reduced = () if isinstance(dim, (list, tuple)) and not dim else _axes(dim, x)
        out = b.emit(op, x, axes=reduced, keepdims=keepdim)
        return as_tensor(b, out, "uint8") if x.dtype == "uint8" else out

    handler.__name__ = op
    handler.__doc__ = f"aten::{op.removeprefix('reduce_')}.dims(Tensor self, int[]? dim=None, bool keepdim=False)"
    return handler


handles(aten.any)(_logical("reduce_any"))
handles(aten.all)(_logical("reduce_all"))


# ---- variance and standard deviation -----------------------------------------------------


def _variance(b: Builder, x, dim, correction, keepdim, *, std: bool, with_mean: bool):
    reduced = _axes(dim, x)
    out = b.emit("variance", x, axes=reduced, correction=float(correction), keepdims=keepdim)
    if std:
        out = b.emit("sqrt", out)
    if not with_mean:
        return out
    return out, b.emit("reduce_mean", x, axes=reduced, keepdims=keepdim, dtype=x.dtype)


def _variance_handlers(name: str, *, std: bool, with_mean: bool):
    """Handlers for the .correction, .dim and .default overloads of var/std/var_mean/std_mean."""

    def correction(b: Builder, x, dim=None, *, correction=None, keepdim=False):
        correction = 1 if correction is None else correction
        return _variance(b, x, dim, correction, keepdim, std=std, with_mean=with_mean)

    def by_dim(b: Builder, x, dim, unbiased=True, keepdim=False):
        return _variance(b, x, dim, int(unbiased), keepdim, std=std, with_mean=with_mean)

    def default(b: Builder, x, unbiased=True):
        return _variance(b, x, None, int(unbiased), False, std=std, with_mean=with_mean)

    correction.__doc__ = (
        f"aten::{name}.correction(Tensor self, int[1]? dim=None, *, Scalar? correction=None, bool keepdim=False)"
    )
    by_dim.__doc__ = f"aten::{name}.dim(Tensor self, int[1]? dim, bool unbiased=True, bool keepdim=False)"
    default.__doc__ = f"aten::{name}(Tensor self, bool unbiased=True)"
    return {"correction": correction, "dim": by_dim, "default": default}


for _packet, _std, _with_mean in (
    (aten.var, False, False),
    (aten.std, True, False),
    (aten.var_mean, False, True),
    (aten.std_mean, True, True),
):
    for _overload, _handler in _variance_handlers(str(_packet).split(".")[-1], std=_std, with_mean=_with_mean).items():
        handles(getattr(_packet, _overload))(_handler)


# ---- norms, logsumexp, softmax -----------------------------------------------------------


@handles(aten.logsumexp)
def logsumexp(b: Builder, x, dim, keepdim=False):
    """aten::logsumexp(Tensor self, int[1] dim, bool keepdim=False)"""
    x = _to_float(b, x)
    return b.emit("logsumexp", x, axes=_axes(dim, x), keepdims=keepdim)


@handles(aten.linalg_vector_norm)
def linalg_vector_norm(b: Builder, x, ord=2, dim=None, keepdim=False, *, dtype=None):
    """aten::linalg_vector_norm(Tensor self, Scalar ord=2, int[1]? dim=None, bool keepdim=False, *,
    ScalarType? dtype=None)"""
    x = as_tensor(b, x, dtype) if dtype else x
    return b.emit("vector_norm", x, ord=float(ord), axes=_axes(dim, x), keepdims=keepdim)


def _softmax_handlers(op: str, name: str):
    """Handlers for ``name``.int (with a dtype to compute in) and ``_name`` (with half_to_float)."""

    def public(b: Builder, x, dim, dtype=None):
        x = as_tensor(b, x, dtype) if dtype else x
        return b.emit(op, x, axis=_axis(dim, x))

    def private(b: Builder, x, dim, half_to_float=False):
        return public(b, x, dim, "float32" if half_to_float else None)

    public.__doc__ = f"aten::{name}.int(Tensor self, int dim, ScalarType? dtype=None)"
    private.__doc__ = f"aten::_{name}(Tensor self, int dim, bool half_to_float)"
    handles(getattr(aten, name).int)(public)
    handles(getattr(aten, f"_{name}"))(private)


_softmax_handlers("softmax", "softmax")
_softmax_handlers("log_softmax", "log_softmax")


# ---- cumulative ops ----------------------------------------------------------------------


def _cumulative(op: str):
    def handler(b: Builder, x, dim, *, dtype=None):
        if dtype is None and is_integral(x.dtype):
            dtype = "int64"
        return b.emit(op, x, axis=_axis(dim, x), dtype=dtype or x.dtype)

    handler.__name__ = op
    handler.__doc__ = f"aten::{op}(Tensor self, int dim, *, ScalarType? dtype=None)"
    return handler


handles(aten.cumsum, aten.cumsum_)(_cumulative("cumsum"))
handles(aten.cumprod, aten.cumprod_)(_cumulative("cumprod"))


@handles(aten.cummax)
def cummax(b: Builder, x, dim):
    """aten::cummax(Tensor self, int dim) -> (Tensor values, Tensor indices)"""
    return b.emit("cummax", x, axis=_axis(dim, x), n_out=2)


@handles(aten.cummin)
def cummin(b: Builder, x, dim):
    """aten::cummin(Tensor self, int dim) -> (Tensor values, Tensor indices)"""
    return b.emit("cummin", x, axis=_axis(dim, x), n_out=2)


# ---- top-k and sorting -------------------------------------------------------------------


@handles(aten.topk)
def topk(b: Builder, x, k, dim=-1, largest=True, sorted=True):
    """aten::topk(Tensor self, SymInt k, int dim=-1, bool largest=True, bool sorted=True)

    The result is always sorted (torch leaves the order unspecified for sorted=False).
    """
    if not isinstance(k, int):
        raise NotImplementedError(f"topk with a dynamic k ({k}); k must be a constant")
    return b.emit("top_k", x, k=k, axis=_axis(dim, x), largest=largest, n_out=2)


@handles(aten.sort.default, aten.sort.stable)
def sort(b: Builder, x, dim=-1, descending=False, *, stable=None):
    """aten::sort.stable(Tensor self, *, bool? stable, int dim=-1, bool descending=False)

    Always stable (torch's unstable sort may order equal elements either way).
    """
    return b.emit("sort", x, axis=_axis(dim, x), descending=descending, n_out=2)


@handles(aten.argsort.default, aten.argsort.stable)
def argsort(b: Builder, x, dim=-1, descending=False, *, stable=None):
    """aten::argsort.stable(Tensor self, *, bool stable, int dim=-1, bool descending=False)"""
    return sort(b, x, dim, descending)[1]


@handles(aten.msort)
def msort(b: Builder, x):
    """aten::msort(Tensor self): sorted along dim 0."""
    return sort(b, x, 0)[0]


@handles(aten.count_nonzero)
def count_nonzero(b: Builder, x, dim=None):
    """aten::count_nonzero.dim_IntList(Tensor self, int[] dim)"""
    nonzero = b.emit("not_equal", x, b.const(0, x.dtype))
    return b.emit("reduce_sum", nonzero, axes=_axes(dim, x), keepdims=False, dtype="int64")
