"""Keras backend: a converted model as a Functional Keras 3 model, under any Keras backend.

``to_keras(conv)`` builds a ``keras.Model`` whose layers are the graph's: a
``Weights`` layer for each module of the source model (its variables, named
and laid out as the Flax variables are: ``layer1_0_conv1`` holds ``kernel``),
and an ``Op`` layer for each node, run by the op's Keras lowering. It trains
with ``fit`` (``params`` trainable, ``batch_stats`` not), its layers can be
frozen, and its head cut off and replaced with the functional API;
``model.save("m.keras")`` writes it with its weights.

Inputs are the graph's, named as a SavedModel's serving signature names them
(``x``, ``input_ids``), with the source's dtypes; symbolic dimensions
(``batch``, ``seq``) are ``None``. A model called with keyword arguments in
the source takes a dict of them; one called positionally takes a list, or its
one tensor. Outputs have the source's structure (tuples become lists).
Activations keep the source's layout: a model converted from torch takes
``NCHW`` images, as torch did.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras
import numpy as np

from unigraph import dims, signature, tree
from unigraph.backends.keras_layers import Op, Weights
from unigraph.converted import Converted
from unigraph.errors import GraphError
from unigraph.ir import Graph
from unigraph.names import identifier, unique_name
from unigraph.ops import REGISTRY
from unigraph.params import flatten_variables


def to_keras(conv: Converted) -> keras.Model:
    """The converted model as a Functional ``keras.Model`` with the conversion's weights."""
    return _Builder(conv).model()


class _Builder:
    def __init__(self, conv: Converted):
        self.conv = conv
        self.graph: Graph = conv.graph
        self.taken: set[str] = set()
        self.env: dict[str, Any] = {}
        self.bindings: dict[str, tuple[str, int]] = {}  # symbol -> (graph input, axis) it is the size of
        self.assign: list[tuple[Weights, str, Any]] = []  # (layer, weight name, value) once built

    def model(self) -> keras.Model:
        inputs = self._inputs()
        if not self.graph.inputs:
            raise GraphError("a Keras model needs at least one input; this graph has none")
        self.anchor = self.env[self.graph.inputs[0]]
        self._weights()
        self._constants()
        for node in self.graph.nodes:
            self._node(node)
        outputs = self._outputs()
        name = identifier(str(self.conv.metadata.get("source_model", "model")), "model")
        model = keras.Model(inputs, outputs, name=name)
        for layer, weight, value in self.assign:
            layer.named[weight].assign(np.asarray(value))
        return model

    def _name(self, text: str, prefix: str) -> str:
        name = unique_name(identifier(text, prefix), self.taken)
        self.taken.add(name)
        return name

    # ---- inputs and outputs ------------------------------------------------------------------------------------

    def _inputs(self):
        graph = self.graph
        by_name = {}
        for value, name in zip(graph.inputs, signature.input_names(graph)):
            t = graph.types[value]
            batch_shape = tuple(d if isinstance(d, int) else None for d in t.shape)
            self.env[value] = by_name[value] = keras.Input(batch_shape=batch_shape, dtype=t.dtype, name=self._name(name, "input"))
            for axis, d in enumerate(t.shape):
                if dims.is_symbol(d):
                    self.bindings.setdefault(d, (value, axis))
        args, kwargs = graph.input_tree["items"]
        positional = not kwargs["keys"] and all(item["kind"] == "tensor" for item in args["items"])
        if positional:
            tensors = [by_name[item["name"]] for item in args["items"]]
            return tensors[0] if len(tensors) == 1 else tensors
        return {kt.name: kt for kt in by_name.values()}

    def _outputs(self):
        constants = _const_paths(self.graph.output_tree)
        if constants:
            raise GraphError(
                f"outputs {constants} were fixed when the model was traced; a Keras model returns tensors only"
            )
        return _lists(tree.unflatten(self.graph.output_tree, self.env.__getitem__))

    # ---- weights and constants ---------------------------------------------------------------------------------

    def _weights(self):
        flat = flatten_variables(self.conv.variables)
        modules: dict[tuple[str, ...], list[tuple[str, Any]]] = {}
        for value, var in self.graph.variables.items():
            modules.setdefault(var.path[:-1], []).append((value, var))
        for path, members in modules.items():
            specs, names = {}, {}
            for value, var in members:
                t = self.graph.types[value]
                leaf = unique_name(identifier(var.path[-1], "w"), specs)
                trainable = var.collection == "params" and np.issubdtype(np.dtype(t.dtype), np.floating)
                specs[leaf] = {"shape": list(t.shape), "dtype": t.dtype, "trainable": bool(trainable)}
                names[value] = leaf
            layer = Weights(specs, name=self._name("_".join(path) or "weights", "weights"))
            outputs = layer(self.anchor)
            for value, var in members:
                self.env[value] = outputs[names[value]]
                self.assign.append((layer, names[value], flat[var.key]))

    def _constants(self):
        """Constants that are not scalars (those go into the ``Op`` that uses them) or are outputs, as
        non-trainable weights of one layer."""
        outputs = set(self.graph.outputs)
        kept = {n: a for n, a in self.graph.constants.items() if np.ndim(a) or n in outputs}
        if not kept:
            return
        specs = {}
        for value in kept:
            t = self.graph.types[value]
            specs[unique_name(identifier(value, "c"), specs)] = {"shape": list(t.shape), "dtype": t.dtype, "trainable": False}
        layer = Weights(specs, name=self._name("constants", "constants"))
        outputs_of = layer(self.anchor)
        for (value, array), weight in zip(kept.items(), specs):
            self.env[value] = outputs_of[weight]
            self.assign.append((layer, weight, array))

    # ---- nodes ----------------------------------------------------------------------------------------------------

    def _node(self, node):
        graph = self.graph
        arguments, tensors = [], []
        for value in node.inputs:
            if value is None:
                arguments.append(None)
            elif value in graph.constants and value not in self.env:
                array = graph.constants[value]
                arguments.append({"value": np.asarray(array).item(), "dtype": graph.types[value].dtype})
            else:
                arguments.append("tensor")
                tensors.append(self.env[value])
        extras, symbols = [], {}
        for symbol in sorted(_attribute_symbols(node)):
            if symbol not in self.bindings:
                raise GraphError(f"{node.describe()}: its attributes use {symbol!r}, which no input's shape gives")
            value, axis = self.bindings[symbol]
            anchor = self.env[value]
            if not any(anchor is e for e in extras):
                extras.append(anchor)
            symbols[symbol] = [next(i for i, e in enumerate(extras) if e is anchor), axis]
        if not tensors and not extras:
            extras.append(self.anchor)  # a Keras layer needs an input; this op reads none (a filled tensor)
        outputs = [[[d if isinstance(d, int) else None for d in graph.types[o].shape], graph.types[o].dtype] for o in node.outputs]
        where = node.source.module.replace(".", "_").replace("/", "_")
        layer = Op(node.op, dict(node.attrs), arguments, symbols, outputs, name=self._name(f"{where}_{node.op}" if where else node.op, "op"))
        result = layer(*tensors, *extras)
        results = result if len(node.outputs) > 1 else [result]
        self.env.update(zip(node.outputs, results))


def _attribute_symbols(node) -> set[str]:
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

