"""ATen normalization in eval mode: batch, instance, layer, group and RMS norm, weight norm.

Norm weights are claimed as ``scale``, biases as ``bias``, running statistics
as ``mean``/``var`` (buffers, so they land in ``batch_stats``). Batch norm
without running statistics (or in training mode) normalizes with the input's
own statistics and never updates running averages.
"""

from __future__ import annotations

import numpy as np
import torch

from unigraph.dtypes import numpy_dtype
from unigraph.frontends.torch_ops import aten, handles
from unigraph.frontends.builder import Builder, TensorRef
from unigraph.frontends.torch_ops.common import torch_dtype


def _claim(b: Builder, t: TensorRef | None, role: str) -> TensorRef | None:
    return None if t is None else b.weight(t, role)


def _batch_norm(b: Builder, x, weight, bias, mean, var, eps, *, return_stats: bool = False):
    """A ``batch_norm`` node; without ``mean``/``var``, with the input's statistics."""
    return b.emit(
        "batch_norm",
        x,
        _claim(b, weight, "scale"),
        _claim(b, bias, "bias"),
        _claim(b, mean, "mean"),
        _claim(b, var, "var"),
        n_out=3 if return_stats else 1,
        epsilon=float(eps),
        return_stats=return_stats,
    )


def _no_saved_stats(b: Builder, x: TensorRef) -> TensorRef:
    """The empty ``(0,)`` tensor eval-mode batch norm returns for its saved mean and invstd.

    One constant per dtype serves every batch norm of the graph.
    """
    dtype = numpy_dtype(x.dtype)
    for name, array in b.constants.items():
        if array.shape == (0,) and array.dtype == dtype:
            return TensorRef(name, b.types[name])
    return b.const_array(np.zeros((0,), dtype), hint="empty")


@handles(aten.batch_norm)
def batch_norm(b: Builder, input, weight, bias, running_mean, running_var, training, momentum, eps, cudnn_enabled):
    """aten::batch_norm(Tensor input, Tensor? weight, Tensor? bias, Tensor? running_mean, Tensor? running_var, bool training, float momentum, float eps, bool cudnn_enabled)."""
    if training or running_mean is None:
        return _batch_norm(b, input, weight, bias, None, None, eps)
    return _batch_norm(b, input, weight, bias, running_mean, running_var, eps)


@handles(aten.native_batch_norm.default, aten._native_batch_norm_legit.default)
def native_batch_norm(b: Builder, input, weight, bias, running_mean, running_var, training, momentum, eps):
    """aten::native_batch_norm(Tensor input, Tensor? weight, Tensor? bias, Tensor? running_mean, Tensor? running_var, bool training, float momentum, float eps) -> (Tensor, Tensor, Tensor)."""
    if training or running_mean is None:
        return _batch_norm(b, input, weight, bias, None, None, eps, return_stats=True)
    return no_training(b, input, weight, bias, running_mean, running_var, momentum, eps)


@handles(aten._native_batch_norm_legit_no_training.default)
def no_training(b: Builder, input, weight, bias, running_mean, running_var, momentum, eps):
    """aten::_native_batch_norm_legit_no_training(Tensor input, Tensor? weight, Tensor? bias, Tensor running_mean, Tensor running_var, float momentum, float eps) -> (Tensor, Tensor, Tensor)."""
    y = _batch_norm(b, input, weight, bias, running_mean, running_var, eps)
    return y, _no_saved_stats(b, input), _no_saved_stats(b, input)


@handles(aten._native_batch_norm_legit.no_stats)
def no_stats(b: Builder, input, weight, bias, training, momentum, eps):
    """aten::_native_batch_norm_legit.no_stats(Tensor input, Tensor? weight, Tensor? bias, bool training, float momentum, float eps) -> (Tensor, Tensor, Tensor)."""
    return _batch_norm(b, input, weight, bias, None, None, eps, return_stats=True)


@handles(aten.instance_norm)
def instance_norm(
    b: Builder, input, weight, bias, running_mean, running_var, use_input_stats, momentum, eps, cudnn_enabled
):
    """aten::instance_norm(Tensor input, Tensor? weight, Tensor? bias, Tensor? running_mean, Tensor? running_var, bool use_input_stats, float momentum, float eps, bool cudnn_enabled).

    With the input's statistics it is a group norm with one channel per
    group; otherwise a batch norm with the running statistics.
    """
    if not use_input_stats:
        return _batch_norm(b, input, weight, bias, running_mean, running_var, eps)
    channels = input.shape[1]
    return b.emit(
        "group_norm", input, _claim(b, weight, "scale"), _claim(b, bias, "bias"), groups=channels, epsilon=float(eps)
    )


def _trailing(x: TensorRef, normalized_shape) -> tuple[int, ...]:
    return tuple(range(x.rank - len(normalized_shape), x.rank))


@handles(aten.layer_norm)
def layer_norm(b: Builder, input, normalized_shape, weight=None, bias=None, eps=1e-5, cudnn_enable=True):
    """aten::layer_norm(Tensor input, SymInt[] normalized_shape, Tensor? weight=None, Tensor? bias=None, float eps=1e-05, bool cudnn_enable=True)."""
    return _layer_norm(b, input, normalized_shape, weight, bias, eps, return_stats=False)


@handles(aten.native_layer_norm)
def native_layer_norm(b: Builder, input, normalized_shape, weight, bias, eps):
    """aten::native_layer_norm(Tensor input, SymInt[] normalized_shape, Tensor? weight, Tensor? bias, float eps) -> (Tensor, Tensor, Tensor)."""
    return _layer_norm(b, input, normalized_shape, weight, bias, eps, return_stats=True)


def _layer_norm(b: Builder, x, normalized_shape, weight, bias, eps, *, return_stats: bool):
    return b.emit(
        "layer_norm",
        x,
        _claim(b, weight, "scale"),
        _claim(b, bias, "bias"),
        n_out=3 if return_stats else 1,
        axes=_trailing(x, normalized_shape),
        epsilon=float(eps),
        return_stats=return_stats,
    )


@handles(aten.group_norm)
def group_norm(b: Builder, input, num_groups, weight=None, bias=None, eps=1e-5, cudnn_enabled=True):
    """aten::group_norm(Tensor input, int num_groups, Tensor? weight=None, Tensor? bias=None, float eps=1e-05, bool cudnn_enabled=True)."""
    return _group_norm(b, input, weight, bias, num_groups, eps, return_stats=False)


@handles(aten.native_group_norm)
def native_group_norm(b: Builder, input, weight, bias, N, C, HxW, group, eps):
    """aten::native_group_norm(Tensor input, Tensor? weight, Tensor? bias, SymInt N, SymInt C, SymInt HxW, int group, float eps) -> (Tensor, Tensor, Tensor)."""
    return _group_norm(b, input, weight, bias, group, eps, return_stats=True)


def _group_norm(b: Builder, x, weight, bias, groups, eps, *, return_stats: bool):
    return b.emit(
        "group_norm",
        x,
        _claim(b, weight, "scale"),
        _claim(b, bias, "bias"),
        n_out=3 if return_stats else 1,
        groups=groups,
        epsilon=float(eps),
        return_stats=return_stats,
    )


def _rms_epsilon(x: TensorRef, eps) -> float:
    """torch's default: the machine epsilon of the compute dtype (float32 for half floats)."""
    if eps is not None:
        return float(eps)
    dtype = torch_dtype(x.dtype)
    return torch.finfo(torch.float64 if dtype == torch.float64 else torch.float32).eps


@handles(aten.rms_norm)
def rms_norm(b: Builder, input, normalized_shape, weight=None, eps=None):
    """aten::rms_norm(Tensor input, SymInt[] normalized_shape, Tensor? weight=None, float? eps=None)."""
    return b.emit(
        "rms_norm",
        input,
        _claim(b, weight, "scale"),
        axes=_trailing(input, normalized_shape),
        epsilon=_rms_epsilon(input, eps),
    )


@handles(aten._fused_rms_norm)
def fused_rms_norm(b: Builder, input, normalized_shape, weight, eps):
    """aten::_fused_rms_norm(Tensor input, int[] normalized_shape, Tensor? weight, float? eps) -> (Tensor, Tensor)."""
    return b.emit(
        "rms_norm",
        input,
        _claim(b, weight, "scale"),
        n_out=2,
        axes=_trailing(input, normalized_shape),
        epsilon=_rms_epsilon(input, eps),
        return_stats=True,
    )


@handles(aten._weight_norm)
def weight_norm(b: Builder, v, g, dim=0):
    """aten::_weight_norm(Tensor v, Tensor g, int dim=0): ``v * (g / ||v||)``, the norm over all dims but ``dim`` (all if -1)."""
    return b.emit("weight_norm", v, g, axis=None if dim == -1 else dim)


@handles(aten._weight_norm_interface)
def weight_norm_interface(b: Builder, v, g, dim=0):
    """aten::_weight_norm_interface(Tensor v, Tensor g, int dim=0) -> (Tensor, Tensor): the weight and the norm."""
    return b.emit("weight_norm", v, g, n_out=2, axis=None if dim == -1 else dim, return_norm=True)
