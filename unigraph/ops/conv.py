"""Convolutions: N-d ``conv`` and ``conv_transpose`` on activations in their source layout.

Activations are ``(N, C, *spatial)`` (``channels_last=False``, torch's layout)
or ``(N, *spatial, C)`` (``channels_last=True``, Keras's); the layout is given
to ``lax.conv_general_dilated`` as dimension numbers, so activations are never
transposed. Kernels are in Flax layout, ``(*spatial, in, out)``. Padding is
explicit, one ``(lo, hi)`` pair per spatial dimension; frontends resolve
``"same"``/``"valid"`` and other conventions into pairs.

Some convolutions are lowered without a ``lax`` convolution, which XLA:CPU
runs several times slower for them (bench/bench_conv.py; ``lowering`` says
which): 1x1 ones (ResNet bottlenecks, MobileNet) and patch embeddings (ViT,
ConvNeXt: stride = window, no padding) as one matmul over channels and window,
and depthwise ones (one input channel per group: MobileNet, EfficientNet,
ConvNeXt) as a sum of strided slices times per-channel weights.
"""

from __future__ import annotations

import itertools
import math

from jax import lax
import jax.numpy as jnp

from unigraph.ops.registry import op

Pairs = tuple[tuple[int, int], ...]


def layout_axes(ndim: int, n_spatial: int, channels_last: bool) -> tuple[int, tuple[int, ...]]:
    """The channel axis and the spatial axes of a rank-``ndim`` activation with ``n_spatial`` spatial dims.

    Spatial dimensions are the trailing ones (channels-first) or the ones
    before the trailing channel axis (channels-last), so any leading axes
    (batch, or none for an unbatched input) are allowed.
    """
    if channels_last:
        return ndim - 1, tuple(range(ndim - 1 - n_spatial, ndim - 1))
    return ndim - 1 - n_spatial, tuple(range(ndim - n_spatial, ndim))


def channel_vector(v, ndim: int, channel_axis: int):
    """A per-channel vector ``(C,)`` shaped to broadcast against a rank-``ndim`` activation."""
    return jnp.reshape(v, tuple(-1 if i == channel_axis else 1 for i in range(ndim)))


def _dimension_numbers(n: int, channels_last: bool) -> lax.ConvDimensionNumbers:
    """``(N, C, *spatial)`` or ``(N, *spatial, C)`` activations with a ``(*spatial, I, O)`` kernel."""
    spatial = tuple(range(1, n + 1)) if channels_last else tuple(range(2, n + 2))
    activation = (0, n + 1, *spatial) if channels_last else (0, 1, *spatial)
    return lax.ConvDimensionNumbers(activation, (n + 1, n, *range(n)), activation)


def _convolve(x, kernel, bias, *, strides, padding, lhs_dilation, dilation, groups, channels_last):
    """``lax.conv_general_dilated`` in the given layout, adding a per-channel bias; unbatched inputs allowed."""
    n = kernel.ndim - 2
    unbatched = x.ndim == n + 1
    if unbatched:
        x = x[None]
    y = lax.conv_general_dilated(
        x,
        kernel,
        window_strides=strides,
        padding=padding,
        lhs_dilation=lhs_dilation,
        rhs_dilation=dilation,
        dimension_numbers=_dimension_numbers(n, channels_last),
        feature_group_count=groups,
    )
    if bias is not None:
        channel_axis, _ = layout_axes(y.ndim, n, channels_last)
        y = y + channel_vector(bias, y.ndim, channel_axis)
    return y[0] if unbatched else y


@op("conv")
def conv(
    x,
    kernel,
    bias=None,
    /,
    *,
    strides: tuple[int, ...],
    padding: Pairs,
    dilation: tuple[int, ...],
    groups: int = 1,
    channels_last: bool = False,
):
    """N-d cross-correlation (torch ``convNd``, Keras ``ConvND``) with a Flax kernel.

    ``x`` is ``(N, C, *spatial)`` (or ``(N, *spatial, C)``; the batch axis may
    be absent), ``kernel`` is ``(*k, C/groups, O)``, ``bias`` is ``(O,)``;
    ``padding`` holds one ``(lo, hi)`` zero padding per spatial dimension.
    """
    how = lowering(x.shape, kernel.shape, strides, padding, dilation, groups, channels_last)
    if how == "matmul":
        return _windows_as_matmul(x, kernel, bias, strides=strides, channels_last=channels_last)
    if how == "taps":
        return _depthwise(
            x, kernel, bias, strides=strides, padding=padding, dilation=dilation, channels_last=channels_last
        )
    return _convolve(
        x,
        kernel,
        bias,
        strides=strides,
        padding=padding,
        lhs_dilation=None,
        dilation=dilation,
        groups=groups,
        channels_last=channels_last,
    )


# A depthwise kernel with more taps than this (a 12x12 window) stays a grouped convolution:
# each tap is one slice in the fused loop, and compile time grows with their number.
_MAX_TAPS = 144


def lowering(x_shape, kernel_shape, strides, padding, dilation, groups, channels_last) -> str:
    """How ``conv`` is lowered for these shapes and attributes: ``"matmul"``, ``"taps"`` or ``"convolution"``.

    ``"matmul"``: 1x1 windows (any stride) and windows that tile the input
    (ViT/ConvNeXt patch embeddings: stride = window), without padding. ``"taps"``: depthwise
    (``groups`` = input channels, a window of at most ``_MAX_TAPS``), with
    static spatial sizes. Anything else is a ``lax`` convolution.
    """
    n = len(kernel_shape) - 2
    window = tuple(kernel_shape[:n])
    channel_axis, spatial = layout_axes(len(x_shape), n, channels_last)
    static = all(isinstance(x_shape[a], int) for a in spatial)
    no_padding = all(tuple(p) == (0, 0) for p in padding)
    pointwise = all(k == 1 for k in window)
    tiles = tuple(strides) == window and static and all(d == 1 for d in dilation)
    if groups == 1 and no_padding and (pointwise or tiles):
        return "matmul"
    depthwise = groups > 1 and kernel_shape[n] == 1 and x_shape[channel_axis] == groups
    if depthwise and static and math.prod(window) <= _MAX_TAPS:
        if all(size > 0 for size in _output_sizes(x_shape, kernel_shape, spatial, strides, padding, dilation)):
            return "taps"
    return "convolution"


def _windows_as_matmul(x, kernel, bias, *, strides, channels_last):
    """A 1x1 convolution, or one whose windows tile the input, as one matmul.

    A 1x1 window first takes every ``stride``-th position. Tiling windows
    (stride = window): each spatial axis of length ``L`` is cropped to whole
    windows and split into ``(L // k, k)``; the window axes and the channel
    axis are contracted with the kernel's ``(*k, C)``.
    """
    n = kernel.ndim - 2
    window = kernel.shape[:n]
    channel_axis, spatial = layout_axes(x.ndim, n, channels_last)
    contracted = [channel_axis]
    if all(k == 1 for k in window):
        for axis, stride in zip(spatial, strides):
            if stride > 1:
                x = lax.slice_in_dim(x, 0, None, stride, axis)
    else:
        shape, contracted = [], []
        for axis, size in enumerate(x.shape):
            if axis in spatial:
                k = window[spatial.index(axis)]
                x = lax.slice_in_dim(x, 0, size // k * k, 1, axis)
                shape += [size // k, k]
                contracted.append(len(shape) - 1)
            else:
                shape.append(size)
                if axis == channel_axis:
                    channel_axis = len(shape) - 1
        x = jnp.reshape(x, shape)
        contracted.append(channel_axis)
    weights = kernel if len(contracted) > 1 else jnp.reshape(kernel, kernel.shape[n:])
    y = lax.dot_general(x, weights, ((tuple(contracted), tuple(range(len(contracted)))), ((), ())))
    if bias is not None:
        y = y + bias  # output channels are last here
    return y if channels_last else jnp.moveaxis(y, -1, layout_axes(y.ndim, n, False)[0])


def _output_sizes(x_shape, kernel_shape, spatial, strides, padding, dilation) -> list[int]:
    taps = kernel_shape[: len(kernel_shape) - 2]
    return [
        (x_shape[a] + lo + hi - d * (k - 1) - 1) // s + 1
        for a, (lo, hi), k, s, d in zip(spatial, padding, taps, strides, dilation)
    ]


def _depthwise(x, kernel, bias, *, strides, padding, dilation, channels_last):
    """A depthwise ``conv`` as the sum over kernel taps of a strided window of ``x`` times that tap's weights.

    Output channel ``o`` reads input channel ``o // multiplier`` (``kernel`` is
    ``(*k, 1, C * multiplier)``), as in a grouped convolution. Half-precision
    inputs are summed in float32, as convolutions accumulate.
    """
    n = kernel.ndim - 2
    channel_axis, spatial = layout_axes(x.ndim, n, channels_last)
    sizes = _output_sizes(x.shape, kernel.shape, spatial, strides, padding, dilation)
    dtype = x.dtype
    accumulate = jnp.promote_types(dtype, jnp.float32)
    multiplier = kernel.shape[-1] // x.shape[channel_axis]
    if multiplier > 1:
        x = jnp.repeat(x, multiplier, axis=channel_axis)
    pads = [(0, 0, 0)] * x.ndim
    for axis, (lo, hi) in zip(spatial, padding):
        pads[axis] = (lo, hi, 0)
    x = lax.pad(x, jnp.zeros((), dtype), pads).astype(accumulate)
    kernel = kernel.astype(accumulate)
    y = None
    for tap in itertools.product(*(range(k) for k in kernel.shape[:n])):
        window = x
        for axis, t, size, s, d in zip(spatial, tap, sizes, strides, dilation):
            window = lax.slice_in_dim(window, t * d, t * d + (size - 1) * s + 1, s, axis)
        term = window * channel_vector(kernel[(*tap, 0)], x.ndim, channel_axis)
        y = term if y is None else y + term
    if bias is not None:
        y = y + channel_vector(bias.astype(accumulate), y.ndim, channel_axis)
    return y.astype(dtype)


def _transposed_kernel(kernel, groups: int):
    """A ``(*k, C, O/groups)`` transposed-conv kernel as the ``(*k, C/groups, O)`` kernel of the equivalent conv.

    The spatial taps are flipped; with groups, input channel ``g*Cg + i`` and
    output column ``o`` of group ``g`` become input ``i`` and output ``g*Og + o``.
    """
    n = kernel.ndim - 2
    kernel = jnp.flip(kernel, axis=tuple(range(n)))
    if groups == 1:
        return kernel
    *k, c, og = kernel.shape
    kernel = jnp.reshape(kernel, (*k, groups, c // groups, og))
    kernel = jnp.swapaxes(kernel, n, n + 1)
    return jnp.reshape(kernel, (*k, c // groups, groups * og))


@op("conv_transpose")
def conv_transpose(
    x,
    kernel,
    bias=None,
    /,
    *,
    strides: tuple[int, ...],
    padding: Pairs,
    dilation: tuple[int, ...],
    groups: int = 1,
    channels_last: bool = False,
):
    """N-d transposed convolution (torch ``conv_transposeNd``), the gradient of ``conv`` w.r.t. its input.

    ``kernel`` is ``(*k, C, O/groups)``: torch's ``(C, O/groups, *k)`` weight
    with the spatial axes moved first and not flipped (Flax's
    ``ConvTranspose`` layout, ``(*k, in, out)``; with groups, the input axis
    spans all ``C`` channels and the output axis the ``O/groups`` of one group,
    as in torch). Each input element scatters ``kernel`` into a full output of
    length ``(L-1)*stride + dilation*(k-1) + 1``, from which ``padding[i] =
    (lo, hi)`` crops ``lo`` and ``hi`` elements; a negative ``hi`` extends the
    end instead (torch's ``output_padding`` is ``padding - hi``).
    """
    n = kernel.ndim - 2
    taps = kernel.shape[:n]
    full = tuple(d * (k - 1) for d, k in zip(dilation, taps))
    return _convolve(
        x,
        _transposed_kernel(kernel, groups),
        bias,
        strides=(1,) * n,
        padding=tuple((f - lo, f - hi) for f, (lo, hi) in zip(full, padding)),
        lhs_dilation=strides,
        dilation=dilation,
        groups=groups,
        channels_last=channels_last,
    )
