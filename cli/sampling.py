"""Seeded random inputs for a graph: what ``unigraph convert --check`` and ``unigraph check`` run on.

Shapes come from the caller (the example a model was traced with, or
``--input-shape``) or from the graph's input types, with each dimension symbol
set to a small size (``batch`` 2, others 8). Values are standard normal for
floating inputs and random bits for booleans. Integer inputs must stay in
range wherever they index something: an integer input that reaches the
indices of an ``embedding``, ``take``, ``take_along_axis`` or ``index`` (through
reshapes, casts, slices and the like) draws from ``[0, n)`` for the smallest
static size ``n`` it indexes (the vocabulary, for token ids); any other
integer input draws from ``[0, 2)`` (masks, flags, small ids).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from unigraph import dims, tree
from unigraph.dtypes import numpy_dtype
from unigraph.errors import InputError
from unigraph.ir import Graph

#: Sizes given to dimension symbols no shape binds.
DEFAULT_SIZES = {"batch": 2}
OTHER_SYMBOL_SIZE = 8

#: Ops whose output holds the input's integers (rearranged), followed when looking for an index use.
_PASS_THROUGH = {
    "reshape", "transpose", "broadcast_to", "squeeze", "expand_dims", "concat", "split", "slice",
    "tile", "flip", "roll", "cast", "pad",
}
#: Ops that index with an input, and which input position holds the indices.
_INDEXING = {"embedding": 1, "take": 1, "take_along_axis": 1}


def input_shapes(graph: Graph, given: Mapping[str, tuple] | None = None) -> dict[str, tuple[int, ...]]:
    """A concrete shape for every graph input: ``given`` ones as they are, symbols set to small sizes."""
    given = dict(given or {})
    env: dict[str, int] = {}
    for name, shape in given.items():
        for d, size in zip(graph.types[name].shape, shape):
            if dims.is_symbol(d):
                env.setdefault(d, int(size))
    shapes = {}
    for name in graph.inputs:
        if name in given:
            shapes[name] = tuple(int(s) for s in given[name])
            continue
        shape = []
        for d in graph.types[name].shape:
            for symbol in sorted(dims.symbols(d)):
                env.setdefault(symbol, DEFAULT_SIZES.get(symbol, OTHER_SYMBOL_SIZE))
            shape.append(int(dims.evaluate(d, env)))
        shapes[name] = tuple(shape)
    return shapes


def sample_inputs(graph: Graph, shapes: Mapping[str, tuple], seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded random arrays for every graph input, by name (see the module docstring for the rules)."""
    rng = np.random.default_rng(seed)
    bounds = integer_bounds(graph)
    arrays = {}
    for name in graph.inputs:
        dtype = numpy_dtype(graph.types[name].dtype)
        shape = tuple(shapes[name])
        if dtype == np.bool_:
            arrays[name] = rng.integers(0, 2, shape).astype(np.bool_)
        elif np.issubdtype(dtype, np.integer):
            arrays[name] = rng.integers(0, bounds.get(name, 2), shape).astype(dtype)
        elif np.issubdtype(dtype, np.complexfloating):
            arrays[name] = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)
        else:
            arrays[name] = rng.standard_normal(shape).astype(dtype)
    return arrays


def call_arguments(graph: Graph, arrays: Mapping[str, Any]) -> tuple[tuple, dict]:
    """``(args, kwargs)`` in the source model's structure for inputs given by graph input name."""
    args, kwargs = tree.unflatten(graph.input_tree, arrays.__getitem__)
    return tuple(args), dict(kwargs)


def example_shapes(graph: Graph, args: tuple, kwargs: Mapping) -> dict[str, tuple[int, ...]]:
    """The shape of each graph input in an example call (the inputs a model was traced with)."""
    try:
        matched = tree.match(graph.input_tree, (tuple(args), dict(kwargs)), where="")
    except ValueError as e:
        raise InputError(f"the example inputs do not fit the graph: {e}") from None
    return {name: tuple(np.shape(value)) for name, value in matched.items()}


def integer_bounds(graph: Graph) -> dict[str, int]:
    """For each integer input that indexes something, the smallest static size it indexes."""
    users: dict[str, list] = {}
    for node in graph.nodes:
        for position, value in enumerate(node.inputs):
            if value is not None:
                users.setdefault(value, []).append((node, position))

    def bound(value: str, depth: int) -> int | None:
        found = None
        for node, position in users.get(value, ()):
            size = None
            if _INDEXING.get(node.op) == position:
                axis = node.attrs.get("axis", 0)
                size = graph.types[node.inputs[0]].shape[axis]
            elif node.op == "index" and position >= 1:
                size = graph.types[node.inputs[0]].shape[node.attrs["axes"][position - 1]]
            elif node.op in _PASS_THROUGH and depth < 16:
                size = min((b for out in node.outputs if (b := bound(out, depth + 1)) is not None), default=None)
            if isinstance(size, int):
                found = size if found is None else min(found, size)
        return found

    bounds = {}
    for name in graph.inputs:
        dtype = numpy_dtype(graph.types[name].dtype)
        if np.issubdtype(dtype, np.integer) and (b := bound(name, 0)) is not None and b > 0:
            bounds[name] = b
    return bounds
