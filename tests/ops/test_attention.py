"""Scaled dot-product attention (masks, causal, GQA, fully masked rows) and nn.MultiheadAttention."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.ops.harness import Case, T, params, run_case
from tests.ops.harness import run_node as harness_run_node

INF = float("inf")


def qkv(batch=2, heads=4, q_len=5, kv_len=7, dim=8, kv_heads=None, v_dim=None, dtype="float32"):
    return [
        T((batch, heads, q_len, dim), dtype),
        T((batch, kv_heads or heads, kv_len, dim), dtype),
        T((batch, kv_heads or heads, kv_len, v_dim or dim), dtype),
    ]


def sdpa(**kwargs):
    return lambda q, k, v, *mask: F.scaled_dot_product_attention(q, k, v, *mask, **kwargs)


def _rows_dropped(q, mask):
    """``mask`` with every query row whose ``q`` sums below 0 attending to nothing."""
    return mask & (q.sum(-1, keepdim=True) > 0)


def _dropped_rows_bool(q, k, v, m):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=_rows_dropped(q, m))


def _dropped_rows_float(q, k, v, m):
    bias = torch.where(_rows_dropped(q, m), 0.0, -INF)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)


def _flash_for_cpu(q, k, v):
    return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, is_causal=True)[0]


# float32 attention: matmul and softmax summation orders differ from torch's CPU kernels
TOL = dict(rtol=1e-4, atol=1e-5)
HALF = dict(rtol=1e-2, atol=2e-3)

SDPA_CASES = [
    Case("sdpa", sdpa(), qkv(q_len=6, kv_len=6), ("attention",), **TOL),
    Case("sdpa_cross", sdpa(), qkv(), ("attention",), **TOL),
    Case("sdpa_value_dim", sdpa(), qkv(v_dim=3), ("attention",), **TOL),
    Case("sdpa_rank3", sdpa(), [T((2, 5, 8)), T((2, 7, 8)), T((2, 7, 8))], ("attention",), **TOL),
    Case("sdpa_rank5", sdpa(), [T((2, 3, 2, 5, 8)), T((2, 3, 2, 7, 8)), T((2, 3, 2, 7, 8))], ("attention",), **TOL),
    Case("sdpa_scale", sdpa(scale=0.7), qkv(), ("attention",), **TOL),
    Case("sdpa_dropout_zero", sdpa(dropout_p=0.0), qkv(), ("attention",), **TOL),
    # masks: bool (True attends) and additive float, broadcast over batch and heads
    Case("mask_bool_2d", sdpa(), qkv() + [T((5, 7), "bool")], ("attention",), dynamic=False, **TOL),
    Case("mask_bool_per_batch", sdpa(), qkv() + [T((2, 1, 5, 7), "bool")], ("attention",), **TOL),
    Case("mask_bool_full", sdpa(), qkv() + [T((2, 4, 5, 7), "bool")], ("attention",), **TOL),
    Case("mask_float_2d", sdpa(), qkv() + [T((5, 7))], ("attention",), dynamic=False, **TOL),
    Case("mask_float_padding", sdpa(), qkv() + [T((2, 1, 1, 7), low=-1e9, high=0.0)], ("attention",), **TOL),
    Case("mask_float_heads", sdpa(), qkv() + [T((4, 5, 7))], ("attention",), dynamic=False, **TOL),
    # rows with nothing to attend to give zeros, as torch's CPU kernel
    Case("mask_bool_fully_masked_rows", _dropped_rows_bool, qkv() + [T((2, 1, 5, 7), "bool")], ("attention",), **TOL),
    Case("mask_float_fully_masked_rows", _dropped_rows_float, qkv() + [T((2, 1, 5, 7), "bool")], ("attention",), **TOL),
    # causal: top-left aligned tril(ones(L, S))
    Case("causal", sdpa(is_causal=True), qkv(q_len=6, kv_len=6), ("attention",), **TOL),
    Case("causal_short_query", sdpa(is_causal=True), qkv(q_len=3, kv_len=7), ("attention",), **TOL),
    Case("causal_long_query", sdpa(is_causal=True), qkv(q_len=7, kv_len=3), ("attention",), **TOL),
    Case("causal_scale", sdpa(is_causal=True, scale=0.25), qkv(), ("attention",), **TOL),
    # grouped-query attention (Llama): 8 query heads over 2 key/value heads
    Case("gqa", sdpa(enable_gqa=True), qkv(heads=8, kv_heads=2), ("attention",), **TOL),
    Case("gqa_causal", sdpa(enable_gqa=True, is_causal=True), qkv(heads=8, kv_heads=2, q_len=6, kv_len=6), ("attention",), **TOL),
    Case("gqa_mask_heads", sdpa(enable_gqa=True), qkv(heads=8, kv_heads=2) + [T((2, 8, 5, 7), "bool")], ("attention",), **TOL),
    Case("gqa_mask_float", sdpa(enable_gqa=True), qkv(heads=8, kv_heads=2) + [T((2, 1, 5, 7))], ("attention",), **TOL),
    Case("mqa", sdpa(enable_gqa=True), qkv(heads=4, kv_heads=1), ("attention",), **TOL),
    # half precision: scores and softmax in float32
    Case("sdpa_half", sdpa(), qkv(dtype="float16"), ("attention",), **HALF),
    Case("sdpa_half_mask_causal", sdpa(is_causal=True), qkv(dtype="float16", q_len=6, kv_len=6), ("attention",), **HALF),
    Case("sdpa_half_float_mask", sdpa(), qkv(dtype="float16") + [T((2, 1, 5, 7), "float16")], ("attention",), **HALF),
    Case("sdpa_bfloat16", lambda q, k, v: F.scaled_dot_product_attention(q.bfloat16(), k.bfloat16(), v.bfloat16()), qkv(), ("attention",), rtol=2e-2, atol=2e-2),
    # the CPU flash kernel that torch's default decompositions produce
    Case("flash_attention_for_cpu", _flash_for_cpu, qkv(q_len=6, kv_len=6), ("attention",), **TOL),
]


class _MHA(torch.nn.Module):
    """nn.MultiheadAttention on ``(x, memory, key_padding_mask)`` with the given call options."""

    def __init__(self, *, self_attention=False, attn_mask=None, padding=False, batch_first=True, **kwargs):
        super().__init__()
        self.mha = torch.nn.MultiheadAttention(16, 4, batch_first=batch_first, **kwargs.pop("init", {}))
        self.self_attention, self.padding, self.batch_first, self.kwargs = self_attention, padding, batch_first, kwargs
        self.register_buffer("attn_mask", attn_mask)
        self.float_masks = attn_mask is not None and attn_mask.is_floating_point()

    def forward(self, x, memory, padding):
        if not self.batch_first:
            x, memory = x.transpose(0, 1), memory.transpose(0, 1)
        key = x if self.self_attention else memory
        mask = padding if self.padding else None
        if mask is not None and self.float_masks:  # torch wants both masks of one kind
            mask = torch.where(mask, -INF, 0.0)
        out, weights = self.mha(x, key, key, key_padding_mask=mask, attn_mask=self.attn_mask, **self.kwargs)
        out = out if self.batch_first else out.transpose(0, 1)
        return out if weights is None else (out, weights)


def mha_inputs(q_len=5):
    """query ``[2, 5, 16]``, memory ``[2, 5, 16]`` (self attention uses the query) and key padding ``[2, 5]``."""
    return [T((2, q_len, 16)), T((2, 5, 16)), torch.tensor([[False] * 5, [False, False, False, True, True]])]


CAUSAL = torch.triu(torch.ones(5, 5, dtype=torch.bool), diagonal=1)  # True = masked out
MHA_CASES = [
    Case("mha", _MHA(), mha_inputs(), ("dense", "softmax"), **TOL),
    Case("mha_self_no_grad_fast_path", _MHA(self_attention=True, need_weights=False), mha_inputs(), ("attention",), **TOL),
    Case("mha_self_padding", _MHA(self_attention=True, padding=True, need_weights=False), mha_inputs(), ("attention",), **TOL),
    Case("mha_weights", _MHA(padding=True), mha_inputs(), ("softmax",), **TOL),
    Case("mha_weights_per_head", _MHA(padding=True, average_attn_weights=False), mha_inputs(), ("softmax",), **TOL),
    Case("mha_causal_mask", _MHA(self_attention=True, attn_mask=CAUSAL, need_weights=False), mha_inputs(), ("attention",), **TOL),
    Case("mha_float_mask_padding", _MHA(attn_mask=torch.randn(5, 5), padding=True, need_weights=False), mha_inputs(), ("attention",), **TOL),
    Case("mha_seq_first", _MHA(batch_first=False, padding=True, need_weights=False), mha_inputs(), ("attention",), **TOL),
    Case("mha_seq_first_weights", _MHA(batch_first=False), mha_inputs(), ("softmax",), **TOL),
    Case("mha_kdim_vdim", _MHA(need_weights=False, init=dict(kdim=16, vdim=16, bias=False)), mha_inputs(), ("attention",), **TOL),
]


@pytest.mark.parametrize("case", params(SDPA_CASES + MHA_CASES))
def test_op(case):
    run_case(case)


def test_dropout_in_graph_is_refused():
    """Attention dropout is random: a graph that keeps dropout_p > 0 does not convert."""
    import unigraph as ug

    class Dropping(torch.nn.Module):
        def forward(self, q, k, v):
            return F.scaled_dot_product_attention(q, k, v, dropout_p=0.1)

    xs = [torch.randn(2, 4, 5, 8) for _ in range(3)]
    with pytest.raises(Exception, match="dropout_p=0.1"):
        ug.from_torch(Dropping(), tuple(xs))


# ---- graphs built directly: the lowering's paths torch's SDPA cannot spell (a mask with causal) ----


def run_node(op, inputs, **options):
    """One ``op`` node on static-shaped inputs: the torch backend's module against the JAX op."""
    harness_run_node(op, inputs, dynamic=False, **options)
def _arrays(*shapes, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


def _bool_mask(shape, seed=1):
    """A random bool mask whose first query row attends to nothing."""
    mask = np.random.default_rng(seed).random(shape) > 0.4
    mask[..., 0, :] = False
    return mask


def _float_mask(shape, seed=1):
    """An additive mask of 0 and -inf, its first query row all -inf and its second all -1e9 (not masked)."""
    mask = np.where(_bool_mask(shape, seed), 0.0, -np.inf).astype(np.float32)
    mask[..., 1, :] = -1e9
    return mask


def _padding(lengths, size):
    """A ``[B, 1, 1, size]`` additive padding mask; a length of 0 masks every key of that batch element."""
    keys = np.arange(size)
    return np.where(keys < np.array(lengths)[:, None], 0.0, -np.inf).astype(np.float32)[:, None, None, :]


DIRECT = {
    "causal_bool_mask": (_arrays((2, 4, 5, 8), (2, 4, 7, 8), (2, 4, 7, 8)) + [_bool_mask((2, 1, 5, 7))], dict(causal=True)),
    "causal_bool_mask_long_query": (_arrays((2, 4, 7, 8), (2, 4, 3, 8), (2, 4, 3, 6)) + [_bool_mask((7, 3))], dict(causal=True)),
    "causal_float_mask": (_arrays((2, 4, 5, 8), (2, 4, 7, 8), (2, 4, 7, 8)) + [_padding([5, 0], 7)], dict(causal=True, scale=0.3)),
    "causal_float_mask_rows": (_arrays((2, 4, 5, 8), (2, 4, 7, 8), (2, 4, 7, 8)) + [_float_mask((2, 4, 5, 7))], dict(causal=True)),
    "gqa_causal_bool_mask": (_arrays((2, 8, 6, 8), (2, 2, 6, 8), (2, 2, 6, 8)) + [_bool_mask((2, 8, 6, 6))], dict(causal=True)),
    "float_mask_rows": (_arrays((2, 4, 5, 8), (2, 4, 7, 8), (2, 4, 7, 8)) + [_float_mask((2, 4, 5, 7))], {}),
    "rank2_bool_mask": (_arrays((5, 8), (7, 8), (7, 3)) + [_bool_mask((5, 7))], {}),
    "rank2_causal": (_arrays((5, 8), (7, 8), (7, 3)) + [None], dict(causal=True)),
    "rank3_gqa": (_arrays((4, 5, 8), (2, 7, 8), (2, 7, 8)) + [None], {}),
    "half_causal_float32_mask": (
        _arrays((2, 4, 5, 8), (2, 4, 7, 8), (2, 4, 7, 8), dtype=np.float16) + [_float_mask((2, 1, 5, 7))],
        dict(causal=True, rtol=1e-2, atol=2e-3),
    ),
}


@pytest.mark.parametrize("name", DIRECT)
def test_attention_paths_without_an_sdpa_spelling(name):
    """A mask with ``causal``, fully masked rows (zeros) under every mask kind, ranks 2 and 3."""
    inputs, attrs = DIRECT[name]
    attrs = dict(attrs)
    tolerance = {key: attrs.pop(key) for key in ("rtol", "atol") if key in attrs}
    run_node("attention", inputs, **tolerance, **attrs)
