"""A graph run node by node with its Keras lowerings, under this process's Keras backend.

What every ``Op`` layer of a converted Keras model runs for its node
(``apply``), and a whole graph run eagerly (``run``: how the op tests check the
Keras lowerings against torch and JAX).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from keras import ops

from unigraph.backends.keras_ops import LOWERINGS
from unigraph.errors import LoweringError
from unigraph.interpreter import bind_symbols
from unigraph.ir import Graph
from unigraph.ops import REGISTRY
from unigraph.params import flatten_variables


def apply(op: str, attrs: Mapping[str, Any], args: Sequence[Any], symbols: Mapping[str, Any], *, where: str) -> tuple:
    """The outputs of ``op`` with ``attrs`` on ``args`` (its input tensors, None for an absent optional one).

    ``symbols`` binds the dimension symbols the attributes may name; a failure
    names ``where`` (the node or layer), the op and its inputs.
    """
    try:
        resolved = REGISTRY[op].resolve(attrs, symbols)
        result = LOWERINGS[op](*args, **resolved)
    except Exception as e:  # any failure of a lowering: re-raised naming the node
        shown = ", ".join("None" if a is None else f"{ops.dtype(a)}{list(ops.shape(a))}" for a in args)
        raise LoweringError(
            f"the Keras lowering of {op!r} ({where}) failed: {type(e).__name__}: {e}\n"
            f"  inputs: {shown}\n  attrs: {dict(attrs) or '(none)'}"
        ) from e
    return tuple(result) if isinstance(result, (tuple, list)) else (result,)


def run(graph: Graph, variables: Mapping, inputs: Sequence) -> list:
    """The graph's outputs (in ``graph.outputs`` order) for ``inputs``, every node run eagerly."""
    inputs = [ops.convert_to_tensor(x) for x in inputs]
    symbols = bind_symbols(graph, [tuple(ops.shape(x)) for x in inputs])
    flat = flatten_variables(variables)
    env: dict[str, Any] = dict(zip(graph.inputs, inputs))
    env.update({name: ops.convert_to_tensor(flat[var.key]) for name, var in graph.variables.items()})
    env.update({name: ops.convert_to_tensor(array) for name, array in graph.constants.items()})
    for node in graph.nodes:
        args = [None if n is None else env[n] for n in node.inputs]
        results = apply(node.op, node.attrs, args, symbols, where=f"producing {', '.join(node.outputs)}, {node.source}")
        if len(results) != len(node.outputs):
            raise LoweringError(f"the Keras lowering of {node.op!r} returned {len(results)} values for {len(node.outputs)}")
        env.update(zip(node.outputs, results))
    return [env[name] for name in graph.outputs]
