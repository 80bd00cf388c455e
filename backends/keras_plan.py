"""The Keras model of a converted graph, as data: which layer runs each node, called on what, with which weights.

``plan(conv)`` decides; ``backends/keras.py`` builds the model from the plan
and ``backends/keras_codegen.py`` writes it as Python source, so the model in
memory and the generated file have the same layers, names and weights (one
``.weights.h5`` loads into both).

- A node becomes one of Keras's own layers (``Dense``, ``Conv1D/2D/3D``,
  ``DepthwiseConv1D/2D``, ``BatchNormalization``, ``LayerNormalization``,
  ``GroupNormalization``, ``Embedding``) when its parameters are exactly that
  layer's (``backends/keras_native.py`` decides), named after the source
  module that holds them: ``layer1_0_conv1``.
- Every other node is an ``Op`` layer running the op's Keras lowering, and
  the variables no Keras layer owns are returned by a ``Weights`` layer per
  source module (``backends/keras_layers.py``).

Activations keep the source layout unless ``channels_last=True``: then the
graph is first rewritten channels-last (``unigraph.channels_last``) and the
model takes and returns images as ``(N, H, W, C)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from unigraph import dims, signature, tree
from unigraph.backends.keras_native import Native, find_native
from unigraph.channels_last import to_channels_last
from unigraph.converted import Converted
from unigraph.errors import GraphError
from unigraph.ir import Graph, Node
from unigraph.names import identifier, unique_name
from unigraph.ops import REGISTRY
from unigraph.params import flatten_variables


@dataclasses.dataclass(frozen=True)
class Input:
    value: str  # the graph value
    name: str  # the keras.Input's name: the SavedModel signature's name for it
    batch_shape: tuple  # ints, None for symbolic dimensions
    dtype: str


@dataclasses.dataclass(frozen=True)
class Call:
    """One layer of the model and what it is called on."""

    name: str  # unique, from the source module: "layer1_0_conv1"
    kind: str  # "Weights", "Op", or a keras.layers class: "Dense", "Conv2D", "Permute", …
    config: Mapping[str, Any]  # the constructor's JSON-able keyword arguments, name excluded
    inputs: tuple[str, ...]  # the values it is called on, in order
    outputs: tuple[str, ...]  # the values it returns (a Weights layer: its dict's, in config order)
    weights: tuple[tuple[str, Any], ...] = ()  # (Keras weight name, value) assigned once built


@dataclasses.dataclass(frozen=True)
class Plan:
    name: str
    inputs: tuple[Input, ...]
    structure: str  # how the model takes its inputs: "tensor", "list" or "dict" (by input name)
    calls: tuple[Call, ...]
    outputs: Any  # the output structure: nested lists and dicts of values


def plan(conv: Converted, *, channels_last: bool = False) -> Plan:
    """The Keras model of ``conv``'s graph: in the graph's layouts, or with images channels-last."""
    if channels_last:
        conv, _ = to_channels_last(conv)
    return _Planner(conv).plan()


class _Planner:
    def __init__(self, conv: Converted):
        self.conv = conv
        self.graph: Graph = conv.graph
        self.taken: set[str] = set()
        self.calls: list[Call] = []
        self.bindings: dict[str, tuple[str, int]] = {}  # symbol -> (graph input, axis) it is the size of
        self.natives: dict[int, Native] = find_native(conv)

    def plan(self) -> Plan:
        if not self.graph.inputs:
            raise GraphError("a Keras model needs at least one input; this graph has none")
        inputs, structure = self._inputs()
        self.anchor = self.graph.inputs[0]
        self._weights()
        self._constants()
        for index, node in enumerate(self.graph.nodes):
            native = self.natives.get(index)
            if native is None:
                self._op(node)
            else:
                self._native(node, native)
        name = identifier(str(self.conv.metadata.get("source_model", "model")), "model")
        return Plan(name, inputs, structure, tuple(self.calls), self._outputs())

    def _name(self, text: str, prefix: str) -> str:
        name = unique_name(identifier(text, prefix), self.taken)
        self.taken.add(name)
        return name

    def _call(self, name: str, kind: str, config: Mapping, inputs, outputs, weights=()) -> None:
        self.calls.append(Call(name, kind, dict(config), tuple(inputs), tuple(outputs), tuple(weights)))

    # ---- inputs and outputs ------------------------------------------------------------------------------------

    def _inputs(self) -> tuple[tuple[Input, ...], str]:
        graph = self.graph
        inputs = []
        for value, name in zip(graph.inputs, signature.input_names(graph)):
            t = graph.types[value]
            batch_shape = tuple(d if isinstance(d, int) else None for d in t.shape)
            inputs.append(Input(value, self._name(name, "input"), batch_shape, t.dtype))
            for axis, d in enumerate(t.shape):
                if dims.is_symbol(d):
                    self.bindings.setdefault(d, (value, axis))
        return tuple(inputs), input_structure(graph)

    def _outputs(self):
        constants = _const_paths(self.graph.output_tree)
        if constants:
            raise GraphError(
                f"outputs {constants} were fixed when the model was traced; a Keras model returns tensors only"
            )
        return output_values(self.graph)

    # ---- weights and constants ---------------------------------------------------------------------------------

    def _weights(self) -> None:
        """The variables no Keras layer owns, in a ``Weights`` layer per source module.

        A variable no node reads (torch's ``num_batches_tracked``) has no place in the model.
        """
        owned = {value for native in self.natives.values() for _, value, _ in native.weights}
        read = {value for node in self.graph.nodes for value in node.inputs}
        flat = flatten_variables(self.conv.variables)
        modules: dict[tuple[str, ...], list[tuple[str, Any]]] = {}
        for value, var in self.graph.variables.items():
            if value not in owned and value in read:
                modules.setdefault(var.path[:-1], []).append((value, var))
        for path, members in modules.items():
            specs, weights = {}, []
            for value, var in members:
                t = self.graph.types[value]
                leaf = unique_name(identifier(var.path[-1], "w"), specs)
                trainable = var.collection == "params" and np.issubdtype(np.dtype(t.dtype), np.floating)
                specs[leaf] = {"shape": list(t.shape), "dtype": t.dtype, "trainable": bool(trainable)}
                weights.append((leaf, flat[var.key]))
            name = self._name("_".join(path) or "weights", "weights")
            self._call(name, "Weights", {"weights": specs}, [self.anchor], [v for v, _ in members], weights)

    def _constants(self) -> None:
        """Constants that are not scalars (those go into the ``Op`` that uses them) or are outputs, as
        non-trainable weights of one layer."""
        outputs = set(self.graph.outputs)
        kept = {n: a for n, a in self.graph.constants.items() if np.ndim(a) or n in outputs}
        if not kept:
            return
        specs, weights = {}, []
        for value, array in kept.items():
            t = self.graph.types[value]
            leaf = unique_name(identifier(value, "c"), specs)
            specs[leaf] = {"shape": list(t.shape), "dtype": t.dtype, "trainable": False}
            weights.append((leaf, array))
        self._call(self._name("constants", "constants"), "Weights", {"weights": specs}, [self.anchor], kept, weights)

    # ---- nodes ----------------------------------------------------------------------------------------------------

    def _native(self, node: Node, native: Native) -> None:
        flat = flatten_variables(self.conv.variables)
        name = self._name(native.module, "layer")
        value = native.input
        for suffix, kind, config in native.before:
            after = f"{name}:{suffix}"
            self._call(self._name(f"{name}_{suffix}", "layer"), kind, config, [value], [after])
            value = after
        result = node.outputs[0] if not native.after else f"{name}:out"
        weights = [(keras_name, transform(flat[self.graph.variables[v].key])) for keras_name, v, transform in native.weights]
        self._call(name, native.kind, native.config, [value], [result], weights)
        for i, (suffix, kind, config) in enumerate(native.after):
            out = node.outputs[0] if i == len(native.after) - 1 else f"{name}:{suffix}"
            self._call(self._name(f"{name}_{suffix}", "layer"), kind, config, [result], [out])
            result = out

    def _op(self, node: Node) -> None:
        graph = self.graph
        arguments, tensors = [], []
        for value in node.inputs:
            if value is None:
                arguments.append(None)
            elif value in graph.constants and not np.ndim(graph.constants[value]) and value not in graph.outputs:
                arguments.append({"value": np.asarray(graph.constants[value]).item(), "dtype": graph.types[value].dtype})
            else:
                arguments.append("tensor")
                tensors.append(value)
        extras, symbols = [], {}
        for symbol in sorted(_attribute_symbols(node)):
            if symbol not in self.bindings:
                raise GraphError(f"{node.describe()}: its attributes use {symbol!r}, which no input's shape gives")
            value, axis = self.bindings[symbol]
            if value not in extras:
                extras.append(value)
            symbols[symbol] = [extras.index(value), axis]
        if not tensors and not extras:
            extras.append(self.anchor)  # a Keras layer needs an input; this op reads none (a filled tensor)
        outputs = [[[d if isinstance(d, int) else None for d in graph.types[o].shape], graph.types[o].dtype] for o in node.outputs]
        where = node.source.module.replace(".", "_").replace("/", "_")
        config = {"op": node.op, "attrs": dict(node.attrs), "arguments": arguments, "symbols": symbols, "outputs": outputs}
        self._call(self._name(f"{where}_{node.op}" if where else node.op, "op"), "Op", config, [*tensors, *extras], node.outputs)


def output_values(graph: Graph):
    """The graph's output values in the structure the Keras model returns them (tuples as lists)."""
    return _lists(tree.unflatten(graph.output_tree, lambda value: value))


def input_structure(graph: Graph) -> str:
    """How the Keras model takes the graph's inputs: ``"tensor"`` (one, passed positionally), ``"list"``
    (several, positionally) or ``"dict"`` (by name: the source took keyword arguments or nested ones)."""
    args, kwargs = graph.input_tree["items"]
    positional = not kwargs["keys"] and all(item["kind"] == "tensor" for item in args["items"])
    return ("tensor" if len(graph.inputs) == 1 else "list") if positional else "dict"


def _attribute_symbols(node: Node) -> set[str]:
    """The dimension symbols a node's symbolic attributes name."""
    found: set[str] = set()
    schema = REGISTRY[node.op].attrs
    for name, value in node.attrs.items():
        if schema[name].symbolic:
            for d in value if isinstance(value, tuple) else (value,):
                if isinstance(d, str):
                    found |= dims.symbols(d)
    return found


def _const_paths(spec, path="") -> list[str]:
    if spec["kind"] == "const":
        return [path or "output"]
    keys = spec.get("keys") or range(len(spec.get("items", ())))
    return [p for key, item in zip(keys, spec.get("items", ())) for p in _const_paths(item, f"{path}[{key!r}]")]


def _lists(outputs):
    """Tuples as lists (what Keras's functional API takes), dicts and lists as they are."""
    if isinstance(outputs, Mapping):
        return {k: _lists(v) for k, v in outputs.items()}
    if isinstance(outputs, (tuple, list)):
        return [_lists(v) for v in outputs]
    return outputs
