"""Keras test models, in a module a worker process can import (custom classes registered).

``from_keras`` traces a model built under another Keras backend in a worker
running Keras on JAX, which rebuilds it from a ``.keras`` file: its custom
classes must be importable there. These are, so the frontend tests and the
zoo build their subclassed and custom-layer models here. Every builder seeds
Keras first; ``randomize`` gives the weights Keras initializes to constants
(norm scales and offsets, batch statistics) random values, so that a
conversion which drops or swaps them cannot pass.
"""

from __future__ import annotations

import keras
import numpy as np

PACKAGE = "unigraph_tests"


@keras.saving.register_keras_serializable(package=PACKAGE)
class ScaledResidual(keras.layers.Layer):
    """``x + alpha * gelu(dense(x))``: a custom layer with a weight of its own (no known role)."""

    def __init__(self, units: int, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.dense = keras.layers.Dense(units, name="proj")

    def build(self, input_shape):
        self.dense.build(input_shape)
        self.alpha = self.add_weight(name="alpha", shape=(self.units,), initializer="random_normal")

    def call(self, x):
        return x + self.alpha * keras.activations.gelu(self.dense(x))

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package=PACKAGE)
class TinyClassifier(keras.Model):
    """A subclassed model: its call is Python, not a graph of layers Keras could list."""

    def __init__(self, classes: int = 3, width: int = 16, **kwargs):
        super().__init__(**kwargs)
        self.classes, self.width = classes, width
        self.stem = keras.layers.Dense(width, activation="relu", name="stem")
        self.block = ScaledResidual(width, name="block")
        self.norm = keras.layers.LayerNormalization(name="norm")
        self.dropout = keras.layers.Dropout(0.5)
        self.head = keras.layers.Dense(classes, name="head")

    def call(self, x, training=False):
        h = self.norm(self.block(self.stem(x)))
        return self.head(self.dropout(h, training=training))

    def get_config(self):
        return {**super().get_config(), "classes": self.classes, "width": self.width}


@keras.saving.register_keras_serializable(package=PACKAGE)
class TriangularFactor(keras.layers.Layer):
    """The R of a QR decomposition: primitives (``geqrf``, …) unigraph does not translate."""

    def call(self, x):
        return keras.ops.qr(x)[1]


@keras.saving.register_keras_serializable(package=PACKAGE)
class BatchDependent(keras.layers.Layer):
    """A Python branch on the batch size, which JAX cannot take on a symbolic one."""

    def call(self, x):
        return x * 2.0 if x.shape[0] > 1 else x

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package=PACKAGE)
class NoTrainingFlag(keras.Model):
    """A subclassed model whose ``call`` takes no ``training`` (Keras passes it only to calls that do)."""

    def __init__(self, width: int = 8, **kwargs):
        super().__init__(**kwargs)
        self.width = width
        self.hidden = keras.layers.Dense(width, activation="tanh", name="hidden")
        self.norm = keras.layers.BatchNormalization(name="norm")
        self.head = keras.layers.Dense(2, name="head")

    def build(self, input_shape):
        self.hidden.build(input_shape)
        self.norm.build((*input_shape[:-1], self.width))
        self.head.build((*input_shape[:-1], self.width))

    def call(self, x):
        return self.head(self.norm(self.hidden(x)))

    def get_config(self):
        return {**super().get_config(), "width": self.width}


def no_training_flag(features: int = 16) -> keras.Model:
    """Built by ``model.build((None, features))``, never called."""
    keras.utils.set_random_seed(0)
    model = NoTrainingFlag(name="no_training_flag")
    model.build((None, features))
    return randomize(model)


@keras.saving.register_keras_serializable(package=PACKAGE)
class ShortSequencesDoubled(keras.layers.Layer):
    """A Python branch on the sequence length: a symbolic trace would convert one side only."""

    def call(self, x):
        return x * 2.0 if x.shape[1] <= 4 else x

    def compute_output_shape(self, input_shape):
        return input_shape


def tiny_classifier(features: int = 8) -> keras.Model:
    keras.utils.set_random_seed(0)
    model = TinyClassifier(name="tiny_classifier")
    model(np.zeros((1, features), np.float32))
    return randomize(model)


def text_model(vocab: int = 40, length: int = 12) -> keras.Model:
    """Functional: Embedding, MultiHeadAttention, LayerNormalization, an LSTM and a Dense head."""
    keras.utils.set_random_seed(0)
    ids = keras.Input((length,), dtype="int32", name="token_ids")
    h = keras.layers.Embedding(vocab, 16, name="embedding")(ids)
    attended = keras.layers.MultiHeadAttention(num_heads=2, key_dim=8, name="attention")(h, h)
    h = keras.layers.LayerNormalization(name="norm")(h + attended)
    h = keras.layers.LSTM(12, name="lstm")(h)
    logits = keras.layers.Dense(5, name="head")(h)
    return randomize(keras.Model(ids, logits, name="text_model"))


def branching_model() -> keras.Model:
    """Functional with a nested Sequential, a shared layer, dict inputs and list outputs."""
    keras.utils.set_random_seed(0)
    inner = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(8, name="d1"), keras.layers.BatchNormalization(name="bn")],
        name="inner",
    )
    image = keras.Input((8, 8, 3), name="image")
    features = keras.Input((6,), name="features")
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(image)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    shared = keras.layers.Dense(5, name="shared")
    left = shared(keras.layers.Dense(8, name="widen")(x))
    right = shared(inner(features))
    outputs = [keras.layers.Add(name="sum")([left, right]), keras.layers.Softmax(name="probs")(right)]
    return randomize(keras.Model({"image": image, "features": features}, outputs, name="branching"))


def randomize(model: keras.Model, seed: int = 1) -> keras.Model:
    """Random values for weights Keras initializes to constants (scales, offsets, statistics, biases)."""
    rng = np.random.default_rng(seed)
    for v in model.variables:
        leaf = v.path.rsplit("/", 1)[-1]
        if leaf in ("gamma", "moving_variance"):
            v.assign(rng.uniform(0.5, 1.5, v.shape).astype(v.dtype))
        elif leaf in ("beta", "moving_mean", "bias"):
            v.assign((0.1 * rng.normal(size=v.shape)).astype(v.dtype))
    return model
