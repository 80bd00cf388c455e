"""``GraphModule``: a ``flax.linen`` Module that runs a unigraph graph.

The module declares the graph's variables (``params`` and ``batch_stats``,
nested by module path) and interprets the graph at trace time, so
``module.apply(variables, x)`` under ``jax.jit`` is one XLA computation.
``module.init`` gives freshly initialized variables of the same structure
(to train the architecture from scratch); a conversion's own variables come
from the source model and need no ``init``.
"""

from __future__ import annotations

import contextlib

import flax.linen as nn
import jax
import jax.numpy as jnp

from unigraph import interpreter, signature
from unigraph.dtypes import jax_dtype
from unigraph.ir import Graph, TensorType
from unigraph.params import nest_variables


def run(graph: Graph, variables, inputs, precision: str | None = "highest"):
    """The graph's flat outputs for flat inputs, with matmuls at ``precision``.

    ``"highest"`` keeps float32 matmuls and convolutions in full float32 on
    every backend (as torch does by default); ``None`` lets the backend choose
    (TF32 on recent GPUs, bfloat16 passes on TPU) for speed.
    """
    context = jax.default_matmul_precision(precision) if precision else contextlib.nullcontext()
    with context:
        return interpreter.run(graph, variables, inputs)


class GraphModule(nn.Module):
    graph: Graph
    precision: str | None = "highest"

    @nn.compact
    def __call__(self, *args, **kwargs):
        inputs = signature.bind(self.graph, args, kwargs)
        variables = self._declare_variables()
        outputs = run(self.graph, variables, [jnp.asarray(x) for x in inputs], self.precision)
        return signature.structure(self.graph, outputs)

    def _declare_variables(self) -> dict:
        declared: dict = {}
        for collection, subtrees in _top_level(self.graph).items():
            for key, types in subtrees.items():
                if collection == "params":
                    value = self.param(key, _initializer(types))
                else:  # drawn from the "params" key of init(); apply() finds them and draws nothing
                    rng = self.make_rng("params") if self.is_initializing() else None
                    value = self.variable(collection, key, _initializer(types), rng).value
                declared.setdefault(collection, {})[key] = value
        return declared


def _top_level(graph: Graph) -> dict[str, dict]:
    """``{collection: {top-level key: nested TensorTypes}}`` of the graph's variables."""
    return nest_variables({var.key: t for var, t in graph.variable_types()})


def _initializer(types):
    """Fresh values: scales and variances 1, biases and means 0, other floats N(0, 0.02)."""

    def init(rng):
        leaves, treedef = jax.tree.flatten(types, is_leaf=lambda x: isinstance(x, TensorType))
        paths = [p for p, _ in jax.tree_util.tree_flatten_with_path(types, is_leaf=lambda x: isinstance(x, TensorType))[0]]
        keys = jax.random.split(rng, max(len(leaves), 1))
        values = []
        for key, path, t in zip(keys, paths, leaves):
            name = str(path[-1].key) if path else ""
            dtype = jax_dtype(t.dtype)
            if name in ("scale", "var") or not jnp.issubdtype(dtype, jnp.floating):
                fill = 1 if name in ("scale", "var") else 0
                values.append(jnp.full(t.shape, fill, dtype))
            elif name in ("bias", "mean"):
                values.append(jnp.zeros(t.shape, dtype))
            else:
                values.append(0.02 * jax.random.normal(key, t.shape, dtype))
        return jax.tree.unflatten(treedef, values)

    return init
