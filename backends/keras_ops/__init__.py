"""Keras lowerings of unigraph ops: what a converted model runs as in Keras 3, under any of its backends.

Each op has one lowering, a function with the op's own signature (tensors
positional, attributes keyword-only, the same defaults:
``tests/ops/test_signatures.py`` compares them) written with ``keras.ops``
only, never a backend's own API, so that the model runs under Keras's
TensorFlow, JAX and torch backends alike::

    @lowers("leaky_relu")
    def leaky_relu(x, /, *, alpha=0.01):
        return ops.where(x > 0, x, x * alpha)

Tensors arrive in the op's semantics, as they do for the op's JAX lowering:
activations in the source layout, kernels in Flax layout; attributes arrive
resolved (dimension expressions evaluated from the input shapes). TensorFlow's
CPU kernels run no channels-first convolution or pool, so the lowerings of
those ops move channels last around the Keras op (XLA drops the transposes
when the model is compiled).
"""

from __future__ import annotations

from collections.abc import Callable

from unigraph.registry import Registry

LOWERINGS: Registry[str, Callable] = Registry("Keras lowering")


def lowers(*ops: str) -> Callable[[Callable], Callable]:
    """Registers the decorated function as the Keras lowering of each op in ``ops``."""
    return LOWERINGS.registers(*ops)


from unigraph.backends.keras_ops import (  # noqa: E402,F401  (importing registers the lowerings)
    attention,
    conv,
    creation,
    elementwise,
    index,
    linalg,
    norm,
    pool,
    recurrent,
    reduce,
    resize,
    shape,
)

__all__ = ["LOWERINGS", "lowers"]
