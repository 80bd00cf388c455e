"""Every value of a graph as a SavedModel computes it: the checker's ``locate`` for SavedModel outputs.

A SavedModel that unigraph writes is one ``XlaCallModule`` op: the graph's
JAX lowerings, traced by jax2tf with the graph's symbolic dimensions kept
symbolic, serialized as StableHLO, and compiled and run by TensorFlow's XLA.
Its nodes have no TensorFlow ops of their own to run one at a time, so the
values here come from the same lowering with every node's outputs returned:
the same polymorphic shapes, platforms and matmul precision as
``backends/savedmodel.py``, run by TensorFlow. A node whose value differs
from the one JAX computes is one that TensorFlow's XLA runs differently, or
whose lowering goes wrong under symbolic dimensions.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence

from unigraph.native_order import before_tensorflow

before_tensorflow()

import jax  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from jax.experimental import jax2tf  # noqa: E402

from unigraph import interpreter  # noqa: E402
from unigraph.backends.savedmodel import DEFAULT_PLATFORMS  # noqa: E402
from unigraph.converted import Converted  # noqa: E402
from unigraph.ir import Node  # noqa: E402


def lowered_values(conv: Converted, variables: Mapping, inputs: Sequence, values: Mapping) -> Iterator[tuple[Node, tuple | Exception]]:
    """Per node, in order: its outputs as TensorFlow computes them, as NumPy arrays."""
    del values  # computed here, by TensorFlow, from the inputs alone
    graph, precision = conv.graph, conv.precision
    names = [name for node in graph.nodes for name in node.outputs]
    leaves, treedef = jax.tree_util.tree_flatten(variables)

    def apply(variable_list, *inputs):
        context = jax.default_matmul_precision(precision) if precision else contextlib.nullcontext()
        with context:
            _, env = interpreter.run(graph, jax.tree.unflatten(treedef, variable_list), list(inputs), collect=True)
        return tuple(env[name] for name in names)

    shapes = ["(" + ", ".join(str(d) for d in graph.types[n].shape) + ")" for n in graph.inputs]
    lowered = jax2tf.convert(
        apply, polymorphic_shapes=[None, *shapes], with_gradient=False, native_serialization_platforms=DEFAULT_PLATFORMS
    )
    outputs = lowered([tf.convert_to_tensor(np.asarray(x)) for x in leaves], *(tf.convert_to_tensor(np.asarray(x)) for x in inputs))
    by_name = {name: np.asarray(out) for name, out in zip(names, outputs)}
    for node in graph.nodes:
        yield node, tuple(by_name[name] for name in node.outputs)
