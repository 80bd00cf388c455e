"""ATen convolutions: convNd (int or string padding), conv_transposeNd, convolution, _convolution.

Weights become Flax kernels as they are claimed: a conv weight ``(O, C/g, *k)``
is stored as ``(*k, C/g, O)``, a transposed-conv weight ``(C, O/g, *k)`` as
``(*k, C, O/g)``; biases keep their layout. Activations stay channels-first.
"""

from __future__ import annotations

from unigraph.frontends.torch_ops import aten, handles
from unigraph.frontends.builder import Builder, TensorRef


def expand(value, n: int) -> tuple[int, ...]:
    """An ATen ``int[n]`` argument (an int, or a list of one value or of ``n``) as ``n`` ints."""
    values = [value] if isinstance(value, int) else list(value)
    if len(values) == 1:
        values = values * n
    if len(values) != n or not all(isinstance(v, int) for v in values):
        raise NotImplementedError(f"expected {n} static sizes, got {value!r}")
    return tuple(values)


def _kernel(b: Builder, weight: TensorRef, *, transposed: bool) -> TensorRef:
    spatial = tuple(range(2, weight.rank))
    return b.weight(weight, "kernel", (*spatial, 0, 1) if transposed else (*spatial, 1, 0))


def _bias(b: Builder, bias: TensorRef | None) -> TensorRef | None:
    return None if bias is None else b.weight(bias, "bias")


def _padding(padding, weight: TensorRef, stride, dilation) -> tuple[tuple[int, int], ...]:
    """Explicit ``(lo, hi)`` pairs for int padding or torch's ``"valid"``/``"same"``.

    ``"same"`` pads ``dilation*(k-1)`` in total, the odd element at the end,
    as torch does for even kernels.
    """
    n = weight.rank - 2
    if padding == "valid":
        return ((0, 0),) * n
    if padding == "same":
        if any(s != 1 for s in stride):
            raise NotImplementedError("padding='same' with a stride other than 1 (torch refuses it too)")
        totals = [d * (k - 1) for d, k in zip(dilation, weight.shape[2:])]
        return tuple((t // 2, t - t // 2) for t in totals)
    return tuple((p, p) for p in expand(padding, n))


@handles(aten.conv1d, aten.conv2d, aten.conv3d)
def conv(b: Builder, input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """aten::conv2d(Tensor input, Tensor weight, Tensor? bias=None, SymInt[2] stride=1, SymInt[2] padding=0 | str padding="valid", SymInt[2] dilation=1, SymInt groups=1)."""
    n = weight.rank - 2
    stride, dilation = expand(stride, n), expand(dilation, n)
    return b.emit(
        "conv",
        input,
        _kernel(b, weight, transposed=False),
        _bias(b, bias),
        strides=stride,
        padding=_padding(padding, weight, stride, dilation),
        dilation=dilation,
        groups=groups,
    )


@handles(aten.conv_transpose1d, aten.conv_transpose2d, aten.conv_transpose3d)
def conv_transpose(b: Builder, input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """aten::conv_transpose2d.input(Tensor input, Tensor weight, Tensor? bias=None, SymInt[2] stride=1, SymInt[2] padding=0, SymInt[2] output_padding=0, SymInt groups=1, SymInt[2] dilation=1)."""
    n = weight.rank - 2
    crop = tuple(
        (p, p - extra) for p, extra in zip(expand(padding, n), expand(output_padding, n))
    )
    return b.emit(
        "conv_transpose",
        input,
        _kernel(b, weight, transposed=True),
        _bias(b, bias),
        strides=expand(stride, n),
        padding=crop,
        dilation=expand(dilation, n),
        groups=groups,
    )


@handles(aten.convolution, aten._convolution)
def convolution(b: Builder, input, weight, bias, stride, padding, dilation, transposed, output_padding, groups, *_):
    """aten::convolution(Tensor input, Tensor weight, Tensor? bias, SymInt[] stride, SymInt[] padding, SymInt[] dilation, bool transposed, SymInt[] output_padding, SymInt groups).

    ``_convolution`` adds backend flags (benchmark, cudnn_enabled, …) that do
    not change the result.
    """
    if transposed:
        return conv_transpose(b, input, weight, bias, stride, padding, output_padding, groups, dilation)
    return conv(b, input, weight, bias, stride, padding, dilation, groups)
