"""Resizing with torch's coordinate rules: nearest, nearest-exact, (bi/tri)linear and bicubic, antialiased or not.

``jax.image.resize`` follows TensorFlow's half-pixel rules and antialiases
when downsampling, so it does not match torch's ``align_corners`` or its use of
a given scale factor. Here each spatial dim is resampled separately with
index and weight tables computed at trace time in float32, exactly as torch's
CPU kernels compute them; applying them is a gather and, for the
interpolating modes, a weighted sum of the taps (the last dim first, in torch's
order), so XLA sees constant gathers and elementwise math only.

Antialiased resizing (torch's ``_upsample_bilinear2d_aa``/``_upsample_bicubic2d_aa``,
Pillow's filters) takes every input position within the filter's support, which
widens with the downscale factor, and normalizes each output's weights to sum
to one; it is the same gather and weighted sum with more taps.
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
_CUBIC_A_ANTIALIAS = -0.5  # torch's antialiased bicubic takes Pillow's filter, not its plain bicubic's
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


def _area_scale(size: int, out: int, align_corners: bool, scale: float | None) -> np.float32:
    """torch's ``area_pixel_compute_scale``: input positions per output position."""
    if align_corners:
        return _f32(size - 1) / _f32(out - 1) if out > 1 else _f32(0)
    return _inverse_scale(size, out, scale)


def _fma(a, b, c) -> np.ndarray:
    """``a * b + c`` rounded once to float32: the float64 product of float32 values is exact."""
    return (np.float64(a) * np.float64(b) + np.float64(c)).astype(_f32)


def _antialias_filter(method: str, x: np.ndarray) -> np.ndarray:
    """torch's ``aa_filter``: the triangle (linear) or Keys' cubic with A = -0.5, in float32.

    torch's x86 builds contract the cubic's polynomials into fused
    multiply-adds; evaluated the same way, the weights are torch's bit for bit
    (checked with torch 2.14).
    """
    x = np.abs(x)
    if method == "linear":
        return np.where(x < 1, 1 - x, _f32(0))
    a = _f32(_CUBIC_A_ANTIALIAS)
    near = _fma(_fma(a + 2, x, -(a + 3)) * x, x, 1)  # ((a + 2) x - (a + 3)) x x + 1
    far = _fma(_fma(_fma(a, x, -5 * a), x, 8 * a), x, -4 * a)  # ((a x - 5a) x + 8a) x - 4a
    return np.where(x < 1, near, np.where(x < 2, far, _f32(0)))


def _antialias(method: str, size: int, out: int, align_corners: bool, scale: float | None):
    """The taps and weights of torch's antialiased kernels (``_compute_indices_min_size_weights_aa``).

    Output ``i`` is centered at ``s * (i + 0.5)`` in input pixels (``s`` the
    scale); the filter (support 1 linear, 2 cubic) is stretched by ``s`` when
    downsampling; the taps are the inputs within it, their weights divided by
    their sum, at most ``2 * ceil(support) + 1`` of them, as torch clips a
    count that rounding lengthens. Rows with fewer taps than the widest are
    padded with weight 0.
    The arithmetic follows torch's float32 code, with its float64
    intermediates where C++ promotes (the ``+ 0.5`` terms).
    """
    s = _area_scale(size, out, align_corners, scale)
    support = _f32(2 if method == "linear" else 4) * _f32(0.5)
    support, invscale = (support * s, _f32(1.0 / np.float64(s))) if s >= 1 else (support, _f32(1))
    center = (np.float64(s) * (np.arange(out) + 0.5)).astype(_f32)
    first = np.maximum(np.trunc((center - support).astype(np.float64) + 0.5).astype(np.int64), 0)
    count = np.minimum(np.trunc((center + support).astype(np.float64) + 0.5).astype(np.int64), size) - first
    count = np.clip(count, 0, 2 * int(np.ceil(support)) + 1)
    taps = first[:, None] + np.arange(max(int(count.max()), 1))[None, :]
    offset = ((taps.astype(_f32) - center[:, None]).astype(np.float64) + 0.5) * np.float64(invscale)
    inside = np.arange(taps.shape[1])[None, :] < count[:, None]
    weights = np.where(inside, _antialias_filter(method, offset.astype(_f32)), _f32(0)).astype(_f32)
    total = np.add.accumulate(weights, axis=1, dtype=_f32)[:, -1:]  # summed in order, as torch does
    weights = np.where(total != 0, weights / np.where(total != 0, total, _f32(1)), weights).astype(_f32)
    return np.minimum(taps, size - 1), weights


def _taps(method: str, size: int, out: int, align_corners: bool, scale: float | None, spatial: int, antialias: bool = False):
    """``(out, k)`` input positions and float32 weights (None for nearest) resampling one dim.

    Antialiased, a dim whose size does not change is copied, whatever the
    scale, as torch's kernels do.
    """
    if antialias:
        if out == size:
            return np.arange(size)[:, None], None
        return _antialias(method, size, out, align_corners, scale)
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
    antialias: bool = False,
):
    """``x`` resampled to ``sizes`` in its spatial dims, with torch's ``interpolate`` coordinates.

    ``x`` is ``(N, C, *spatial)`` (or ``(N, *spatial, C)``). ``scales`` are
    the scale factors the caller gave per dim (output/input), which torch uses
    for the coordinate mapping instead of ``out/in`` (None: not given);
    ``align_corners`` maps corner centers to corner centers (linear and cubic
    only); ``antialias`` low-pass filters when downsampling (linear and cubic
    only, torch's ``antialias=True``). Interpolation runs in float32 for half
    inputs.
    """
    if antialias and method not in ("linear", "cubic"):
        raise ValueError(f"antialiased resizing takes method 'linear' or 'cubic', not {method!r}")
    n = len(sizes)
    axes = layout_axes(x.ndim, n, channels_last)[1]
    scales = scales or (None,) * n
    y = x if method.startswith("nearest") else x.astype(compute_dtype(x.dtype))
    for axis, out, scale in reversed(list(zip(axes, sizes, scales))):
        size = int(x.shape[axis])
        y = _resample_axis(y, axis, *_taps(method, size, out, align_corners, scale, n, antialias))
    return y.astype(x.dtype)
