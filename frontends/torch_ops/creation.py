"""ATen creation ops: full/zeros/ones/empty and their _like/new_ variants, arange, tril/triu, one_hot."""

from __future__ import annotations

import math
from collections.abc import Sequence

from unigraph.dims import Dim
from unigraph.frontends.torch_ops import aten, handles
from unigraph.frontends.builder import Builder, TensorRef
from unigraph.frontends.torch_ops.common import as_tensor, is_floating
from unigraph.frontends.torch_ops.shape import broadcast


def _fill_dtype(value) -> str:
    """The dtype torch gives a tensor filled with ``value`` when none is named."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, str)):  # a str is a symbolic size
        return "int64"
    return "float32"


def full_of(b: Builder, shape: Sequence[Dim], value, dtype: str | None = None) -> TensorRef:
    """A ``shape`` tensor of ``value`` (a number, or a symbolic size) as ``dtype``."""
    dtype = dtype or _fill_dtype(value)
    if isinstance(value, str):
        return broadcast(b, as_tensor(b, value, dtype), shape)
    return b.emit("full", shape=tuple(shape), value=value, dtype=dtype)


@handles(aten.full.default)
def full(b: Builder, size, fill_value, *, dtype=None, **_):
    """aten::full(SymInt[] size, Scalar fill_value, *, ScalarType? dtype=None, ...)."""
    return full_of(b, size, fill_value, dtype)


@handles(aten.zeros.default, aten.empty.memory_format)
def zeros(b: Builder, size, *, dtype=None, **_):
    """aten::zeros(SymInt[] size, *, ScalarType? dtype=None, ...); ``empty`` is zeros too."""
    return full_of(b, size, 0, dtype or "float32")


@handles(aten.ones.default)
def ones(b: Builder, size, *, dtype=None, **_):
    """aten::ones(SymInt[] size, *, ScalarType? dtype=None, ...)."""
    return full_of(b, size, 1, dtype or "float32")


@handles(aten.empty_strided.default)
def empty_strided(b: Builder, size, stride, *, dtype=None, **_):
    """aten::empty_strided(SymInt[] size, SymInt[] stride, *, ScalarType? dtype=None, ...): zeros."""
    return full_of(b, size, 0, dtype or "float32")


@handles(aten.scalar_tensor.default)
def scalar_tensor(b: Builder, s, *, dtype=None, **_):
    """aten::scalar_tensor(Scalar s, *, ScalarType? dtype=None, ...): a 0-d tensor, float32 by default."""
    return full_of(b, (), s, dtype or "float32")


@handles(aten.full_like.default)
def full_like(b: Builder, x, fill_value, *, dtype=None, **_):
    """aten::full_like(Tensor self, Scalar fill_value, *, ScalarType? dtype=None, ...)."""
    return full_of(b, x.shape, fill_value, dtype or x.dtype)


@handles(aten.zeros_like.default, aten.empty_like.default)
def zeros_like(b: Builder, x, *, dtype=None, **_):
    """aten::zeros_like(Tensor self, *, ScalarType? dtype=None, ...); ``empty_like`` is zeros too."""
    return full_of(b, x.shape, 0, dtype or x.dtype)


@handles(aten.ones_like.default)
def ones_like(b: Builder, x, *, dtype=None, **_):
    """aten::ones_like(Tensor self, *, ScalarType? dtype=None, ...)."""
    return full_of(b, x.shape, 1, dtype or x.dtype)


@handles(aten.new_full.default)
def new_full(b: Builder, x, size, fill_value, *, dtype=None, **_):
    """aten::new_full(Tensor self, SymInt[] size, Scalar fill_value, *, ScalarType? dtype=None, ...)."""
    return full_of(b, size, fill_value, dtype or x.dtype)


@handles(aten.new_zeros.default, aten.new_empty.default)
def new_zeros(b: Builder, x, size, *, dtype=None, **_):
    """aten::new_zeros(Tensor self, SymInt[] size, *, ScalarType? dtype=None, ...); ``new_empty`` too."""
    return full_of(b, size, 0, dtype or x.dtype)


@handles(aten.new_ones.default)
def new_ones(b: Builder, x, size, *, dtype=None, **_):
    """aten::new_ones(Tensor self, SymInt[] size, *, ScalarType? dtype=None, ...)."""
    return full_of(b, size, 1, dtype or x.dtype)


@handles(aten.new_empty_strided.default)
def new_empty_strided(b: Builder, x, size, stride, *, dtype=None, **_):
    """aten::new_empty_strided(Tensor self, SymInt[] size, SymInt[] stride, *, ScalarType? dtype=None, ...)."""
    return full_of(b, size, 0, dtype or x.dtype)


@handles(aten.fill.Scalar, aten.fill.Tensor, aten.fill_.Scalar, aten.fill_.Tensor)
def fill(b: Builder, x, value):
    """aten::fill.Scalar/.Tensor(Tensor self, Scalar|Tensor value): ``x``'s shape and dtype, all ``value``."""
    if isinstance(value, TensorRef):
        return broadcast(b, as_tensor(b, value, x.dtype), x.shape)
    return full_of(b, x.shape, value, x.dtype)


@handles(aten.zero.default, aten.zero_.default)
def zero(b: Builder, x):
    """aten::zero(Tensor self): zeros of ``x``'s shape and dtype."""
    return full_of(b, x.shape, 0, x.dtype)


# ---- ranges and masks ----------------------------------------------------------------------


@handles(aten.arange.default, aten.arange.start, aten.arange.start_step)
def arange(b: Builder, start, end=None, step=1, *, dtype=None, **_):
    """aten::arange.start_step(Scalar start, Scalar end, Scalar step=1, *, ScalarType? dtype=None, ...).

    Also ``arange(end)`` and ``arange(start, end)``; ints give int64 unless a
    dtype is named. Float bounds become ``start + step * arange(count)``,
    computed in ``dtype`` (torch computes floats in double: within an ulp).
    """
    if end is None:
        start, end = 0, start
    bounds = (start, end, step)
    if not any(isinstance(v, float) for v in bounds):
        return b.emit("arange", start=start, end=end, step=step, dtype=dtype or "int64")
    if any(isinstance(v, str) for v in bounds):
        raise NotImplementedError(f"arange({start}, {end}, {step}) mixes float and dynamic bounds")
    dtype = dtype or "float32"
    number = float if is_floating(dtype) else int  # torch truncates start and step for ints
    count = max(0, math.ceil((end - start) / step))
    steps = b.emit("arange", end=count, dtype=dtype)
    return b.emit("add", b.emit("mul", steps, b.const(number(step), dtype)), b.const(number(start), dtype))


@handles(aten.tril.default)
def tril(b: Builder, x, diagonal=0):
    """aten::tril(Tensor self, SymInt diagonal=0): the lower triangle of the last two axes."""
    return _triangle(b, x, diagonal, upper=False)


@handles(aten.triu.default)
def triu(b: Builder, x, diagonal=0):
    """aten::triu(Tensor self, SymInt diagonal=0): the upper triangle of the last two axes."""
    return _triangle(b, x, diagonal, upper=True)


def _triangle(b: Builder, x: TensorRef, diagonal, upper: bool) -> TensorRef:
    if not isinstance(diagonal, int):
        raise NotImplementedError(f"tril/triu with a dynamic diagonal ({diagonal})")
    return b.emit("triangle", x, diagonal=diagonal, upper=upper)


@handles(aten.one_hot.default)
def one_hot(b: Builder, x, num_classes=-1):
    """aten::one_hot(Tensor self, int num_classes=-1): int64 ``[..., num_classes]``."""
    if num_classes < 0:
        raise NotImplementedError("one_hot without num_classes: the size depends on the values")
    classes = b.emit("arange", end=num_classes, dtype=x.dtype)
    hot = b.emit("equal", b.emit("expand_dims", x, axes=(x.rank,)), classes)
    return b.emit("cast", hot, dtype="int64")
