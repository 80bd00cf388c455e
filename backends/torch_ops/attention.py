"""torch lowerings: scaled dot-product attention, as ``F.scaled_dot_product_attention``.

torch's fused kernels group query heads over fewer key/value heads
(``enable_gqa``) without repeating them, align ``is_causal`` top-left
(``tril(ones(L, S))``) and compute half-precision scores and softmax in
float32, as the op does. Two things differ and are handled here: torch takes
``is_causal`` or a mask, not both (the causal triangle joins the mask), and
depending on the kernel a query left with no key to attend gets NaN where the
op gives zeros (such rows are zeroed).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from unigraph.backends.torch_ops import lowers


@lowers("attention")
def attention(q, k, v, mask=None, /, *, causal=False, scale=None):
    gqa = q.ndim >= 3 and k.ndim >= 3 and q.shape[-3] != k.shape[-3]
    if mask is None:  # every query attends to some key (causal ones to key 0 at least)
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=scale, enable_gqa=gqa)
    attends = mask if mask.dtype == torch.bool else mask != -math.inf
    if causal:
        triangle = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool, device=q.device).tril()
        attends = attends & triangle
        mask = attends if mask.dtype == torch.bool else torch.where(triangle, mask, -math.inf)
    out = F.scaled_dot_product_attention(q, k, v, mask, scale=scale, enable_gqa=gqa)
    return out.masked_fill(~attends.any(-1, keepdim=True), 0.0)
