"""Keras lowerings: dense layers (Flax ``(in, out)`` kernels), matmul, einsum."""

from __future__ import annotations

from keras import ops

from unigraph.backends.keras_ops import lowers


@lowers("dense")
def dense(x, kernel, bias=None, /):
    y = ops.matmul(x, kernel)
    return y if bias is None else y + bias


@lowers("matmul")
def matmul(x, y, /):
    return ops.matmul(x, y)


@lowers("einsum")
def einsum(*operands, equation):
    return ops.einsum(equation, *operands)
