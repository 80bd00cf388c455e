"""Linear algebra: dense layers, matrix products, einsum."""

from __future__ import annotations

import jax.numpy as jnp

from unigraph.ops.registry import op


@op("dense")
def dense(x, kernel, bias=None, /):
    """``x @ kernel + bias`` with a Flax ``(in, out)`` kernel; ``x`` is ``[..., in]``."""
    y = jnp.matmul(x, kernel)
    return y if bias is None else y + bias


@op("matmul")
def matmul(x, y, /):
    """NumPy ``matmul``: batched over leading dims, vectors promoted and squeezed."""
    return jnp.matmul(x, y)


@op("einsum")
def einsum(*operands, equation: str):
    """``jnp.einsum(equation, *operands)`` (explicit ``->`` output)."""
    return jnp.einsum(equation, *operands)
