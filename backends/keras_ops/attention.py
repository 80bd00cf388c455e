"""Keras lowerings: scaled dot-product attention.

Written as the JAX lowering is, rather than with ``ops.dot_product_attention``
(whose masks, causal alignment, grouped heads and fully masked rows differ
between backends): two batched ``ops.matmul`` in float32 (half inputs are
exact in float32, so products agree with JAX's float32 accumulation), a
masked softmax giving zeros to a query with no key left to attend, grouped
query heads folded into the rows of their key/value head.
"""

from __future__ import annotations

import math

from keras import ops

from unigraph.backends.keras_ops import lowers


@lowers("attention")
def attention(q, k, v, mask=None, /, *, causal=False, scale=None):
    groups = _groups(q, k)
    scores = _grouped(q, groups, lambda x: ops.matmul(_f32(x), ops.swapaxes(_f32(k), -1, -2)))
    scores = scores * (_default_scale(ops.shape(q)[-1]) if scale is None else scale)
    if mask is not None:
        if ops.dtype(mask) == "bool":
            scores = ops.where(mask, scores, -math.inf)
        else:
            scores = scores + _f32(mask)
    if causal:
        shape = ops.shape(scores)
        scores = ops.where(_lower_triangle(shape[-2], shape[-1]), scores, -math.inf)
    weights = ops.cast(_masked_softmax(scores), ops.dtype(v))
    out = _grouped(weights, groups, lambda x: ops.matmul(_f32(x), _f32(v)))
    return ops.cast(out, ops.dtype(q))


def _f32(x):
    return ops.cast(x, "float32")


def _groups(q, k):
    """Query heads per key/value head (1 without a head axis or with as many heads)."""
    if len(q.shape) < 3 or len(k.shape) < 3:
        return 1
    heads, kv_heads = ops.shape(q)[-3], ops.shape(k)[-3]
    if isinstance(heads, int) and isinstance(kv_heads, int) and heads == kv_heads:
        return 1
    return heads // kv_heads


def _grouped(x, groups, product):
    """``product`` of ``x`` ``[..., H, L, N]`` with a key/value tensor of ``H/groups`` heads.

    The ``groups`` query heads of one key/value head are folded into its rows,
    ``[..., H/groups, groups*L, N]``, so no key/value head is repeated.
    """
    if isinstance(groups, int) and groups == 1:
        return product(x)
    *batch, heads, rows, n = ops.shape(x)
    out = product(ops.reshape(x, [*batch, heads // groups, groups * rows, n]))
    return ops.reshape(out, [*batch, heads, rows, ops.shape(out)[-1]])


def _default_scale(e):
    return 1.0 / math.sqrt(e) if isinstance(e, int) else ops.rsqrt(_f32(e))


def _lower_triangle(rows, cols):
    """``[rows, cols]`` bool, True where column <= row (top-left aligned)."""
    return ops.arange(cols)[None, :] <= ops.arange(rows)[:, None]


def _masked_softmax(scores):
    """Softmax over the last axis; rows that are all -inf give zeros, not NaN."""
    peak = ops.stop_gradient(ops.max(scores, axis=-1, keepdims=True))
    exp = ops.exp(scores - ops.where(ops.equal(peak, -math.inf), 0.0, peak))
    total = ops.sum(exp, axis=-1, keepdims=True)
    return exp / ops.where(ops.equal(total, 0.0), 1.0, total)
