"""Keras lowerings: ``resize`` (nearest, linear and cubic interpolation, antialiased or not, as torch resamples).

The tap tables are the op's own (``unigraph.ops.resize``: computed in NumPy
float32 at trace time, exactly as torch's CPU kernels compute them; spatial
sizes are static), so both lowerings resample with the same indices and
weights: each spatial dim in turn, the last first, by a gather of constant
indices and, for the interpolating modes, a weighted sum of the taps.
Interpolation runs in float32 for half inputs. (``keras.ops.image.resize``'s
antialiasing is TensorFlow's, whose coordinates and scales are not torch's.)
"""

from __future__ import annotations

import numpy as np
from keras import ops

from unigraph.backends.keras_ops import lowers
from unigraph.ops.conv import layout_axes
from unigraph.ops.resize import _taps


def _gather(x, axis: int, index: np.ndarray):
    """``x`` indexed along ``axis`` by ``index``; a repeat when that is what the index is."""
    size, out = x.shape[axis], index.size
    if out % size == 0 and np.array_equal(index, np.arange(out) // (out // size)):
        return x if out == size else ops.repeat(x, out // size, axis=axis)
    return ops.take(x, index.astype(np.int32), axis=axis)


def _resample_axis(x, axis: int, taps: np.ndarray, weights: np.ndarray | None):
    if weights is None:
        return _gather(x, axis, taps[:, 0])
    out, k = taps.shape
    shape = ops.shape(x)
    gathered = ops.take(x, taps.reshape(-1).astype(np.int32), axis=axis)
    gathered = ops.reshape(gathered, (*shape[:axis], out, k, *shape[axis + 1 :]))
    weights = weights.reshape(*(1,) * axis, out, k, *(1,) * (len(shape) - axis - 1))
    return ops.sum(gathered * ops.convert_to_tensor(weights, ops.dtype(x)), axis=axis + 1)


@lowers("resize")
def resize(x, /, *, sizes, method, align_corners=False, scales=None, channels_last=False, antialias=False):
    n = len(sizes)
    axes = layout_axes(len(x.shape), n, channels_last)[1]
    scales = scales or (None,) * n
    dtype = ops.dtype(x)
    half = dtype in ("float16", "bfloat16")
    y = x if method.startswith("nearest") or not half else ops.cast(x, "float32")
    for axis, out, scale in reversed(list(zip(axes, sizes, scales))):
        size = int(x.shape[axis])
        y = _resample_axis(y, axis, *_taps(method, size, out, align_corners, scale, n, antialias))
    return y if ops.dtype(y) == dtype else ops.cast(y, dtype)
