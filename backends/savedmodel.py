"""TF SavedModel backend: a converted model as a SavedModel, through jax2tf.

The graph's JAX function is lowered once to StableHLO and embedded in the
SavedModel as one ``XlaCallModule`` op (jax2tf's *native serialization*), so
there is no per-op TensorFlow translation to fall behind the op set: what runs
under ``jax.jit`` runs in TensorFlow. Symbolic dimensions of the graph's inputs
(``batch``, ``seq``) become shape-polymorphic dimensions, so they stay dynamic
in TensorFlow too.

The variables are ``tf.Variable``s passed to that op as arguments, not
constants folded into it: they live in the SavedModel's checkpoint (models
over 2 GB save), can be read and assigned after loading, and get gradients,
since jax2tf saves the JAX VJP (also lowered to StableHLO) as the op's custom
gradient. The saved object follows TF Hub's Reusable SavedModel API.

TensorFlow reads that StableHLO only when a signature is first called, and
reads only its own StableHLO version, older than jax's: each module is
rewritten for the installed TensorFlow (``stablehlo_compat``: composites to
calls, the bytecode at TensorFlow's version), and the staged SavedModel is
loaded and called once in a TensorFlow process (``savedmodel_proof``) before
it is renamed into place. One that TensorFlow cannot run raises
``LoweringError`` and nothing is written.
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

from unigraph.native_order import before_tensorflow

before_tensorflow()

import jax  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from jax.experimental import jax2tf  # noqa: E402

from unigraph import tree  # noqa: E402
from unigraph.backends import savedmodel_proof, stablehlo_compat  # noqa: E402
from unigraph.io import sniff  # noqa: E402
from unigraph.io.atomic import atomic_directory  # noqa: E402
from unigraph.converted import Converted  # noqa: E402
from unigraph.dtypes import jax_dtype, numpy_dtype  # noqa: E402
from unigraph.errors import CheckpointError  # noqa: E402
from unigraph.flax import run as run_graph  # noqa: E402
from unigraph.ir import Graph  # noqa: E402
from unigraph.signature import input_names as signature_input_names  # noqa: E402
from unigraph.signature import output_names as signature_output_names  # noqa: E402

#: Platforms jax2tf can lower for; the SavedModel runs only on those it was lowered for.
PLATFORMS = ("cpu", "cuda", "rocm", "tpu")
DEFAULT_PLATFORMS = ("cpu", "cuda")


def save(
    converted: Converted,
    path: str | os.PathLike,
    *,
    platforms: Sequence[str] | str | None = None,
    overwrite: bool = False,
) -> Path:
    """Writes ``converted`` as a TF SavedModel directory at ``path``; returns the path.

    ``platforms`` are those the model is lowered for (default: cpu and cuda);
    the SavedModel refuses to run elsewhere. The directory appears complete or
    not at all, and only once TensorFlow has loaded and called it (else
    ``LoweringError``); an existing ``path`` raises ``OutputExistsError``
    unless ``overwrite=True``.
    """
    platforms = _check_platforms(platforms)
    savedmodel_proof.start()  # TensorFlow's import in the child overlaps the lowering here
    with atomic_directory(path, overwrite=overwrite) as staging:
        try:
            _write(converted, staging, platforms, gradients=True)
        except ValueError as error:
            if "tracing gradients" not in str(error):
                raise
            reason = str(error.__cause__ or error).strip().splitlines()[-1].strip()
            warnings.warn(
                f"{path}: saved without gradients, since the model's JAX VJP could not be "
                f"lowered ({reason}). The SavedModel serves, but TensorFlow gets no gradients "
                "for its variables (None); please report the model's ops to unigraph.",
                stacklevel=2,
            )
            shutil.rmtree(staging)
            staging.mkdir()
            _write(converted, staging, platforms, gradients=False)
        savedmodel_proof.prove(staging, converted.graph, path, call="cpu" in platforms)
    return Path(path)


def _write(converted: Converted, directory: Path, platforms: Sequence[str], gradients: bool) -> None:
    root, signatures = _build(converted, platforms, gradients)
    tf.saved_model.save(
        root,
        str(directory),
        signatures=signatures,
        options=tf.saved_model.SaveOptions(experimental_custom_gradients=gradients),
    )
    stablehlo_compat.rewrite_savedmodel(directory)


def load(path: str | os.PathLike):
    """``tf.saved_model.load`` with an error naming the path when it holds no SavedModel."""
    if not sniff.is_savedmodel(path):
        raise CheckpointError(f"{path} is not a SavedModel directory (it has no saved_model.pb)")
    return tf.saved_model.load(str(path))


def run(model, args: Sequence, kwargs: Mapping):
    """Calls a SavedModel (its directory, or what ``load`` returns) on NumPy inputs; NumPy outputs."""
    if isinstance(model, (str, os.PathLike)):
        model = load(model)
    return jax.tree.map(np.asarray, model(*args, **kwargs))


def _check_platforms(platforms) -> tuple[str, ...]:
    if platforms is None:
        return DEFAULT_PLATFORMS
    chosen = (platforms,) if isinstance(platforms, str) else tuple(platforms)
    unknown = [p for p in chosen if p not in PLATFORMS]
    if unknown or not chosen:
        raise ValueError(
            f"unknown platform(s) {unknown}: platforms are one or more of {list(PLATFORMS)} "
            "(NVIDIA GPUs are 'cuda')"
        )
    return tuple(dict.fromkeys(chosen))


# ---- the saved object --------------------------------------------------------------------


def _build(converted: Converted, platforms: Sequence[str], gradients: bool):
    """The object to save, and its serving signature.

    The object follows TF Hub's Reusable SavedModel API: ``variables``,
    ``trainable_variables`` (the ``params`` collection; ``batch_stats`` are
    not trainable), ``regularization_losses`` (none), and
    ``__call__(inputs…, training=False)`` returning the source model's output
    structure; ``serve`` is the same function, the endpoint
    ``keras.layers.TFSMLayer`` calls by default. The graph is an inference
    graph, so ``training`` is accepted and has no effect.
    """
    graph = converted.graph
    input_names = signature_input_names(graph)
    output_names = list(signature_output_names(graph))
    output_values = tree.tensor_names(graph.output_tree)
    leaves, treedef = jax.tree_util.tree_flatten_with_path(converted.variables)
    variables = [
        tf.Variable(_tensor(leaf), trainable=_key(keys[0]) == "params", name="/".join(map(_key, keys)))
        for keys, leaf in leaves
    ]
    lowered = _lower(converted, treedef, platforms, gradients)
    specs = [_spec(graph, value, name) for value, name in zip(graph.inputs, input_names)]

    def signature(*inputs):
        """Named inputs in, one named tensor per output leaf out (what TF Serving calls)."""
        inputs = [tf.cast(x, jax_dtype(graph.types[n].dtype)) for x, n in zip(inputs, graph.inputs)]
        values = dict(zip(graph.outputs, lowered(variables, *inputs)))
        return {
            name: tf.cast(values[value], numpy_dtype(graph.types[value].dtype))
            for name, value in zip(output_names, output_values)
        }

    signature = tf.function(signature, input_signature=specs, autograph=False)

    def call(*args, training=False, **kwargs):
        del training  # an inference graph: there is no training-mode behaviour to select
        if len(args) == 1 and isinstance(args[0], Mapping) and not kwargs:
            args, kwargs = (), dict(args[0])
        inputs = [*args, *(kwargs[n] for n in input_names[len(args):])]
        flat = iter(signature(*inputs)[name] for name in output_names)
        return tree.unflatten(graph.output_tree, lambda _: next(flat))

    call = tf.function(call, autograph=False)
    by_name = dict(zip(input_names, specs))
    for training in (False, True):  # the calls a restored function accepts:
        call.get_concrete_function(*specs, training=training)  # m(x, mask)
        call.get_concrete_function(training=training, **by_name)  # m(x=…, mask=…)
        call.get_concrete_function(by_name, training=training)  # m({"x": …, "mask": …}), as Keras passes

    root = tf.train.Checkpoint()
    root.variables = variables
    root.trainable_variables = [v for v in variables if v.trainable]
    root.regularization_losses = []
    root.__call__ = root.serve = call
    return root, {"serving_default": signature}


def _lower(converted: Converted, treedef, platforms: Sequence[str], gradients: bool):
    """The graph as a TF-callable ``(variable list, *inputs) -> tuple of outputs``.

    With ``gradients``, jax2tf registers the JAX VJP (lowered the same way)
    as the op's gradient, and saving writes it into the SavedModel; without,
    the outputs are constants to TensorFlow's autodiff.
    """
    graph, precision = converted.graph, converted.precision

    def apply(variable_list, *inputs):
        return tuple(run_graph(graph, jax.tree.unflatten(treedef, variable_list), list(inputs), precision))

    shapes = ["(" + ", ".join(str(d) for d in graph.types[n].shape) + ")" for n in graph.inputs]
    lowered = jax2tf.convert(
        apply,
        polymorphic_shapes=[None, *shapes],
        with_gradient=gradients,
        native_serialization_platforms=tuple(platforms),
    )
    if gradients:
        return lowered
    # Without, jax2tf's outputs refuse differentiation, which fails even a
    # forward pass under a GradientTape; cut them off instead (no gradients).
    return lambda *args: tuple(tf.stop_gradient(y) for y in lowered(*args))


def _spec(graph: Graph, value: str, name: str) -> tf.TensorSpec:
    t = graph.types[value]
    shape = [d if isinstance(d, int) else None for d in t.shape]
    return tf.TensorSpec(shape, tf.as_dtype(numpy_dtype(t.dtype)), name=name)


def _tensor(leaf) -> tf.Tensor:
    """A JAX array as a TF tensor, sharing its memory through DLPack where it can.

    Saving then needs no second copy of the parameters, which matters for
    models of many GB; the variables live only while saving and are never
    assigned, so the JAX arrays stay as they are. Arrays DLPack cannot hand
    over (on another device, or of a dtype it lacks) are copied through
    NumPy (into a tensor first: ``tf.Variable`` of an ndarray would hold two
    transient copies).
    """
    try:
        return tf.experimental.dlpack.from_dlpack(leaf.__dlpack__())
    except (BufferError, TypeError, ValueError, RuntimeError, tf.errors.OpError):
        return tf.convert_to_tensor(np.asarray(leaf))


def _key(key) -> str:
    return str(getattr(key, "key", getattr(key, "idx", key)))


# ---- names -----------------------------------------------------------------------------------
