"""Convolutions: N-d ``conv`` and ``conv_transpose`` on activations in their source layout.

Activations are ``(N, C, *spatial)`` (``channels_last=False``, torch's layout)
or ``(N, *spatial, C)`` (``channels_last=True``, Keras's); the layout is given
to ``lax.conv_general_dilated`` as dimension numbers, so activations are never
transposed. Kernels are in Flax layout, ``(*spatial, in, out)``. Padding is
explicit, one ``(lo, hi)`` pair per spatial dimension; frontends resolve
``"same"``/``"valid"`` and other conventions into pairs.
"""

from __future__ import annotations

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
