"""Helpers shared by the ATen handlers: dtypes, torch's type promotion, axes."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch._prims_common import ELEMENTWISE_TYPE_PROMOTION_KIND, elementwise_dtypes

from unigraph.frontends.builder import Builder, TensorRef
from unigraph import dims


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float32`` → ``"float32"``."""
    return str(dtype).removeprefix("torch.")


def torch_dtype(name: str) -> torch.dtype:
    return getattr(torch, name)


def _probe(v):
    """What torch's promotion needs of an operand: rank 0 or not, dtype, or the scalar."""
    if isinstance(v, TensorRef):
        return torch.empty((1,) * min(v.rank, 1), dtype=torch_dtype(v.dtype), device="meta")
    if isinstance(v, str):  # a symbolic size: an int
        return 1
    return v


def result_type(*operands) -> str:
    """The dtype torch computes ``operands`` in (tensors, 0-d tensors and Python scalars)."""
    _, dtype = elementwise_dtypes(
        *(_probe(v) for v in operands),
        type_promotion_kind=ELEMENTWISE_TYPE_PROMOTION_KIND.DEFAULT,
    )
    return dtype_name(dtype)


def as_tensor(b: Builder, v, dtype: str) -> TensorRef:
    """``v`` (a TensorRef or a Python scalar) as a tensor of ``dtype``."""
    if isinstance(v, TensorRef):
        return v if v.dtype == dtype else b.emit("cast", v, dtype=dtype)
    if isinstance(v, str):  # a symbolic size used as a number
        return b.emit("dim_value", dim=v, dtype=dtype)
    return b.const(v, dtype)


def promote(b: Builder, *operands) -> list[TensorRef]:
    """The operands as tensors of the dtype torch would compute them in."""
    dtype = result_type(*operands)
    return [as_tensor(b, v, dtype) for v in operands]


def is_floating(dtype: str) -> bool:
    return torch_dtype(dtype).is_floating_point


def is_integral(dtype: str) -> bool:
    return not is_floating(dtype) and not torch_dtype(dtype).is_complex


def axis(a: int, rank: int) -> int:
    """A torch dim (possibly negative) as a non-negative axis."""
    if not -max(rank, 1) <= a < max(rank, 1):
        raise IndexError(f"dim {a} is out of range for rank {rank}")
    return a % max(rank, 1)


def axes(a: int | Sequence[int] | None, rank: int) -> tuple[int, ...]:
    """Torch dims (an int, a list, or None for all) as sorted non-negative axes."""
    if a is None or (isinstance(a, Sequence) and len(a) == 0):
        return tuple(range(rank))
    if isinstance(a, int):
        a = [a]
    return tuple(sorted({axis(x, rank) for x in a}))


def same_dim(a: dims.Dim, b: dims.Dim) -> bool:
    return dims.same_dim(a, b)
