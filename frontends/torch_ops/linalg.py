"""ATen linear algebra: linear, addmm, mm/bmm/matmul, einsum, baddbmm."""

from __future__ import annotations

from unigraph.frontends.torch_ops import aten, handles
from unigraph.frontends.builder import Builder
from unigraph.frontends.torch_ops.common import promote


@handles(aten.linear)
def linear(b: Builder, x, weight, bias=None):
    """aten::linear(Tensor input, Tensor weight, Tensor? bias=None): weight ``(out, in)``."""
    kernel = b.weight(weight, "kernel", (1, 0))
    bias = None if bias is None else b.weight(bias, "bias")
    return b.emit("dense", x, kernel, bias)


@handles(aten.addmm)
def addmm(b: Builder, bias, x, w, beta=1, alpha=1):
    """aten::addmm(self, mat1, mat2, *, beta=1, alpha=1): ``beta*self + alpha*(mat1 @ mat2)``.

    GPT-2's ``Conv1D`` stores its weight as ``(in, out)``: already a Flax kernel.
    """
    if beta == 1 and alpha == 1:
        return b.emit("dense", x, b.weight(w, "kernel"), b.weight(bias, "bias"))
    product = b.emit("matmul", x, w)
    if alpha != 1:
        product = b.emit("mul", *promote(b, product, alpha))
    if beta != 1:
        bias = b.emit("mul", *promote(b, bias, beta))
    return b.emit("add", product, bias)


@handles(aten.mm, aten.bmm, aten.matmul)
def matmul(b: Builder, x, y):
    return b.emit("matmul", x, y)


@handles(aten.baddbmm)
def baddbmm(b: Builder, bias, x, y, beta=1, alpha=1):
    product = b.emit("matmul", x, y)
    if alpha != 1:
        product = b.emit("mul", *promote(b, product, alpha))
    if beta == 0:
        return product
    if beta != 1:
        bias = b.emit("mul", *promote(b, bias, beta))
    return b.emit("add", product, bias)


@handles(aten.einsum)
def einsum(b: Builder, equation, operands, path=None):
    equation = equation.replace(" ", "")
    if "->" not in equation:
        equation += "->" + _implicit_output(equation)
    return b.emit("einsum", *operands, equation=equation)


def _implicit_output(inputs: str) -> str:
    """The output of an einsum without ``->``: ellipsis, then the letters used once, sorted."""
    letters = inputs.replace("...", "").replace(",", "")
    once = sorted(c for c in set(letters) if letters.count(c) == 1)
    return ("..." if "..." in inputs else "") + "".join(once)
