"""Resizing with torch's coordinate rules: nearest, nearest-exact, (bi/tri)linear and bicubic.

``jax.image.resize`` follows TensorFlow's half-pixel rules and antialiases
when downsampling, so it does not match torch's ``align_corners`` or its use of
a given scale factor. Here each spatial dim is resampled separately with
index and weight tables computed at trace time in float32, exactly as torch's
CPU kernels compute them; applying them is a gather and, for the
interpolating modes, a weighted sum of the taps (the last dim first, in torch's
order), so XLA sees constant gathers and elementwise math only.
"""

from __future__ import annotations

from typing import Literal

import jax.numpy as jnp
import numpy as np

from unigraph.ops.conv import layout_axes
from unigraph.ops.norm import compute_dtype
from unigraph.ops.registry import op

Method = Literal["nearest", "nearest_exact", "linear", "cubic"]
_CUBIC_A = -0.75
_f32 = np.float32


def _inverse_scale(size: int, out: int, scale: float | None) -> np.float32:
    """torch's ``compute_scales_value``: ``1/scale`` when a scale factor was given, else ``size/out``."""
    if scale is not None and scale > 0:
        return _f32(1.0 / scale)
    return _f32(size) / _f32(out)


def _source(size: int, out: int, align_corners: bool, scale: float | None) -> np.ndarray:
    """The float32 source coordinate of each output position (torch's ``area_pixel_compute_source_index``, unclamped)."""
    dst = np.arange(out).astype(_f32)
    if align_corners:
        step = _f32(size - 1) / _f32(out - 1) if out > 1 else _f32(0)
        return step * dst
    return _inverse_scale(size, out, scale) * (dst + _f32(0.5)) - _f32(0.5)


def _nearest(size: int, out: int, scale: float | None, exact: bool, shortcuts: bool) -> np.ndarray:
    """torch's ``nearest_idx`` (legacy: ``floor(dst*s)``) or ``nearest_exact_idx``.

    torch's 2-d legacy kernel takes two shortcuts (same size: copy; twice the
    size: ``dst >> 1``) that its 1-d and 3-d kernels do not, whatever the scale.
    """
    dst = np.arange(out)
    if shortcuts and not exact and out == size:
        return dst
    if shortcuts and not exact and out == 2 * size:
        return dst >> 1
    position = dst.astype(_f32) + (_f32(0.5) if exact else _f32(0))
    return np.minimum(np.floor(position * _inverse_scale(size, out, scale)).astype(np.int64), size - 1)


def _linear(size: int, out: int, align_corners: bool, scale: float | None):
    """Two taps per output and their weights (torch's ``compute_indices_weights_linear``).

    A dim whose size does not change is copied, whatever the scale, as torch's kernels do.
    """
    if out == size:
        index = np.arange(size)
        return np.stack([index, index], axis=1), np.stack([np.ones(size, _f32), np.zeros(size, _f32)], axis=1)
    src = np.maximum(_source(size, out, align_corners, scale), _f32(0))
    lo = np.minimum(np.floor(src).astype(np.int64), size - 1)
    frac = np.clip(src - lo.astype(_f32), _f32(0), _f32(1))
    hi = lo + (lo < size - 1)
    return np.stack([lo, hi], axis=1), np.stack([_f32(1) - frac, frac], axis=1)


def _cubic(size: int, out: int, align_corners: bool, scale: float | None):
    """Four taps per output, clamped to the edge, with Keys' weights for A = -0.75 (torch's bicubic)."""
    src = _source(size, out, align_corners, scale)
    base = np.floor(src)
    t = src - base
    a = _f32(_CUBIC_A)

    def near(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    rest = 1 - t
    weights = np.stack([far(t + 1), near(t), near(rest), far(rest + 1)], axis=1).astype(_f32)
    taps = base.astype(np.int64)[:, None] + np.arange(-1, 3)[None, :]
    return np.clip(taps, 0, size - 1), weights


def _taps(method: str, size: int, out: int, align_corners: bool, scale: float | None, spatial: int):
    """``(out, k)`` input positions and float32 weights (None for nearest) resampling one dim."""
    if method in ("nearest", "nearest_exact"):
        return _nearest(size, out, scale, method == "nearest_exact", spatial == 2)[:, None], None
    if method == "linear":
        return _linear(size, out, align_corners, scale)
    return _cubic(size, out, align_corners, scale)


def _gather(x, axis: int, index: np.ndarray):
    """``x`` indexed along ``axis`` by ``index``; a repeat when that is what the index is."""
    size, out = x.shape[axis], index.size
    if out % size == 0 and np.array_equal(index, np.arange(out) // (out // size)):
        return jnp.repeat(x, out // size, axis=axis, total_repeat_length=out)
    return jnp.take(x, index, axis=axis)


def _resample_axis(x, axis: int, taps: np.ndarray, weights: np.ndarray | None):
    if weights is None:
        return _gather(x, axis, taps[:, 0])
    out, k = taps.shape
    gathered = jnp.take(x, taps.reshape(-1), axis=axis)
    gathered = jnp.reshape(gathered, (*x.shape[:axis], out, k, *x.shape[axis + 1 :]))
    weights = weights.reshape(*(1,) * axis, out, k, *(1,) * (x.ndim - axis - 1)).astype(x.dtype)
    return jnp.sum(gathered * weights, axis=axis + 1)


@op("resize")
def resize(
    x,
    /,
    *,
    sizes: tuple[int, ...],
    method: Method,
    align_corners: bool = False,
    scales: tuple[float | None, ...] | None = None,
    channels_last: bool = False,
):
    """``x`` resampled to ``sizes`` in its spatial dims, with torch's ``interpolate`` coordinates.

    ``x`` is ``(N, C, *spatial)`` (or ``(N, *spatial, C)``). ``scales`` are
    the scale factors the caller gave per dim (output/input), which torch uses
    for the coordinate mapping instead of ``out/in`` (None: not given);
    ``align_corners`` maps corner centers to corner centers (linear and cubic
    only). Interpolation runs in float32 for half inputs.
    """
    n = len(sizes)
    axes = layout_axes(x.ndim, n, channels_last)[1]
    scales = scales or (None,) * n
    y = x if method.startswith("nearest") else x.astype(compute_dtype(x.dtype))
    for axis, out, scale in reversed(list(zip(axes, sizes, scales))):
        size = int(x.shape[axis])
        y = _resample_axis(y, axis, *_taps(method, size, out, align_corners, scale, n))
    return y.astype(x.dtype)
