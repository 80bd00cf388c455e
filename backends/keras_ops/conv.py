"""Keras lowerings: N-d ``conv`` and ``conv_transpose``.

Activations are moved channels-last around the Keras op when they come
channels-first (TensorFlow's CPU kernels have no channels-first convolution),
and an unbatched input gets a batch axis of one. The op's explicit ``(lo, hi)``
padding is applied outside the Keras op, which then runs ``padding="valid"``:
positive amounts pad with zeros (``ops.pad``), negative ones crop (a slice).

Groups: ``ops.conv`` infers them from the kernel, ``(*k, C/groups, O)``, under
every Keras backend (TensorFlow's through an XLA-compiled call); depthwise 1-d
and 2-d convolutions run as ``ops.depthwise_conv``, TensorFlow's own kernel.
TensorFlow takes no stride above 1 together with a dilation above 1, so such
a convolution runs at stride 1 and its output is subsampled.

``conv_transpose`` runs ``ops.conv_transpose`` (kernel ``(*k, out, in)``,
unflipped: the gradient of ``ops.conv``, as the op) with ``padding="valid"``
and ``output_padding=0``: the full scatter, of length ``(L-1)*stride +
dilation*(k-1) + 1``, which the op's ``(lo, hi)`` crop (or, negative, extend
with zeros, to which the bias is added too). ``ops.conv_transpose`` has no
groups: a grouped one runs group by group.
"""

from __future__ import annotations

from keras import ops

from unigraph.backends.keras_ops import lowers


def _to_channels_last(x, n: int, channels_last: bool):
    """``x`` as ``(N, *spatial, C)``, and whether it was unbatched."""
    unbatched = len(x.shape) == n + 1
    if unbatched:
        x = ops.expand_dims(x, 0)
    if not channels_last:
        x = ops.transpose(x, (0, *range(2, n + 2), 1))
    return x, unbatched


def _from_channels_last(y, n: int, channels_last: bool, unbatched: bool):
    """The inverse of ``_to_channels_last``."""
    if not channels_last:
        y = ops.transpose(y, (0, n + 1, *range(1, n + 1)))
    return y[0] if unbatched else y


def _pad_or_crop(x, pairs):
    """``(lo, hi)`` per spatial axis of a channels-last ``x``: positive pads with zeros, negative crops."""
    pads = [(0, 0)] + [(max(lo, 0), max(hi, 0)) for lo, hi in pairs] + [(0, 0)]
    if any(pair != (0, 0) for pair in pads):
        x = ops.pad(x, pads)
    if any(lo < 0 or hi < 0 for lo, hi in pairs):
        crops = tuple(slice(max(-lo, 0), hi if hi < 0 else None) for lo, hi in pairs)
        x = x[(slice(None), *crops, slice(None))]
    return x


@lowers("conv")
def conv(x, kernel, bias=None, /, *, strides, padding, dilation, groups=1, channels_last=False):
    n = len(strides)
    x, unbatched = _to_channels_last(x, n, channels_last)
    x = _pad_or_crop(x, padding)
    subsample = any(s > 1 for s in strides) and any(d > 1 for d in dilation)  # TensorFlow runs no such conv
    run_strides = (1,) * n if subsample else tuple(strides)
    if groups > 1 and kernel.shape[n] == 1 and n <= 2:  # depthwise: (*k, 1, C*M) is Keras's (*k, C, M)
        depthwise = ops.reshape(kernel, (*kernel.shape[:n], groups, kernel.shape[-1] // groups))
        y = ops.depthwise_conv(x, depthwise, strides=run_strides, padding="valid", dilation_rate=tuple(dilation))
    else:
        y = ops.conv(x, kernel, strides=run_strides, padding="valid", dilation_rate=tuple(dilation))
    if subsample:
        y = y[(slice(None), *(slice(None, None, s) for s in strides), slice(None))]
    if bias is not None:
        y = y + bias
    return _from_channels_last(y, n, channels_last, unbatched)


@lowers("conv_transpose")
def conv_transpose(x, kernel, bias=None, /, *, strides, padding, dilation, groups=1, channels_last=False):
    n = len(strides)
    x, unbatched = _to_channels_last(x, n, channels_last)
    kernel = ops.swapaxes(kernel, n, n + 1)  # (*k, out/groups, in): Keras's transposed-conv layout
    xs = ops.split(x, groups, axis=-1) if groups > 1 else [x]
    kernels = ops.split(kernel, groups, axis=-1) if groups > 1 else [kernel]
    ys = [
        ops.conv_transpose(
            xg, kg, strides=tuple(strides), padding="valid", output_padding=0, dilation_rate=tuple(dilation)
        )
        for xg, kg in zip(xs, kernels)
    ]
    y = ops.concatenate(ys, axis=-1) if groups > 1 else ys[0]
    y = _pad_or_crop(y, [(-lo, -hi) for lo, hi in padding])
    if bias is not None:
        y = y + bias
    return _from_channels_last(y, n, channels_last, unbatched)
