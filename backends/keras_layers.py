"""The Keras layers of a converted model besides Keras's own: its weights, and its graph's ops.

- ``Weights``: the variables of one module of the source model (a layer's
  kernel and bias, a norm's statistics), returned as tensors by name. Ops
  take them as inputs, so a variable used by several ops (tied embeddings)
  is one Keras variable. ``params`` are trainable, ``batch_stats`` and
  constants are not; setting ``trainable = False`` on the layer freezes it.
- ``Op``: one node of the graph, run by its Keras lowering
  (``unigraph.backends.keras_ops``). Its output types are the graph's, so
  Keras builds the model without tracing anything; dimension symbols its
  attributes use (``reshape`` to ``(batch, 16)``) are read at run time from
  the model inputs that bind them, which the layer takes as extra inputs.

Both are registered with Keras (package ``unigraph``): a model saved with
``model.save("m.keras")`` loads with ``keras.saving.load_model`` in any process
that has imported ``unigraph.backends.keras`` (``to_keras_source`` writes a
file that needs no unigraph at all).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras
from keras import ops

from unigraph.ops.registry import freeze

#: A Keras weight's shape, dtype and trainability, as a ``Weights`` config holds it.
WeightSpec = Mapping[str, Any]


@keras.saving.register_keras_serializable(package="unigraph")
class Weights(keras.layers.Layer):
    """Variables by name (``{"kernel": {"shape": [3, 8], "dtype": "float32", "trainable": True}}``).

    Called on any model input (a Keras layer needs one; it is not read),
    returns ``{name: tensor}``.
    """

    def __init__(self, weights: Mapping[str, WeightSpec], **kwargs):
        super().__init__(**kwargs)
        self.specs = {name: dict(spec) for name, spec in weights.items()}
        self.named = {
            name: self.add_weight(
                name=name,
                shape=tuple(spec["shape"]),
                dtype=spec["dtype"],
                trainable=spec["trainable"],
                initializer="zeros",
            )
            for name, spec in self.specs.items()
        }

    def call(self, anchor):
        # a tensor read from each variable, which the gradient flows through: TensorFlow's own variable would
        # pass for a tensor (convert_to_tensor returns it) yet lacks what Keras's ops use (``ndim``)
        return {name: ops.copy(variable.value) for name, variable in self.named.items()}

    def compute_output_spec(self, anchor):
        return {
            name: keras.KerasTensor(tuple(spec["shape"]), dtype=spec["dtype"]) for name, spec in self.specs.items()
        }

    def get_config(self):
        return {**super().get_config(), "weights": self.specs}


@keras.saving.register_keras_serializable(package="unigraph")
class Op(keras.layers.Layer):
    """One graph node: ``op`` with ``attrs`` on the layer's inputs.

    - ``arguments``: the node's inputs in order, each ``"tensor"`` (the next
      of the layer's inputs), ``None`` (an absent optional input) or
      ``{"value": v, "dtype": d}`` (a scalar constant of the graph);
    - ``symbols``: ``{symbol: [k, axis]}``: the symbol is the size of ``axis``
      of the ``k``-th extra input, which follow the tensor arguments;
    - ``outputs``: the output types, ``[[shape with None for symbols], dtype]``.
    """

    def __init__(
        self,
        op: str,
        attrs: Mapping[str, Any],
        arguments: Sequence[Any],
        symbols: Mapping[str, Sequence[int]],
        outputs: Sequence[Sequence[Any]],
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.op = op
        self.attrs = {name: freeze(value) for name, value in attrs.items()}
        self.arguments = list(arguments)
        self.symbols = {name: tuple(where) for name, where in symbols.items()}
        self.output_types = [(tuple(shape), dtype) for shape, dtype in outputs]

    def call(self, *inputs):
        from unigraph.backends.keras_runtime import apply

        given = list(inputs)
        args = []
        for argument in self.arguments:
            if argument == "tensor":
                args.append(given.pop(0))
            elif argument is None:
                args.append(None)
            else:
                args.append(ops.convert_to_tensor(argument["value"], dtype=argument["dtype"]))
        symbols = {name: ops.shape(given[k])[axis] for name, (k, axis) in self.symbols.items()}
        results = apply(self.op, self.attrs, args, symbols, where=self.name)
        return results[0] if len(results) == 1 else list(results)

    def compute_output_spec(self, *inputs):
        specs = [keras.KerasTensor(shape, dtype=dtype) for shape, dtype in self.output_types]
        return specs[0] if len(specs) == 1 else specs

    def get_config(self):
        return {
            **super().get_config(),
            "op": self.op,
            "attrs": self.attrs,
            "arguments": self.arguments,
            "symbols": self.symbols,
            "outputs": [[list(shape), dtype] for shape, dtype in self.output_types],
        }
