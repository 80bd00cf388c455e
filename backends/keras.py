"""Keras backend: a converted model as a Functional Keras 3 model, under any Keras backend.

``to_keras(conv)`` builds the ``keras.Model`` that ``backends/keras_plan.py``
plans: Keras's own layers (``Dense``, ``Conv2D``, ``BatchNormalization``, …)
where the graph has their op with its parameters, named after the source
module (``layer1_0_conv1``); an ``Op`` layer running the op's Keras lowering
for every other node; a ``Weights`` layer per source module for the variables
no Keras layer owns. It trains with ``fit`` (``params`` trainable,
``batch_stats`` not), its layers can be frozen, and its head cut off and
replaced with the functional API; ``model.save("m.keras")`` writes it with
its weights.

Inputs are the graph's, named as a SavedModel's serving signature names them
(``x``, ``input_ids``), with the source's dtypes; symbolic dimensions
(``batch``, ``seq``) are ``None``. A model called with keyword arguments in
the source takes a dict of them; one called positionally takes a list, or its
one tensor. Outputs have the source's structure (tuples become lists).
Activations keep the source's layout: a model converted from torch takes
``NCHW`` images, as torch did, and runs its convolutions channels-last
between ``Permute`` layers (TensorFlow's CPU kernels have none channels-first).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from unigraph import signature
from unigraph.backends.keras_layers import Op, Weights
from unigraph.backends.keras_plan import Plan, input_structure, output_values, plan
from unigraph.channels_last import Layout, to_channels_last
from unigraph.converted import Converted, host_arrays

#: The layers of unigraph's own a plan may name; any other kind is a keras.layers class.
_OWN_LAYERS = {"Weights": Weights, "Op": Op}


def to_keras(conv: Converted, *, channels_last: bool = False) -> keras.Model:
    """The converted model as a Functional ``keras.Model`` with the conversion's weights.

    With ``channels_last``, image inputs and outputs are ``(N, *spatial, C)``
    and no transposes are left around convolutions (``unigraph.channels_last``).
    """
    return build(plan(conv, channels_last=channels_last))


def build(p: Plan) -> keras.Model:
    """The Keras model ``p`` describes, its weights assigned."""
    env: dict[str, Any] = {}
    for spec in p.inputs:
        env[spec.value] = keras.Input(batch_shape=spec.batch_shape, dtype=spec.dtype, name=spec.name)
    layers = []
    for call in p.calls:
        kind = _OWN_LAYERS.get(call.kind) or getattr(keras.layers, call.kind)
        layer = kind(**call.config, name=call.name)
        result = layer(*(env[v] for v in call.inputs))
        if call.kind == "Weights":
            results = [result[key] for key in call.config["weights"]]
        else:
            results = [result] if len(call.outputs) == 1 else list(result)
        env.update(zip(call.outputs, results))
        layers.append((layer, call))
    tensors = [env[spec.value] for spec in p.inputs]
    inputs = {t.name: t for t in tensors} if p.structure == "dict" else tensors[0] if p.structure == "tensor" else tensors
    model = keras.Model(inputs, keras.tree.map_structure(env.__getitem__, p.outputs), name=p.name)
    for layer, call in layers:
        by_name = {w.name: w for w in layer.weights}
        for name, value in call.weights:
            by_name[name].assign(np.asarray(value))
    return model


def call_as_source(model: keras.Model, conv: Converted, *, channels_last: bool = False) -> Callable:
    """``model`` (``conv``'s Keras model, built or loaded from a file) called with the source model's
    arguments and returning its outputs' layouts, as NumPy arrays: what the checker runs for a Keras output."""
    graph, layout = conv.graph, Layout()
    if channels_last:
        rewritten, layout = to_channels_last(conv)
        graph = rewritten.graph
    names = signature.input_names(graph)
    structure = input_structure(graph)
    values = output_values(graph)

    def call(*args, **kwargs):
        arrays = signature.bind(conv.graph, *host_arrays((args, kwargs)))
        arrays = [np.transpose(a, layout.inputs[v]) if v in layout.inputs else a for v, a in zip(graph.inputs, arrays)]
        inputs = dict(zip(names, arrays)) if structure == "dict" else arrays[0] if structure == "tensor" else arrays
        outputs = keras.tree.map_structure(keras.ops.convert_to_numpy, model(inputs))

        def source_layout(value, y):
            return np.transpose(y, np.argsort(layout.outputs[value])) if value in layout.outputs else y

        return keras.tree.map_structure(source_layout, values, outputs)

    return call
