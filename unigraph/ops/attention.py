"""Scaled dot-product attention in torch's ``[batch..., heads, seq, dim]`` layout.

Written with ``einsum`` and a masked softmax that XLA fuses: two batched
matmuls and one fused reduction, in float32 for half-precision inputs.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
from jax import lax

from unigraph.ops.registry import op


@op("attention")
def attention(q, k, v, mask=None, /, *, causal: bool = False, scale: float | None = None):
    """``softmax(q @ k^T * scale + mask) @ v``: q ``[..., H, L, E]``, k ``[..., Hkv, S, E]``,
    v ``[..., Hkv, S, Ev]`` → ``[..., H, L, Ev]`` in q's dtype.

    - Grouped-query attention: ``Hkv`` may divide ``H``; key/value head ``j``
      serves query heads ``j*H/Hkv … (j+1)*H/Hkv - 1`` (torch's ``enable_gqa``).
      Ranks below 3 have no head axis.
    - ``mask`` broadcasts to ``[..., H, L, S]``: bool (True attends) or float
      (added to the scores).
    - ``causal``: query ``i`` attends to keys ``j <= i``, top-left aligned when
      ``L != S`` (torch's ``tril(ones(L, S))``); combines with ``mask``.
    - ``scale`` defaults to ``1/sqrt(E)``.
    - Scores and softmax are float32 (as torch computes half inputs); a query
      with no key left to attend gets zeros, as torch's CPU kernels give.
    """
    groups = _groups(q, k)
    scores = _grouped(q, groups, _times("...le,...se->...ls", k))
    scores = scores * (_default_scale(q.shape[-1]) if scale is None else scale)
    if mask is not None:
        scores = jnp.where(mask, scores, -jnp.inf) if mask.dtype == jnp.bool_ else scores + mask.astype(jnp.float32)
    if causal:
        scores = jnp.where(_lower_triangle(*scores.shape[-2:]), scores, -jnp.inf)
    weights = _masked_softmax(scores).astype(v.dtype)
    out = _grouped(weights, groups, _times("...ls,...sd->...ld", v))
    return out.astype(q.dtype)


def _groups(q, k) -> int:
    """Query heads per key/value head (1 without a head axis or with as many heads)."""
    if q.ndim < 3 or k.ndim < 3 or q.shape[-3] == k.shape[-3]:
        return 1
    return q.shape[-3] // k.shape[-3]


def _times(equation: str, other):
    """``x ↦ einsum(equation, x, other)``, accumulated in float32."""
    return lambda x: jnp.einsum(equation, x, other, preferred_element_type=jnp.float32)


def _grouped(x, groups: int, product):
    """``product`` of ``x`` ``[..., H, L, N]`` with a key/value tensor of ``H/groups`` heads.

    The ``groups`` query heads of one key/value head are folded into its rows,
    ``[..., H/groups, groups*L, N]``, so no key/value head is repeated in memory.
    """
    if groups == 1:
        return product(x)
    *batch, heads, rows, n = x.shape
    out = product(x.reshape(*batch, heads // groups, groups * rows, n))
    return out.reshape(*out.shape[:-3], heads, rows, out.shape[-1])


def _default_scale(e):
    return 1.0 / math.sqrt(e) if isinstance(e, int) else lax.rsqrt(jnp.asarray(e, jnp.float32))


def _lower_triangle(rows, cols):
    """``[rows, cols]`` bool, True where column <= row."""
    row = lax.broadcasted_iota(jnp.int32, (rows, cols), 0)
    col = lax.broadcasted_iota(jnp.int32, (rows, cols), 1)
    return col <= row


def _masked_softmax(scores):
    """Softmax over the last axis; rows that are all -inf give zeros, not NaN."""
    peak = lax.stop_gradient(jnp.max(scores, axis=-1, keepdims=True))
    exp = jnp.exp(scores - jnp.where(peak == -jnp.inf, 0.0, peak))
    total = jnp.sum(exp, axis=-1, keepdims=True)
    return exp / jnp.where(total == 0.0, 1.0, total)
