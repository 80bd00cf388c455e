"""Handlers translating ATen ops into unigraph ops, one module per op family.

A handler is registered for one or more ATen overloads (or whole overload
packets) and is called with the ``Builder`` and the node's arguments, tensors
as ``TensorRef``, symbolic sizes as dimension expressions, dtypes as names::

    @handles(aten.relu, aten.relu_)
    def relu(b, x):
        return b.emit("relu", x)

Arguments keep the names of the ATen schema, so keyword arguments of a node
bind as they do in torch. The result's type is checked against the type torch
recorded for the node, so a handler that gets a shape or dtype wrong fails at
conversion time, naming the node.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from unigraph.frontends.builder import Builder, SourceTensor, TensorRef

aten = torch.ops.aten


class HandlerTable:
    """ATen overloads and overload packets to handlers; each registered once."""

    def __init__(self):
        self._handlers: dict = {}

    def register(self, target, fn: Callable) -> None:
        if target in self._handlers:
            raise ValueError(f"{target} has two handlers")
        self._handlers[target] = fn

    def lookup(self, target) -> Callable | None:
        fn = self._handlers.get(target)
        if fn is None and hasattr(target, "overloadpacket"):
            fn = self._handlers.get(target.overloadpacket)
        return fn


HANDLERS = HandlerTable()


def handles(*targets) -> Callable[[Callable], Callable]:
    def register(fn: Callable) -> Callable:
        for target in targets:
            HANDLERS.register(target, fn)
        return fn

    return register


# Importing the families registers their handlers.
from unigraph.frontends.torch_ops import (  # noqa: E402,F401
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

__all__ = ["HANDLERS", "Builder", "SourceTensor", "TensorRef", "aten", "handles"]
