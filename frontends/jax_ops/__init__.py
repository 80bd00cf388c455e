"""Handlers translating JAX primitives into unigraph ops, one module per primitive family.

A handler is registered for one or more primitive names and is called with a
``Context`` (the equation being translated, the ``Builder``, and the
driver's services), the equation's operands as ``TensorRef``s (literals
become 0-d constants) and the equation's parameters as keyword arguments::

    @handles("exp")
    def exp(cx, x, **_):
        return cx.emit("exp", x)

Parameters a handler does not use (shardings, accuracy hints) are swallowed
by ``**_``. A handler returns one ``TensorRef``, or a sequence with one per
output of a primitive with several results. The driver checks every result
against the type JAX recorded for it, so a handler that gets a shape or
dtype wrong fails at conversion time, naming the primitive and its source.
"""

from __future__ import annotations

from collections.abc import Callable

from unigraph.registry import Registry


HANDLERS: Registry[str, Callable] = Registry("JAX primitive handler")


def handles(*names: str) -> Callable[[Callable], Callable]:
    """Registers the decorated handler for each JAX primitive name."""
    return HANDLERS.registers(*names)


# Importing the families registers their handlers.
from unigraph.frontends.jax_ops import (  # noqa: E402,F401
    control,
    conv,
    elementwise,
    index,
    linalg,
    pool,
    reduce,
    shape,
)

__all__ = ["HANDLERS", "handles"]
