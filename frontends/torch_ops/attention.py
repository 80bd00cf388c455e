"""ATen attention: ``scaled_dot_product_attention`` and its CPU flash kernel, as one ``attention`` node.

``nn.MultiheadAttention`` needs no handler of its own: under ``torch.export``
it never takes the fused ``_native_multi_head_attention`` fast path (that
path is off while make_fx traces), so it arrives as linear projections,
reshapes and ``scaled_dot_product_attention`` (or ``bmm``/``softmax`` when it
returns its weights).
"""

from __future__ import annotations

from unigraph.frontends.torch_ops import aten, handles
from unigraph.frontends.builder import Builder


def _attention(b: Builder, q, k, v, mask, dropout_p, is_causal, scale):
    if dropout_p:
        raise NotImplementedError(
            f"scaled_dot_product_attention with dropout_p={dropout_p}: attention dropout is random; "
            "convert in eval mode (pass dropout_p=0.0 when not training, as nn.MultiheadAttention does)"
        )
    return b.emit("attention", q, k, v, mask, causal=bool(is_causal), scale=None if scale is None else float(scale))


@handles(aten.scaled_dot_product_attention)
def scaled_dot_product_attention(
    b: Builder, query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, *, scale=None, enable_gqa=False
):
    """aten::scaled_dot_product_attention(Tensor query, Tensor key, Tensor value, Tensor? attn_mask=None,
    float dropout_p=0.0, bool is_causal=False, *, float? scale=None, bool enable_gqa=False)

    With ``enable_gqa`` key/value may have fewer heads than query; the
    ``attention`` op groups query heads over them (no repeated heads).
    """
    return _attention(b, query, key, value, attn_mask, dropout_p, is_causal, scale)


@handles(aten._scaled_dot_product_flash_attention_for_cpu)
def flash_attention_for_cpu(
    b: Builder, query, key, value, dropout_p=0.0, is_causal=False, *, attn_mask=None, scale=None
):
    """aten::_scaled_dot_product_flash_attention_for_cpu(Tensor query, Tensor key, Tensor value,
    float dropout_p=0.0, bool is_causal=False, *, Tensor? attn_mask=None, float? scale=None)
    -> (Tensor output, Tensor logsumexp)

    Found in programs decomposed with torch's default table. The logsumexp
    output only serves the backward pass and is not computed.
    """
    return _attention(b, query, key, value, attn_mask, dropout_p, is_causal, scale), None
