"""ATen pooling: max_poolNd (with indices), avg_poolNd, adaptive average and max pools.

torch pads symmetrically; the unigraph ops take ``(lo, hi)`` pairs and keep
``ceil_mode`` as an attribute, since the extra end padding it implies depends
on the input size. Indices are flat positions in the input's spatial dims,
as torch returns them.
"""

from __future__ import annotations

import functools

from unigraph.frontends.torch_ops import aten, handles
from unigraph.frontends.builder import Builder
from unigraph.frontends.torch_ops.conv import expand


def _per_rank(*packets):
    """Registers ``fn(b, ..., n=k)`` for the k-d op of each of ``packets`` (1-d, 2-d, 3-d; ``None``: no such op)."""

    def register(fn):
        for n, packet in enumerate(packets, start=1):
            if packet is not None:
                handles(packet)(functools.partial(fn, n=n))
        return fn

    return register


def _window(kernel_size, stride, n: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The window and strides; torch's empty ``stride`` means the window size."""
    window = expand(kernel_size, n)
    return window, expand(stride, n) if stride else window


def _max_pool(b: Builder, x, kernel_size, stride, padding, dilation, ceil_mode, n: int, return_indices: bool):
    window, strides = _window(kernel_size, stride, n)
    return b.emit(
        "max_pool",
        x,
        n_out=2 if return_indices else 1,
        window=window,
        strides=strides,
        padding=tuple((p, p) for p in expand(padding, n)),
        dilation=expand(dilation, n),
        ceil_mode=bool(ceil_mode),
        return_indices=return_indices,
    )


@_per_rank(aten.max_pool1d, aten.max_pool2d, aten.max_pool3d)
def max_pool(b: Builder, x, kernel_size, stride=(), padding=0, dilation=1, ceil_mode=False, *, n: int):
    """aten::max_pool2d(Tensor self, int[2] kernel_size, int[2] stride=[], int[2] padding=0, int[2] dilation=1, bool ceil_mode=False)."""
    return _max_pool(b, x, kernel_size, stride, padding, dilation, ceil_mode, n, return_indices=False)


@_per_rank(aten.max_pool1d_with_indices, aten.max_pool2d_with_indices, aten.max_pool3d_with_indices)
def max_pool_with_indices(b: Builder, x, kernel_size, stride=(), padding=0, dilation=1, ceil_mode=False, *, n: int):
    """aten::max_pool2d_with_indices(Tensor self, int[2] kernel_size, int[2] stride=[], int[2] padding=0, int[2] dilation=1, bool ceil_mode=False) -> (Tensor, Tensor)."""
    return _max_pool(b, x, kernel_size, stride, padding, dilation, ceil_mode, n, return_indices=True)


@_per_rank(aten.avg_pool1d, aten.avg_pool2d, aten.avg_pool3d)
def avg_pool(
    b: Builder,
    x,
    kernel_size,
    stride=(),
    padding=0,
    ceil_mode=False,
    count_include_pad=True,
    divisor_override=None,
    *,
    n: int,
):
    """aten::avg_pool2d(Tensor self, int[2] kernel_size, int[2] stride=[], int[2] padding=0, bool ceil_mode=False, bool count_include_pad=True, int? divisor_override=None)."""
    window, strides = _window(kernel_size, stride, n)
    return b.emit(
        "avg_pool",
        x,
        window=window,
        strides=strides,
        padding=tuple((p, p) for p in expand(padding, n)),
        ceil_mode=bool(ceil_mode),
        count_include_pad=bool(count_include_pad),
        divisor_override=divisor_override,
    )


def _output_size(x, output_size, n: int) -> tuple[int, ...]:
    """The static output size; dynamic input sizes are supported when pooling to 1."""
    size = expand(output_size, n)
    if any(o != 1 for o in size) and not all(isinstance(d, int) for d in x.shape[-n:]):
        raise NotImplementedError(
            f"adaptive pooling of dynamic spatial dims {list(x.shape[-n:])} to {list(size)} (only to 1)"
        )
    return size


@_per_rank(aten.adaptive_avg_pool1d, aten.adaptive_avg_pool2d, aten.adaptive_avg_pool3d)
@_per_rank(None, aten._adaptive_avg_pool2d, aten._adaptive_avg_pool3d)
def adaptive_avg_pool(b: Builder, x, output_size, *, n: int):
    """aten::adaptive_avg_pool2d(Tensor self, SymInt[2] output_size)."""
    return b.emit("adaptive_avg_pool", x, output_size=_output_size(x, output_size, n))


@_per_rank(aten.adaptive_max_pool1d, aten.adaptive_max_pool2d, aten.adaptive_max_pool3d)
def adaptive_max_pool(b: Builder, x, output_size, *, n: int):
    """aten::adaptive_max_pool2d(Tensor self, int[2] output_size) -> (Tensor, Tensor)."""
    return b.emit(
        "adaptive_max_pool", x, n_out=2, output_size=_output_size(x, output_size, n), return_indices=True
    )
