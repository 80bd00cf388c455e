"""Keras lowerings: batch, layer, group and RMS norms, weight normalization.

Written as the JAX lowerings are (``keras.ops`` has no norm functions of the
ops' semantics): half-precision inputs normalized in float32 and cast back,
two-pass moments (biased variance), ``x * alpha + beta`` with ``alpha =
scale / sqrt(var + eps)`` as torch's kernels compute it; statistics
(``return_stats``) in the dtypes the ops give them.
"""

from __future__ import annotations

from keras import ops

from unigraph.backends.keras_ops import lowers


def _compute_dtype(dtype: str) -> str:
    """float32 for half floats, else ``dtype`` (torch's "opmath" type)."""
    return "float32" if dtype in ("float16", "bfloat16") else dtype


def _moments(x, axes):
    """Mean and biased variance over ``axes``, kept as size-1 dims (two passes)."""
    mean = ops.mean(x, axis=axes, keepdims=True)
    return mean, ops.mean(ops.square(x - mean), axis=axes, keepdims=True)


def _inverse_std(var, epsilon: float):
    return 1 / ops.sqrt(var + epsilon)


def _affine(x, rstd, mean, scale, bias):
    """``(x - mean) * rstd * scale + bias`` as torch computes it: ``x * alpha + beta``."""
    alpha = rstd if scale is None else rstd * scale
    beta = -mean * alpha if bias is None else bias - mean * alpha
    return x * alpha + beta


@lowers("batch_norm")
def batch_norm(x, scale=None, bias=None, mean=None, var=None, /, *, epsilon, axis=1, return_stats=False):
    dtype = ops.dtype(x)
    acc = _compute_dtype(dtype)
    rank = len(x.shape)
    axis = axis % rank
    xf = ops.cast(x, acc)

    def per_channel(v):
        return None if v is None else ops.reshape(ops.cast(v, acc), [-1 if a == axis else 1 for a in range(rank)])

    if mean is None:  # the input's own statistics
        mean_b, var_b = _moments(xf, tuple(a for a in range(rank) if a != axis))
    else:
        mean_b, var_b = per_channel(mean), per_channel(var)
    rstd_b = _inverse_std(var_b, epsilon)
    y = ops.cast(_affine(xf, rstd_b, mean_b, per_channel(scale), per_channel(bias)), dtype)
    if not return_stats:
        return y
    return y, ops.cast(ops.reshape(mean_b, (-1,)), dtype), ops.cast(ops.reshape(rstd_b, (-1,)), dtype)


def _along(v, axes, rank: int, dtype: str):
    """A parameter shaped like ``x`` at ``axes``, reshaped to broadcast against rank ``rank``."""
    if v is None:
        return None
    shape = [1] * rank
    for a, d in zip(axes, ops.shape(v)):
        shape[a] = d
    return ops.reshape(ops.cast(v, dtype), shape)


@lowers("layer_norm")
def layer_norm(x, scale=None, bias=None, /, *, axes, epsilon, return_stats=False):
    dtype = ops.dtype(x)
    rank = len(x.shape)
    axes = tuple(sorted(a % rank for a in axes))
    acc = _compute_dtype(dtype)
    xf = ops.cast(x, acc)
    mean, var = _moments(xf, axes)
    rstd = _inverse_std(var, epsilon)
    y = xf * rstd - mean * rstd
    if scale is not None:
        y = y * _along(scale, axes, rank, acc)
    if bias is not None:
        y = y + _along(bias, axes, rank, acc)
    y = ops.cast(y, dtype)
    return (y, ops.cast(mean, dtype), ops.cast(rstd, dtype)) if return_stats else y


@lowers("group_norm")
def group_norm(x, scale=None, bias=None, /, *, groups, epsilon, channels_last=False, return_stats=False):
    dtype = ops.dtype(x)
    acc = _compute_dtype(dtype)
    rank = len(x.shape)
    channel = rank - 1 if channels_last else 1
    shape = list(ops.shape(x))
    grouped_shape = [*shape[:channel], groups, shape[channel] // groups, *shape[channel + 1 :]]
    grouped = ops.reshape(ops.cast(x, acc), grouped_shape)
    reduced = tuple(a for a in range(1, rank + 1) if a != channel)
    mean, var = _moments(grouped, reduced)
    rstd = _inverse_std(var, epsilon)
    split = [1] * (rank + 1)
    split[channel], split[channel + 1] = groups, -1
    scale, bias = (None if v is None else ops.reshape(ops.cast(v, acc), split) for v in (scale, bias))
    y = ops.cast(ops.reshape(_affine(grouped, rstd, mean, scale, bias), shape), dtype)
    if not return_stats:
        return y
    stats_shape = (shape[0], groups)
    return y, ops.cast(ops.reshape(mean, stats_shape), dtype), ops.cast(ops.reshape(rstd, stats_shape), dtype)


@lowers("rms_norm")
def rms_norm(x, scale=None, /, *, axes, epsilon, return_stats=False):
    dtype = ops.dtype(x)
    rank = len(x.shape)
    axes = tuple(sorted(a % rank for a in axes))
    acc = _compute_dtype(dtype)
    xf = ops.cast(x, acc)
    rstd = 1 / ops.sqrt(ops.mean(ops.square(xf), axis=axes, keepdims=True) + epsilon)
    y = xf * rstd
    if scale is not None:
        y = y * _along(scale, axes, rank, acc)
    y = ops.cast(y, dtype)
    return (y, rstd) if return_stats else y


@lowers("weight_norm")
def weight_norm(v, g, /, *, axis=0, return_norm=False):
    rank = len(v.shape)
    axes = tuple(a for a in range(rank) if axis is None or a != axis % rank)
    squares = ops.square(ops.cast(v, _compute_dtype(ops.dtype(v))))
    norm = ops.sqrt(ops.sum(squares, axis=axes, keepdims=True) if axes else squares)
    w = ops.multiply(v, ops.divide(g, ops.cast(norm, ops.dtype(g))))  # JAX's promotion where v and g differ
    if not return_norm:
        return w
    return w, ops.cast(norm, "float32" if ops.dtype(g) == "bfloat16" else ops.dtype(v))
