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
from unigraph.registry import Registry

aten = torch.ops.aten


#: ATen overloads (``aten.add.Tensor``) or whole overload packets (``aten.add``) to handlers.
HANDLERS: Registry = Registry("ATen handler")


def handles(*targets) -> Callable[[Callable], Callable]:
    """Registers the decorated handler for each ATen overload or overload packet."""
    return HANDLERS.registers(*targets)


def handler_for(target) -> Callable | None:
    """The handler of an ATen overload: registered for the overload itself, else for its packet."""
    fn = HANDLERS.get(target)
    if fn is None and hasattr(target, "overloadpacket"):
        fn = HANDLERS.get(target.overloadpacket)
    return fn


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

__all__ = ["HANDLERS", "Builder", "SourceTensor", "TensorRef", "aten", "handler_for", "handles"]
