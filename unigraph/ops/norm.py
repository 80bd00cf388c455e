"""Normalization: batch, layer, group and RMS norms, and weight normalization.

Half-precision inputs (float16, bfloat16) are normalized in float32 and the
result is returned in the input's dtype, as torch computes them. Norms are
written as torch's kernels write them (``x * alpha + beta`` with
``alpha = scale / sqrt(var + eps)``), so float32 results agree to rounding.
Ops that can return their statistics (``return_stats``) return those they
computed the result with, in the dtypes torch gives them, at no extra cost.
"""

from __future__ import annotations

import jax.numpy as jnp

from unigraph.ops.conv import channel_vector
from unigraph.ops.registry import op


def compute_dtype(dtype):
    """The dtype torch computes in for ``dtype`` (its "opmath" type): float32 for half floats, else ``dtype``."""
    return jnp.float32 if jnp.dtype(dtype) in (jnp.float16, jnp.bfloat16) else dtype


def _moments(x, axes):
    """Mean and biased variance over ``axes``, kept as size-1 dims (two passes, as stable as Welford)."""
    mean = jnp.mean(x, axis=axes, keepdims=True)
    return mean, jnp.mean(jnp.square(x - mean), axis=axes, keepdims=True)


def _inverse_std(var, epsilon: float):
    return 1 / jnp.sqrt(var + epsilon)


def _affine(x, rstd, mean, scale, bias):
    """``(x - mean) * rstd * scale + bias`` as torch computes it: ``x * alpha + beta``."""
    alpha = rstd if scale is None else rstd * scale
    beta = -mean * alpha if bias is None else bias - mean * alpha
    return x * alpha + beta


@op("batch_norm")
def batch_norm(
    x,
    scale=None,
    bias=None,
    mean=None,
    var=None,
    /,
    *,
    epsilon: float,
    axis: int = 1,
    return_stats: bool = False,
):
    """Per-channel normalization: ``(x - mean) / sqrt(var + epsilon) * scale + bias`` along ``axis``.

    ``scale``, ``bias``, ``mean`` and ``var`` are ``(C,)`` and each may be
    absent. Without ``mean`` and ``var`` the statistics are the input's own,
    over every other axis (biased variance: batch norm in training mode,
    without the running-average update). With ``return_stats`` also returns
    the mean and ``1/sqrt(var + epsilon)`` used, ``(C,)``.
    """
    acc = compute_dtype(x.dtype)
    xf = x.astype(acc)
    axis = axis % x.ndim

    def per_channel(v):
        return None if v is None else channel_vector(v.astype(acc), x.ndim, axis)

    if mean is None:
        mean_b, var_b = _moments(xf, tuple(a for a in range(x.ndim) if a != axis))
    else:
        mean_b, var_b = per_channel(mean), per_channel(var)
    rstd_b = _inverse_std(var_b, epsilon)
    y = _affine(xf, rstd_b, mean_b, per_channel(scale), per_channel(bias)).astype(x.dtype)
    if not return_stats:
        return y
    return y, jnp.ravel(mean_b).astype(x.dtype), jnp.ravel(rstd_b).astype(x.dtype)


def _along(v, axes: tuple[int, ...], ndim: int, dtype):
    """A parameter shaped like ``x`` at ``axes``, reshaped to broadcast against rank ``ndim``."""
    if v is None:
        return None
    shape = [1] * ndim
    for a, d in zip(axes, v.shape):
        shape[a] = d
    return jnp.reshape(v.astype(dtype), shape)


@op("layer_norm")
def layer_norm(
    x, scale=None, bias=None, /, *, axes: tuple[int, ...], epsilon: float, return_stats: bool = False
):
    """Normalization over ``axes`` (torch: the trailing ``normalized_shape``): ``(x - mean) / sqrt(var + eps) * scale + bias``.

    ``scale`` and ``bias`` have the shape of ``x`` at ``axes``. With
    ``return_stats`` also returns the mean and ``1/sqrt(var + eps)``, with
    ``axes`` kept as size-1 dims.
    """
    axes = tuple(sorted(a % x.ndim for a in axes))
    acc = compute_dtype(x.dtype)
    xf = x.astype(acc)
    mean, var = _moments(xf, axes)
    rstd = _inverse_std(var, epsilon)
    y = xf * rstd - mean * rstd
    if scale is not None:
        y = y * _along(scale, axes, x.ndim, acc)
    if bias is not None:
        y = y + _along(bias, axes, x.ndim, acc)
    y = y.astype(x.dtype)
    return (y, mean.astype(x.dtype), rstd.astype(x.dtype)) if return_stats else y


@op("group_norm")
def group_norm(
    x,
    scale=None,
    bias=None,
    /,
    *,
    groups: int,
    epsilon: float,
    channels_last: bool = False,
    return_stats: bool = False,
):
    """Normalization over each group of ``C/groups`` channels and all spatial positions, per sample.

    ``x`` is ``(N, C, *spatial)`` (or ``(N, *spatial, C)``); ``scale`` and
    ``bias`` are per channel ``(C,)``. ``groups == C`` is instance norm. With
    ``return_stats`` also returns the mean and ``1/sqrt(var + eps)``, ``(N, groups)``.
    """
    acc = compute_dtype(x.dtype)
    channel = x.ndim - 1 if channels_last else 1
    c = x.shape[channel]
    grouped = jnp.reshape(x.astype(acc), (*x.shape[:channel], groups, c // groups, *x.shape[channel + 1 :]))
    reduced = tuple(a for a in range(1, grouped.ndim) if a != channel)
    mean, var = _moments(grouped, reduced)
    rstd = _inverse_std(var, epsilon)
    scale, bias = (
        None if v is None else jnp.reshape(v.astype(acc), _split(grouped.shape, channel)) for v in (scale, bias)
    )
    y = jnp.reshape(_affine(grouped, rstd, mean, scale, bias), x.shape).astype(x.dtype)
    if not return_stats:
        return y
    stats_shape = (x.shape[0], groups)
    return y, jnp.reshape(mean, stats_shape).astype(x.dtype), jnp.reshape(rstd, stats_shape).astype(x.dtype)


def _split(grouped_shape, channel: int) -> tuple:
    """The shape of a per-channel ``(C,)`` vector broadcasting against ``x`` split into ``(groups, C/groups)``."""
    out = [1] * len(grouped_shape)
    out[channel], out[channel + 1] = grouped_shape[channel], grouped_shape[channel + 1]
    return tuple(out)


@op("rms_norm")
def rms_norm(x, scale=None, /, *, axes: tuple[int, ...], epsilon: float, return_stats: bool = False):
    """``x / sqrt(mean(x**2 over axes) + epsilon) * scale`` (torch ``rms_norm``), ``scale`` shaped like ``x`` at ``axes``.

    With ``return_stats`` also returns ``1/sqrt(mean(x**2) + epsilon)`` with
    ``axes`` kept, in the compute dtype (float32 for half inputs), as torch's
    ``_fused_rms_norm`` does.
    """
    axes = tuple(sorted(a % x.ndim for a in axes))
    acc = compute_dtype(x.dtype)
    xf = x.astype(acc)
    rstd = 1 / jnp.sqrt(jnp.mean(jnp.square(xf), axis=axes, keepdims=True) + epsilon)
    y = xf * rstd
    if scale is not None:
        y = y * _along(scale, axes, x.ndim, acc)
    y = y.astype(x.dtype)
    return (y, rstd) if return_stats else y


@op("weight_norm")
def weight_norm(v, g, /, *, axis: int | None = 0, return_norm: bool = False):
    """The reparametrized weight ``v * (g / ||v||)`` (torch ``_weight_norm``).

    The L2 norm is over every axis of ``v`` except ``axis`` (over all of
    ``v`` when ``axis`` is None), kept as size-1 dims; ``g`` broadcasts
    against it. With ``return_norm`` also returns the norm (float32 when ``g``
    is bfloat16, else ``v``'s dtype, as torch's ``_weight_norm_interface``).
    """
    axes = tuple(a for a in range(v.ndim) if axis is None or a != axis % v.ndim)
    norm = jnp.sqrt(jnp.sum(jnp.square(v.astype(compute_dtype(v.dtype))), axis=axes, keepdims=True))
    w = v * (g / norm.astype(g.dtype))
    if not return_norm:
        return w
    return w, norm.astype(jnp.float32 if g.dtype == jnp.bfloat16 else v.dtype)
