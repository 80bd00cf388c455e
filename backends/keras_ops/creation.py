"""Keras lowerings: constant-filled tensors, ranges, dimension values, triangular masks.

Values convert to the op's dtype as ``jnp.asarray(value, dtype)`` converts
them (a float to an integer dtype truncates, a bool to a number is 0 or 1).
``arange`` counts its elements as the op does and computes ``start + step *
iota`` in its dtype; the iota is made as int32 and cast (TensorFlow's
``range`` takes no half floats), which gives the same values as JAX's iota in
that dtype.
"""

from __future__ import annotations

from keras import ops

from unigraph.backends.keras_ops import lowers
from unigraph.backends.keras_ops.shape import is_static, scalar


@lowers("full")
def full(*, shape, value, dtype):
    return ops.full(tuple(shape), scalar(value, dtype), dtype=dtype)


@lowers("arange")
def arange(*, start=0, end, step=1, dtype):
    count = _count(start, end, step)
    iota = ops.arange(count, dtype="int32")
    iota = iota if dtype == "int32" else ops.cast(iota, dtype)
    return ops.add(_constant(start, dtype), ops.multiply(_constant(step, dtype), iota))


def _constant(value, dtype: str):
    if isinstance(value, (int, float, bool)) or is_static(value):
        return ops.convert_to_tensor(scalar(value, dtype), dtype)
    return ops.cast(value, dtype)


def _count(start, end, step):
    """``ceil((end - start) / step)``, at least 0 (for a symbolic step, taken as positive), as the op counts."""
    static = [isinstance(v, (int, float)) or is_static(v) for v in (start, end, step)]
    if not (static[2] and step < 0):
        count = (end - start + step - 1) // step
    else:
        count = (start - end - step - 1) // -step
    return max(count, 0) if all(static) else ops.maximum(count, 0)


@lowers("dim_value")
def dim_value(*, dim, dtype):
    return ops.cast(dim, dtype)


@lowers("triangle")
def triangle(x, /, *, diagonal=0, upper=False):
    rows, columns = ops.shape(x)[-2:]
    column, row = ops.arange(columns, dtype="int32"), ops.arange(rows, dtype="int32")
    offset = ops.expand_dims(column, 0) - ops.expand_dims(row, 1)  # j - i
    keep = offset >= diagonal if upper else offset <= diagonal
    return ops.where(keep, x, ops.zeros_like(x))
