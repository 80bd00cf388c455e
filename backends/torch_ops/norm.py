"""torch lowerings: batch, layer, group and RMS norms (torch's fused functions), weight normalization.

torch's norm kernels compute half-precision inputs in float32 and return the
input's dtype, as the ops do. Norms over axes torch does not take (a batch
norm's channel axis other than 1, layer and RMS norms over non-trailing axes,
channels-last group norms) move those axes into place around the call.
Statistics (``return_stats``) come from the functions that compute them
anyway (``native_*``, ``_fused_rms_norm``; a batch norm given running
statistics returns them, ``1/sqrt(var + epsilon)`` for the variance), in
the dtypes the ops give them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from unigraph.backends.torch_ops import lowers


def _compute_dtype(dtype):
    """float32 for half floats, else ``dtype`` (torch's "opmath" type)."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


@lowers("batch_norm")
def batch_norm(x, scale=None, bias=None, mean=None, var=None, /, *, epsilon, axis=1, return_stats=False):
    axis = axis % x.ndim
    y = x.movedim(axis, 1) if axis != 1 else x
    if mean is None:  # the input's own statistics (training mode, no running-average update)
        y, mean, rstd = torch.native_batch_norm(y, scale, bias, None, None, True, 0.0, epsilon)
    else:
        y = F.batch_norm(y, mean, var, scale, bias, False, 0.0, epsilon)
        rstd = 1 / torch.sqrt(var.to(_compute_dtype(x.dtype)) + epsilon) if return_stats else None
    y = y.movedim(1, axis) if axis != 1 else y
    return (y, mean.to(x.dtype), rstd.to(x.dtype)) if return_stats else y


@lowers("layer_norm")
def layer_norm(x, scale=None, bias=None, /, *, axes, epsilon, return_stats=False):
    axes = sorted(a % x.ndim for a in axes)
    last = list(range(x.ndim - len(axes), x.ndim))
    moved = axes != last  # torch normalizes the trailing dims
    y = x.movedim(axes, last) if moved else x
    shape = y.shape[x.ndim - len(axes) :]
    if not return_stats:
        y = F.layer_norm(y, shape, scale, bias, epsilon)
        return y.movedim(last, axes) if moved else y
    outs = torch.native_layer_norm(y, shape, scale, bias, epsilon)
    y, mean, rstd = (t.movedim(last, axes) if moved else t for t in outs)
    return y, mean.to(x.dtype), rstd.to(x.dtype)


@lowers("group_norm")
def group_norm(x, scale=None, bias=None, /, *, groups, epsilon, channels_last=False, return_stats=False):
    y = x.movedim(-1, 1) if channels_last else x
    if return_stats:
        n, c = y.shape[0], y.shape[1]
        y, mean, rstd = torch.native_group_norm(y, scale, bias, n, c, math.prod(y.shape[2:]), groups, epsilon)
    else:
        y = F.group_norm(y, groups, scale, bias, epsilon)
    y = y.movedim(1, -1) if channels_last else y
    return (y, mean.to(x.dtype), rstd.to(x.dtype)) if return_stats else y


@lowers("rms_norm")
def rms_norm(x, scale=None, /, *, axes, epsilon, return_stats=False):
    axes = sorted(a % x.ndim for a in axes)
    last = list(range(x.ndim - len(axes), x.ndim))
    moved = axes != last  # torch normalizes the trailing dims
    y = x.movedim(axes, last) if moved else x
    shape = y.shape[x.ndim - len(axes) :]
    if not return_stats:
        y = F.rms_norm(y, shape, scale, epsilon)
        return y.movedim(last, axes) if moved else y
    y, rstd = torch._fused_rms_norm(y, shape, scale, epsilon)  # rstd in the compute dtype, as the op's
    return (y.movedim(last, axes), rstd.movedim(last, axes)) if moved else (y, rstd)


@lowers("weight_norm")
def weight_norm(v, g, /, *, axis=0, return_norm=False):
    axes = [a for a in range(v.ndim) if axis is None or a != axis % v.ndim]
    vf = v.to(_compute_dtype(v.dtype))
    norm = torch.linalg.vector_norm(vf, 2, axes, keepdim=True) if axes else vf.abs()
    w = v * (g / norm.to(g.dtype))
    if not return_norm:
        return w
    return w, norm.to(torch.float32 if g.dtype == torch.bfloat16 else v.dtype)
