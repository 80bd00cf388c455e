"""``dot_general``: ``dense`` for a layer's kernel, ``matmul`` for matrix products, ``einsum`` otherwise.

A ``dot_general`` whose right operand is a 2-d variable contracted on its
first axis with the last axis of the left one is a dense layer (Flax
``Dense``, Keras ``Dense``): it becomes ``dense``, taking in the bias
``add`` that follows it when that adds a reshaped 1-d variable along the
output features. Products of two activations are ``matmul`` where NumPy's
matmul is the same contraction, else an ``einsum`` spelled from the
dimension numbers (output: batch axes, then the free axes of each side).
"""

from __future__ import annotations

import string

from jax.errors import InconclusiveDimensionOperation

from unigraph.frontends.builder import TensorRef
from unigraph.frontends.jax_ops import handles
from unigraph.frontends.jax_ops.common import ints
from unigraph.frontends.jax_ops.context import Context


@handles("dot_general")
def dot_general(cx: Context, x, y, *, dimension_numbers, **_):
    (x_contract, y_contract), (x_batch, y_batch) = (tuple(map(ints, pair)) for pair in dimension_numbers)
    dtype = cx.out_type.dtype
    x, y = cx.cast(x, dtype), cx.cast(y, dtype)  # preferred_element_type: accumulate in the output dtype
    plain = not x_batch and x_contract == (x.rank - 1,)
    if plain and y.rank == 2 and y_contract == (0,) and cx.is_variable(y):
        return _dense(cx, x, y)
    if _is_matmul(x.rank, y.rank, x_contract, y_contract, x_batch, y_batch):
        return cx.emit("matmul", x, y)
    return cx.emit("einsum", x, y, equation=_equation(x.rank, y.rank, x_contract, y_contract, x_batch, y_batch))


def _dense(cx: Context, x: TensorRef, kernel: TensorRef) -> TensorRef:
    bias, add = bias_add(cx, features_axis=x.rank - 1)
    out = cx.emit("dense", x, kernel, bias)
    if add is not None:
        cx.absorb(add, out)
    return out


def bias_add(cx: Context, features_axis: int) -> tuple[TensorRef | None, object]:
    """The 1-d variable that the sole consumer of this equation's output adds along ``features_axis``.

    Returns ``(bias, add_equation)``, or ``(None, None)`` when the output is not
    followed by such an ``add`` (Flax and Keras add ``bias.reshape(1, …, 1, C)``).
    """
    out = cx.eqn.outvars[0]
    add = cx.sole_consumer(out)
    if add is None or add.primitive.name not in ("add", "add_any"):
        return None, None
    if not _same(add.outvars[0].aval.shape, out.aval.shape):
        return None, None
    other = add.invars[1] if add.invars[0] is out else add.invars[0]
    reshape = cx.producer(other)
    if reshape is None or reshape.primitive.name not in ("reshape", "broadcast_in_dim"):
        return None, None
    bias = cx.known(reshape.invars[0])
    if bias is None or not cx.is_variable(bias) or bias.rank != 1:
        return None, None
    shape = other.aval.shape
    channels = out.aval.shape[features_axis]
    expected = tuple(channels if a == features_axis else 1 for a in range(len(out.aval.shape)))
    if not _same(shape, expected):
        return None, None
    return bias, add


def _same(a: tuple, b: tuple) -> bool:
    """Whether two JAX shapes (of one jaxpr, so in one symbolic scope) are equal."""
    try:
        return len(a) == len(b) and all(bool(x == y) for x, y in zip(a, b))
    except InconclusiveDimensionOperation:  # symbolic sizes JAX cannot prove equal
        return False


def _is_matmul(x_rank, y_rank, x_contract, y_contract, x_batch, y_batch) -> bool:
    """Whether ``jnp.matmul(x, y)`` is this contraction: shared leading batch axes, ``[..., m, k] @ [..., k, n]``.

    Without batch axes, rows (any leading axes) times a matrix or a vector qualify too.
    """
    if not x_batch and not y_batch:
        return y_rank in (1, 2) and x_rank >= 1 and x_contract == (x_rank - 1,) and y_contract == (0,)
    k = len(x_batch)
    leading = tuple(range(k))
    return (
        x_batch == leading
        and y_batch == leading
        and x_rank == y_rank == k + 2
        and x_contract == (k + 1,)
        and y_contract == (k,)
    )


def _equation(x_rank, y_rank, x_contract, y_contract, x_batch, y_batch) -> str:
    letters = iter(string.ascii_letters)
    x_letters = [next(letters) for _ in range(x_rank)]
    y_letters = [""] * y_rank
    for a, b in (*zip(x_contract, y_contract), *zip(x_batch, y_batch)):
        y_letters[b] = x_letters[a]
    y_letters = [c or next(letters) for c in y_letters]
    out = [x_letters[a] for a in x_batch]
    out += [x_letters[a] for a in range(x_rank) if a not in x_contract and a not in x_batch]
    out += [y_letters[b] for b in range(y_rank) if b not in y_contract and b not in y_batch]
    return f"{''.join(x_letters)},{''.join(y_letters)}->{''.join(out)}"

