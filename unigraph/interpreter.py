"""Runs a graph with JAX, and infers node types by abstract evaluation.

``run`` interprets the nodes at trace time: under ``jax.jit`` the result is
one plain XLA computation, with no per-node dispatch left at run time. Every
lowering's result is checked against the type the graph declares, and a
failure names the node, its op, its source and its input types.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from unigraph import dims
from unigraph.dtypes import jax_dtype, numpy_dtype
from unigraph.errors import InputError, LoweringError
from unigraph.ir import Graph, Node, TensorType
from unigraph.ops import REGISTRY


def bind_symbols(graph: Graph, shapes: Sequence[tuple]) -> dict[str, Any]:
    """Binds the graph's dimension symbols from the shapes of its inputs.

    Raises ``InputError`` naming the input and dimension that does not fit.
    """
    env: dict[str, Any] = {}
    deferred = []
    for name, shape in zip(graph.inputs, shapes):
        want = graph.types[name]
        if len(shape) != want.rank:
            raise InputError(
                f"input {name!r}: expected rank {want.rank} ({want}), got shape {list(shape)}"
            )
        for axis, (d, actual) in enumerate(zip(want.shape, shape)):
            if dims.is_symbol(d) and d not in env:
                env[d] = actual
            else:
                deferred.append((name, axis, d, actual))
    for name, axis, d, actual in deferred:
        try:
            expected = dims.evaluate(d, env)
        except KeyError:
            continue  # an expression over symbols no input binds alone
        if provably_different(expected, actual):
            what = "static" if isinstance(d, int) else f"{d} = {expected}"
            raise InputError(
                f"input {name!r}: dimension {axis} must be {expected} ({what}), "
                f"got shape {list(shape_of(graph, name, shapes))}"
            )
    return env


def shape_of(graph: Graph, name: str, shapes: Sequence[tuple]) -> tuple:
    return tuple(shapes[graph.inputs.index(name)])


def provably_different(a, b) -> bool:
    """Whether two dimensions (ints, or JAX symbolic dimensions of one scope) provably differ.

    Ints compare exactly. Symbolic dimensions occur only while the graph is
    traced with symbolic shapes (``jax.export``, jax2tf); there JAX cannot
    always decide (``n`` against ``2*floordiv(n, 2)``), and an inconclusive
    comparison does not count as a difference: the same check runs again,
    decidably, whenever the graph runs with concrete shapes (every call of a
    converted model under ``jax.jit``). JAX's ``==`` answers False where it
    cannot decide, so a difference is proved by bounds instead.
    """
    if a == b:
        return False
    try:
        return bool(a - b >= 1 or b - a >= 1)
    except jax.errors.InconclusiveDimensionOperation:
        return False


def lookup_variable(variables: Mapping, collection: str, path: Sequence[str]):
    node = variables.get(collection)
    for i, key in enumerate(path):
        if not isinstance(node, Mapping) or key not in node:
            missing = "/".join((collection, *path[: i + 1]))
            raise InputError(f"variables have no entry {missing!r}")
        node = node[key]
    return node


def run(
    graph: Graph,
    variables: Mapping,
    inputs: Sequence,
    *,
    collect: bool = False,
):
    """The graph's outputs (a list, in ``graph.outputs`` order) for ``inputs``.

    With ``collect=True`` returns ``(outputs, env)`` where ``env`` maps every
    value name to its array, for node-by-node comparison.
    """
    symbols = bind_symbols(graph, [jnp.shape(x) for x in inputs])
    env: dict[str, Any] = dict(zip(graph.inputs, inputs))
    for name, var in graph.variables.items():
        env[name] = lookup_variable(variables, var.collection, var.path)
    for name, array in graph.constants.items():
        env[name] = jnp.asarray(array, dtype=jax_dtype(graph.types[name].dtype))
    for node in graph.nodes:
        results = _run_node(graph, node, env, symbols)
        env.update(zip(node.outputs, results))
    outputs = [env[n] for n in graph.outputs]
    return (outputs, env) if collect else outputs


def _run_node(graph: Graph, node: Node, env: dict, symbols: Mapping) -> tuple:
    opdef = REGISTRY[node.op]
    args = [env[n] if n is not None else None for n in node.inputs]
    try:
        attrs = opdef.resolve(node.attrs, symbols)
        result = opdef.jax(*args, **attrs)
    except Exception as e:
        raise LoweringError(_failure(graph, node, args, f"{type(e).__name__}: {e}")) from e
    results = tuple(result) if isinstance(result, (tuple, list)) else (result,)
    if len(results) != len(node.outputs):
        raise LoweringError(
            _failure(graph, node, args, f"returned {len(results)} values for {len(node.outputs)} outputs")
        )
    for name, value in zip(node.outputs, results):
        want = graph.types[name]
        expected_shape = dims.evaluate_shape(want.shape, symbols)
        if _shape_differs(jnp.shape(value), expected_shape) or jnp.result_type(value) != jax_dtype(want.dtype):
            raise LoweringError(
                _failure(
                    graph,
                    node,
                    args,
                    f"output {name!r} is {jnp.result_type(value)}{list(jnp.shape(value))}, "
                    f"but the graph declares {want} = {list(expected_shape)}",
                )
            )
    return results


def _shape_differs(a: tuple, b: tuple) -> bool:
    return len(a) != len(b) or any(provably_different(x, y) for x, y in zip(a, b))


def _failure(graph: Graph, node: Node, args: list, what: str) -> str:
    inputs = ", ".join(
        "None" if a is None else f"{n}: {jnp.result_type(a)}{list(jnp.shape(a))}"
        for n, a in zip(node.inputs, args)
    )
    attrs = ", ".join(f"{k}={v!r}" for k, v in node.attrs.items())
    return (
        f"op {node.op!r} producing {', '.join(node.outputs)} ({node.source}) failed: {what}\n"
        f"  inputs: {inputs}\n  attrs: {attrs or '(none)'}"
    )


def infer_types(
    op: str,
    input_types: Sequence[TensorType | None],
    attrs: Mapping[str, Any],
    scope: dims.SymbolicScope | None = None,
) -> tuple[TensorType, ...]:
    """The output types of one node, by abstract evaluation of its JAX lowering.

    Symbolic dimensions are JAX symbolic dimensions, so ``"batch"`` flows
    through reshapes and broadcasts as an expression; 64-bit dtypes are kept.
    """
    scope = scope or dims.SymbolicScope()
    opdef = REGISTRY[op]
    specs = [
        None if t is None else jax.ShapeDtypeStruct(scope.shape(t.shape), numpy_dtype(t.dtype))
        for t in input_types
    ]
    symbol_names = set()
    for t in input_types:
        if t is not None:
            for d in t.shape:
                symbol_names |= dims.symbols(d)
    for name, value in attrs.items():
        attr = opdef.attrs.get(name)
        if attr is not None and attr.symbolic and value is not None:
            for d in value if isinstance(value, tuple) else (value,):
                if isinstance(d, str):
                    symbol_names |= dims.symbols(d)
    env = {s: scope.dim(s) for s in symbol_names}
    resolved = opdef.resolve(attrs, env)
    with jax.enable_x64(True):
        out = jax.eval_shape(lambda *a: opdef.jax(*a, **resolved), *specs)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    return tuple(
        TensorType(tuple(dims.from_jax(d) for d in o.shape), np.dtype(o.dtype).name) for o in outs
    )
