"""torch lowerings: N-d ``conv`` and ``conv_transpose`` (``F.convNd`` / ``F.conv_transposeNd``).

Kernels arrive in Flax layout and are permuted (a view) to torch's: a conv
kernel ``(*k, in/groups, out)`` becomes ``(out, in/groups, *k)``, a transposed
conv kernel ``(*k, in, out/groups)`` becomes ``(in, out/groups, *k)``.
Channels-last activations (``channels_last=True``, Keras's layout) are moved
to channels-first around the call, views both ways. Padding is explicit,
``(lo, hi)`` per spatial dim: the symmetric part goes to torch, the rest to
``F.pad`` (zeros; negative amounts crop).
"""

from __future__ import annotations

import torch.nn.functional as F

from unigraph.backends.torch_ops import lowers


def _pad_arg(pairs):
    """``F.pad``'s list for ``(lo, hi)`` pairs of the trailing dims (the last dim first)."""
    return [amount for pair in reversed(pairs) for amount in pair]


@lowers("conv")
def conv(x, kernel, bias=None, /, *, strides, padding, dilation, groups=1, channels_last=False):
    n = len(strides)
    if channels_last:
        x = x.movedim(-1, -n - 1)
    symmetric = [max(min(lo, hi), 0) for lo, hi in padding]
    extra = [(lo - p, hi - p) for (lo, hi), p in zip(padding, symmetric)]
    if any(pair != (0, 0) for pair in extra):
        x = F.pad(x, _pad_arg(extra))
    convolve = (F.conv1d, F.conv2d, F.conv3d)[n - 1]
    weight = kernel.permute(n + 1, n, *range(n))
    y = convolve(x, weight, bias, stride=strides, padding=symmetric, dilation=dilation, groups=groups)
    return y.movedim(-n - 1, -1) if channels_last else y


@lowers("conv_transpose")
def conv_transpose(x, kernel, bias=None, /, *, strides, padding, dilation, groups=1, channels_last=False):
    """torch computes the positions ``[p, full - p + output_padding)`` of the full scatter, of
    length ``full = (L-1)*stride + dilation*(k-1) + 1``; the op wants ``[lo, full - hi)``.
    ``p`` and ``output_padding`` (below ``max(stride, dilation)``) come as close as they can;
    ``F.pad`` crops the rest or extends with zeros, which it only does beyond the full scatter.
    """
    n = len(strides)
    if channels_last:
        x = x.movedim(-1, -n - 1)
    torch_padding, output_padding, rest = [], [], []
    for s, d, (lo, hi) in zip(strides, dilation, padding):
        most = max(s, d) - 1
        p = max(0, min(lo, hi + most))
        extra_end = min(max(p - hi, 0), most)
        torch_padding.append(p)
        output_padding.append(extra_end)
        rest.append((p - lo, p - extra_end - hi))
    extends = any(amount > 0 for pair in rest for amount in pair)
    transpose = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[n - 1]
    y = transpose(
        x,
        kernel.permute(n, n + 1, *range(n)),
        None if extends else bias,
        stride=strides,
        padding=torch_padding,
        output_padding=output_padding,
        groups=groups,
        dilation=dilation,
    )
    if any(pair != (0, 0) for pair in rest):
        y = F.pad(y, _pad_arg(rest))
    if extends and bias is not None:  # the zero-extended positions get the bias too
        y = y + bias.reshape(-1, *[1] * n)
    return y.movedim(-n - 1, -1) if channels_last else y
