"""``conv_general_dilated``: ``conv`` in the activation's own layout, or ``conv_transpose``.

The dimension numbers say where batch, feature and spatial axes are. NHWC
activations (Flax, Keras) become ``conv(channels_last=True)`` and NCHW ones
``conv(channels_last=False)`` without transposes; other layouts are
transposed to NHWC and back. Kernels in Flax's ``(*spatial, in, out)``
layout (HWIO) are used as they are; others get a ``transpose`` node. The
bias ``add`` that follows a convolution (a reshaped 1-d variable along the
output features) is taken into the ``conv`` node.

A convolution with input dilation (``lhs_dilation``, how
``lax.conv_transpose`` and Flax ``ConvTranspose`` compute) is the
``conv_transpose`` of the flipped kernel with strides equal to the dilation.
"""

from __future__ import annotations

from unigraph.frontends.builder import TensorRef
from unigraph.frontends.jax_ops import handles
from unigraph.frontends.jax_ops.common import ints
from unigraph.frontends.jax_ops.context import Context, Unsupported
from unigraph.frontends.jax_ops.linalg import bias_add


@handles("conv_general_dilated")
def conv_general_dilated(
    cx: Context,
    x,
    kernel,
    *,
    window_strides,
    padding,
    lhs_dilation,
    rhs_dilation,
    dimension_numbers,
    feature_group_count=1,
    batch_group_count=1,
    **_,
):
    if batch_group_count != 1:
        raise Unsupported("conv_general_dilated with batch_group_count > 1 (a gradient computation)")
    lhs_spec, rhs_spec, out_spec = (ints(s) for s in dimension_numbers)
    n = len(lhs_spec) - 2
    dtype = cx.out_type.dtype
    x, kernel = cx.cast(x, dtype), cx.cast(kernel, dtype)  # preferred_element_type

    channels_last = lhs_spec != (0, 1, *range(2, n + 2))
    if channels_last and lhs_spec != (0, n + 1, *range(1, n + 1)):
        x = cx.emit("transpose", x, perm=(lhs_spec[0], *lhs_spec[2:], lhs_spec[1]))
    hwio = (*rhs_spec[2:], rhs_spec[1], rhs_spec[0])  # the kernel's axes in Flax order
    if hwio != tuple(range(n + 2)):
        kernel = cx.emit("transpose", kernel, perm=hwio)
    bias, add = bias_add(cx, features_axis=out_spec[1])
    pads = tuple(ints(p) for p in padding)
    dilation = ints(rhs_dilation)
    common = dict(dilation=dilation, groups=int(feature_group_count), channels_last=channels_last)
    if any(d != 1 for d in ints(lhs_dilation)):
        y = _transposed(cx, x, kernel, bias, ints(window_strides), pads, ints(lhs_dilation), common)
    else:
        y = cx.emit("conv", x, kernel, bias, strides=ints(window_strides), padding=pads, **common)
    y = _to_out_layout(cx, y, n, channels_last, out_spec)
    if add is not None:
        cx.absorb(add, y)
    return y


def _transposed(cx: Context, x, kernel, bias, strides, pads, lhs_dilation, common) -> TensorRef:
    """``conv_general_dilated`` with input dilation as ``conv_transpose`` (which flips its kernel back)."""
    if any(s != 1 for s in strides) or common["groups"] != 1:
        raise Unsupported("conv_general_dilated with both input dilation and strides or feature groups")
    n = kernel.rank - 2
    taps = kernel.shape[:n]
    full = [d * (k - 1) for d, k in zip(common["dilation"], taps)]
    crop = tuple((f - lo, f - hi) for f, (lo, hi) in zip(full, pads))
    flipped = cx.emit("flip", kernel, axes=tuple(range(n)))
    return cx.emit("conv_transpose", x, flipped, bias, strides=lhs_dilation, padding=crop, **common)


def _to_out_layout(cx: Context, y: TensorRef, n: int, channels_last: bool, out_spec) -> TensorRef:
    """``y`` (batch, spatial…, features or batch, features, spatial…) transposed as ``out_spec`` asks."""
    feature_axis = n + 1 if channels_last else 1
    spatial = range(1, n + 1) if channels_last else range(2, n + 2)
    perm = [0] * (n + 2)
    perm[out_spec[0]] = 0
    perm[out_spec[1]] = feature_axis
    for logical, produced in zip(out_spec[2:], spatial):
        perm[logical] = produced
    return y if perm == list(range(n + 2)) else cx.emit("transpose", y, perm=tuple(perm))
