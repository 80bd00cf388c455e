"""torch lowerings: max/average pools (``F.max_poolNd``, ``F.avg_poolNd``) and adaptive pools.

torch's pools take ``(N, C, *spatial)`` or ``(C, *spatial)``: channels-last
activations are moved to channels-first around the call, and extra leading
axes are flattened into one. Padding the torch function can express
(symmetric, at most half the window) goes to it as is, ``ceil_mode`` included;
any other ``(lo, hi)`` padding is applied with ``F.pad`` (the ``ceil_mode``
growth computed as the JAX op does), after which the pool runs unpadded.
Indices are flat positions within the input's spatial dims, as torch's.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from unigraph.backends.torch_ops import lowers


def _to_torch(x, n, channels_last):
    """``x`` as torch's pools take it: channels-first, with at most one leading (batch) axis."""
    if channels_last:
        x = x.movedim(-1, -n - 1)
    return x.flatten(0, -n - 2) if x.ndim > n + 2 else x


def _from_torch(y, x, n, channels_last):
    """A pool's output back in the layout (and leading axes) of its input ``x``."""
    if x.ndim > n + 2:
        y = y.unflatten(0, x.shape[: x.ndim - n - 1])
    return y.movedim(-n - 1, -1) if channels_last else y


def _torch_can_pad(window, padding):
    """Whether torch's pools take ``padding`` themselves: symmetric, at most half the window."""
    return all(lo == hi and 0 <= lo <= k // 2 for k, (lo, hi) in zip(window, padding))


def _pad_arg(pairs):
    """``F.pad``'s list for ``(lo, hi)`` pairs of the trailing dims (the last dim first)."""
    return [amount for pair in reversed(pairs) for amount in pair]


def _grown_padding(sizes, window, strides, padding, dilation, ceil_mode):
    """The ``(lo, hi)`` padding of each spatial dim, ``hi`` grown to give ``ceil_mode``'s output length.

    The output length rounds up, but the last window must start inside the
    input or its left padding; sizes may be symbolic (``torch.sym_min``/``sym_max``).
    """
    if not ceil_mode:
        return list(padding)
    grown = []
    for size, k, s, (lo, hi), d in zip(sizes, window, strides, padding, dilation):
        span = d * (k - 1) + 1
        count = torch.sym_min(-(-(size + lo + hi - span) // s) + 1, (size + lo - 1) // s + 1)
        grown.append((lo, torch.sym_max(hi, (count - 1) * s + span - size - lo)))
    return grown


def _unpadded_indices(indices, padded_sizes, sizes, padding, window, dilation):
    """Flat indices into a padded input as flat indices into the input itself.

    torch picks a padding position only when the window's maximum is the pad
    value (every real tap equals it), and then it picks the window's first tap;
    the op picks the first real tap, the first at or after the low padding in
    each dim, or the largest int64 where the window has no real tap.
    """
    flat = torch.zeros_like(indices)
    outside = torch.zeros_like(indices, dtype=torch.bool)
    rest = indices
    coordinates = []
    for padded in reversed(padded_sizes):
        coordinates.append(rest % padded)
        rest = rest // padded
    for c, size, (lo, _), k, d in zip(reversed(coordinates), sizes, padding, window, dilation):
        skipped = torch.clamp_min((lo - c + d - 1) // d, 0)  # taps in the low padding
        outside = outside | (skipped >= k) | (c >= lo + size)
        flat = flat * size + (c + d * skipped - lo)
    return torch.where(outside, torch.iinfo(torch.int64).max, flat)


@lowers("max_pool")
def max_pool(
    x, /, *, window, strides, padding, dilation, ceil_mode=False, channels_last=False, return_indices=False
):
    n = len(window)
    y = _to_torch(x, n, channels_last)
    pool = (F.max_pool1d, F.max_pool2d, F.max_pool3d)[n - 1]
    if _torch_can_pad(window, padding):
        symmetric = [lo for lo, _ in padding]
        out = pool(y, window, strides, symmetric, dilation, ceil_mode=ceil_mode, return_indices=return_indices)
    else:
        sizes = y.shape[-n:]
        pads = _grown_padding(sizes, window, strides, padding, dilation, ceil_mode)
        lowest = -math.inf if y.is_floating_point() else torch.iinfo(y.dtype).min
        padded = F.pad(y, _pad_arg(pads), value=lowest)
        out = pool(padded, window, strides, 0, dilation, return_indices=return_indices)
        if return_indices:
            values, indices = out
            out = values, _unpadded_indices(indices, padded.shape[-n:], sizes, pads, window, dilation)
    if not return_indices:
        return _from_torch(out, x, n, channels_last)
    return _from_torch(out[0], x, n, channels_last), _from_torch(out[1], x, n, channels_last)


def _sum_pool(x, window, strides):
    """Window sums (no padding) of the ``len(window)`` trailing dims, 1-d as 2-d (``avg_pool1d`` has no divisor)."""
    if len(window) == 1:
        return F.avg_pool2d(x.unsqueeze(-2), (1, *window), (1, *strides), divisor_override=1).squeeze(-2)
    return (F.avg_pool2d, F.avg_pool3d)[len(window) - 2](x, window, strides, divisor_override=1)


@lowers("avg_pool")
def avg_pool(
    x,
    /,
    *,
    window,
    strides,
    padding,
    ceil_mode=False,
    count_include_pad=True,
    divisor_override=None,
    channels_last=False,
):
    """``F.avg_poolNd`` where it takes the padding; else window sums of the padded input
    (float32 for half inputs) over the number of counted elements: the input's and, with
    ``count_include_pad``, its explicit padding's, never those ``ceil_mode`` adds.
    """
    n = len(window)
    y = _to_torch(x, n, channels_last)
    if _torch_can_pad(window, padding) and (n > 1 or divisor_override is None):
        pool = (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)[n - 1]
        options = (ceil_mode, count_include_pad) if n == 1 else (ceil_mode, count_include_pad, divisor_override)
        return _from_torch(pool(y, window, strides, [lo for lo, _ in padding], *options), x, n, channels_last)
    acc = torch.float32 if y.dtype in (torch.float16, torch.bfloat16) else y.dtype
    sizes = y.shape[-n:]
    pads = _grown_padding(sizes, window, strides, padding, (1,) * n, ceil_mode)
    total = _sum_pool(F.pad(y.to(acc), _pad_arg(pads)), window, strides)
    if divisor_override is not None:
        return _from_torch((total / divisor_override).to(x.dtype), x, n, channels_last)
    counted = torch.ones(sizes, dtype=acc, device=x.device)
    counted = F.pad(counted, _pad_arg(padding), value=1 if count_include_pad else 0)
    growth = [(0, hi - p_hi) for (_, hi), (_, p_hi) in zip(pads, padding)]
    count = _sum_pool(F.pad(counted, _pad_arg(growth)).unsqueeze(0), window, strides)[0]
    return _from_torch((total / count).to(x.dtype), x, n, channels_last)


@lowers("adaptive_avg_pool")
def adaptive_avg_pool(x, /, *, output_size, channels_last=False):
    n = len(output_size)
    pool = (F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d)[n - 1]
    return _from_torch(pool(_to_torch(x, n, channels_last), output_size), x, n, channels_last)


@lowers("adaptive_max_pool")
def adaptive_max_pool(x, /, *, output_size, channels_last=False, return_indices=False):
    n = len(output_size)
    pool = (F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.adaptive_max_pool3d)[n - 1]
    out = pool(_to_torch(x, n, channels_last), output_size, return_indices=return_indices)
    if not return_indices:
        return _from_torch(out, x, n, channels_last)
    return _from_torch(out[0], x, n, channels_last), _from_torch(out[1], x, n, channels_last)
