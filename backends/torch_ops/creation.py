"""torch lowerings: constant-filled tensors, ranges, dimension values, triangular masks.

The ops without tensor inputs make their tensors on the default device; the
generated module runs them under ``torch.device`` of its first input.
"""

from __future__ import annotations

import torch

from unigraph.backends.torch_ops import lowers


@lowers("full")
def full(*, shape, value, dtype):
    return torch.full(shape, value, dtype=getattr(torch, dtype))


@lowers("arange")
def arange(*, start=0, end, step=1, dtype):
    # an end on the wrong side of start makes an empty range (torch.arange would raise); a symbolic step counts as positive
    return torch.arange(
        start,
        (end if end <= start else start) if step < 0 else (end if end >= start else start),
        step,
        dtype=getattr(torch, dtype),
    )


@lowers("dim_value")
def dim_value(*, dim, dtype):
    return torch.full((), dim, dtype=getattr(torch, dtype))


@lowers("triangle")
def triangle(x, /, *, diagonal=0, upper=False):
    return torch.triu(x, diagonal) if upper else torch.tril(x, diagonal)
