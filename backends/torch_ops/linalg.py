"""torch lowerings: dense layers (Flax ``(in, out)`` kernels), matmul, einsum."""

from __future__ import annotations

import torch

from unigraph.backends.torch_ops import lowers


@lowers("dense")
def dense(x, kernel, bias=None, /):
    return torch.matmul(x, kernel) if bias is None else torch.matmul(x, kernel) + bias


@lowers("matmul")
def matmul(x, y, /):
    return torch.matmul(x, y)


@lowers("einsum")
def einsum(*operands, equation):
    return torch.einsum(equation, *operands)
