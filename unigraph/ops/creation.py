"""Creation ops: constant-filled tensors, ranges, dimension values, triangular masks."""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from unigraph.dtypes import jax_dtype
from unigraph.ops.registry import DType, SymDim, SymShape, op
from unigraph.ops.shape import decided


@op("full")
def full(*, shape: SymShape, value: float | bool, dtype: DType):
    """A tensor of ``shape`` filled with ``value`` converted to ``dtype``."""
    return jnp.full(shape, value, jax_dtype(dtype))


@op("arange")
def arange(*, start: SymDim = 0, end: SymDim, step: SymDim = 1, dtype: DType):
    """``[start, start + step, ...]`` up to ``end`` (excluded) as ``dtype``; bounds may be symbolic."""
    dtype = jax_dtype(dtype)
    count = _count(start, end, step)
    return jnp.asarray(start, dtype) + jnp.asarray(step, dtype) * lax.iota(dtype, count)


def _count(start, end, step):
    """``ceil((end - start) / step)``, at least 0 (for a symbolic step, taken as positive)."""
    if decided(lambda: step > 0, True):
        count = (end - start + step - 1) // step
    else:
        count = (start - end - step - 1) // -step
    return 0 if decided(lambda: count < 0, False) else count


@op("dim_value")
def dim_value(*, dim: SymDim, dtype: DType):
    """A 0-d tensor holding the (possibly symbolic) dimension ``dim`` as a ``dtype`` number."""
    return jnp.asarray(dim, jax_dtype(dtype))


@op("triangle")
def triangle(x, /, *, diagonal: int = 0, upper: bool = False):
    """``x`` with elements outside a triangle of its last two axes zeroed (torch ``tril``/``triu``).

    Keeps ``j - i <= diagonal`` (lower) or ``j - i >= diagonal`` (upper) at row i, column j.
    """
    return jnp.triu(x, diagonal) if upper else jnp.tril(x, diagonal)
