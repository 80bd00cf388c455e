"""Calling a graph: matching user arguments to inputs, checking them, structuring outputs."""

from __future__ import annotations

import keyword
import operator
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from unigraph import dims, tree
from unigraph.dtypes import jax_dtype, numpy_dtype
from unigraph.errors import InputError
from unigraph.interpreter import bind_symbols
from unigraph.ir import Graph
from unigraph.names import identifier, unique_names


def as_array(x: Any):
    """A JAX array as is; anything array-like (NumPy, a TensorFlow tensor) as a NumPy array.

    torch tensors are converted before they get here (``converted.host_arrays``):
    the core imports no torch.
    """
    if type(x).__module__.partition(".")[0] in ("jax", "jaxlib"):
        return x
    return np.asarray(x)


def bind(graph: Graph, args: Sequence, kwargs: Mapping, constraints: Sequence[str] = ()) -> list:
    """The graph inputs, in order, from a call's arguments; checked, as arrays.

    Arguments follow the source model's signature (``args``, ``kwargs`` and
    their nesting); a flat positional list of every tensor input is accepted too,
    and keywords for the entries of a model's one dict (``keyword_dict``).
    ``constraints`` are the bounds the model was converted under (see ``check``).
    """
    by_name = _match(graph, args, kwargs)
    arrays = [as_array(by_name[name]) for name in graph.inputs]
    check(graph, arrays, constraints)
    return arrays


def keyword_dict(graph: Graph) -> tree.Spec | None:
    """The dict a model takes as its one argument, where its entries may come as keywords instead.

    A Keras model with named inputs is called with one dict
    (``model({"token_ids": …, "padding_mask": …})``); its converted forms take
    ``model(token_ids=…, padding_mask=…)`` too. ``None`` for any other call, or
    where a key is no Python identifier.
    """
    args, kwargs = graph.input_tree["items"]
    if kwargs["keys"] or len(args["items"]) != 1 or args["items"][0]["kind"] != "dict":
        return None
    entries = args["items"][0]
    if not entries["keys"] or not all(k.isidentifier() and not keyword.iskeyword(k) for k in entries["keys"]):
        return None
    return entries


def _match(graph: Graph, args: Sequence, kwargs: Mapping) -> dict[str, Any]:
    spec = graph.input_tree
    if kwargs and not args and keyword_dict(graph) is not None:
        args, kwargs = (kwargs,), {}
    try:
        return tree.match(spec, (tuple(args), dict(kwargs)), where="")
    except ValueError as error:
        if not kwargs and len(args) == len(graph.inputs):
            return dict(zip(graph.inputs, args))
        message = str(error).replace("[0]", "args", 1).replace("[1]", "kwargs", 1)
        raise InputError(f"{message}\n  the model takes {describe(graph)}") from None


def check(graph: Graph, arrays: Sequence, constraints: Sequence[str] = ()) -> None:
    """Raises ``InputError`` naming the input whose rank, dtype or static size is wrong.

    ``constraints`` (``"dim1 <= 64"``: a Keras model's sequence length
    bounded by its position table, ``metadata["shape_constraints"]``) are
    checked too: beyond them the graph computes something the source
    model refuses to.
    """
    for name, x in zip(graph.inputs, arrays):
        want = graph.types[name]
        if not _dtype_fits(np.dtype(x.dtype), want.dtype):
            raise InputError(
                f"input {name!r}: expected dtype {want.dtype} ({want}), got {np.dtype(x.dtype)}"
                f" (convert it with .astype({want.dtype!r}))"
            )
    sizes = bind_symbols(graph, [tuple(np.shape(x)) for x in arrays])
    for constraint in constraints:
        lhs, comparison, rhs = _comparison(constraint)
        if not _COMPARISONS[comparison](dims.evaluate(lhs, sizes), dims.evaluate(rhs, sizes)):
            given = ", ".join(f"{s} = {sizes[s]}" for s in sorted(dims.symbols(lhs) | dims.symbols(rhs)))
            raise InputError(f"the model was converted for {constraint}; these inputs have {given}")


_COMPARISONS = {"<=": operator.le, ">=": operator.ge, "==": operator.eq, "<": operator.lt, ">": operator.gt}


def _comparison(constraint: str) -> tuple[str, str, str]:
    """``"dim1 <= 64"`` as ``("dim1", "<=", "64")`` (``>=``, ``==``, ``<``, ``>`` too)."""
    match = re.fullmatch(r"(.+?)\s*(<=|>=|==|<|>)\s*(.+)", constraint.strip())
    if match is None:
        raise ValueError(f"shape constraint {constraint!r}: expected 'expression <= expression'")
    return match.group(1), match.group(2), match.group(3)


def _dtype_fits(given: np.dtype, expected: str) -> bool:
    """Floats must match exactly; integers only as JAX stores them (int64 ids run as int32)."""
    if given == numpy_dtype(expected):
        return True
    if np.issubdtype(given, np.floating) or np.issubdtype(numpy_dtype(expected), np.floating):
        return False
    return jax_dtype(given.name) == jax_dtype(expected)


def structure(graph: Graph, outputs: Sequence) -> Any:
    """Outputs (in ``graph.outputs`` order) in the structure the source model returns."""
    by_name = dict(zip(graph.outputs, outputs))
    return tree.unflatten(graph.output_tree, by_name.__getitem__)


def describe(graph: Graph) -> str:
    """``(x: float32[batch,3,64,64])`` or ``(input_ids=int64[batch,8], …)``."""
    args_spec, kwargs_spec = graph.input_tree["items"]
    parts = [_leaf(graph, s) for s in args_spec["items"]]
    parts += [f"{k}={_leaf(graph, s)}" for k, s in zip(kwargs_spec["keys"], kwargs_spec["items"])]
    return f"({', '.join(parts)})"


def _leaf(graph: Graph, spec: tree.Spec) -> str:
    kind = spec["kind"]
    if kind == "tensor":
        return str(graph.types[spec["name"]])
    if kind == "const":
        return repr(spec["value"])
    items = [_leaf(graph, item) for item in spec["items"]]
    if kind == "dict":
        return "{" + ", ".join(f"{k!r}: {v}" for k, v in zip(spec["keys"], items)) + "}"
    return ("[{}]" if kind == "list" else "({})").format(", ".join(items))


def input_names(graph: Graph) -> list[str]:
    """The names a converted model's inputs take where a name must be an identifier (a SavedModel's
    serving signature, a Keras model's inputs), in ``graph.inputs`` order."""
    return unique_names([identifier(n, "input") for n in graph.inputs], reserved={"training"})


def output_names(graph: Graph) -> dict[str, tuple]:
    """The names of a converted model's outputs where they need names, each with its path in the
    source model's outputs.

    One per tensor the source model returns, in order. Dict keys are kept
    (``last_hidden_state``); positions become ``output_0``, ``output_1``;
    nested leaves join their path (``hidden_states_0``, ``output_1_0``). A
    single tensor is ``output_0``.
    """
    paths = _output_paths(graph.output_tree)
    names = []
    for path in paths:
        parts = path if path and not isinstance(path[0], int) else ("output", *(path or (0,)))
        names.append(identifier("_".join(map(str, parts)), "output"))
    return dict(zip(unique_names(names), paths))


def _output_paths(spec, path=()) -> list[tuple]:
    if spec["kind"] == "tensor":
        return [path]
    if spec["kind"] == "const":
        return []
    keys = spec.get("keys") or range(len(spec["items"]))
    return [p for key, item in zip(keys, spec["items"]) for p in _output_paths(item, (*path, key))]
