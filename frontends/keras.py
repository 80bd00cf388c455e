"""Keras frontend: any Keras 3 model, traced under Keras's JAX backend and translated from its jaxpr.

A table of known layers cannot cover subclassed models and custom layers
(keras_hub backbones are both), so nothing here knows a layer: the model runs
through ``model.stateless_call`` under ``jax.make_jaxpr`` and the jaxpr
frontend (``frontends/jaxpr.py``) translates the primitives. What Keras adds
is kept:

- node sources are Keras layer paths (Keras opens a JAX name scope per layer
  call: ``inner/dense_1``, ``lstm/lstm_cell``), with the source line of the
  layer's code where it is outside Keras;
- variables keep their Keras paths as source names and take Flax leaf names
  and collections: ``gamma`` → ``scale``, ``beta`` → ``bias``,
  ``moving_mean``/``moving_variance`` → ``mean``/``var``, ``embeddings`` →
  ``embedding``; trainable variables are ``params``, non-trainable floating
  ones (batch statistics, frozen layers) ``batch_stats``, other
  non-trainable ones (seed-generator states) graph constants. The ParamMap
  gives the Keras names back (``conv.param_map.to_source(conv.variables)``);
- inputs and outputs keep the model's structure (a tensor, a list, a dict)
  and its input names.

Keras fixes its backend when it is imported (``KERAS_BACKEND``). When the
caller's Keras runs another backend (TensorFlow by default), the model is
saved to a temporary ``.keras`` file and traced in a worker process
(``python -m unigraph.frontends.keras_worker``) running Keras on JAX, which
sends back a ``.ug`` bundle. Custom classes must then be importable by that
process: defined in a module (not ``__main__`` or a function body);
``from_keras`` passes the worker the modules of the model's own classes and
of everything registered with ``@keras.saving.register_keras_serializable``.

Files are loaded with ``safe_mode`` on: a ``Lambda`` layer holding Python
bytecode is refused, never run (a model object's own temporary file is
trusted, since its code already runs in the caller's process).
"""

from __future__ import annotations

import collections
import dataclasses
import importlib
import inspect
import json
import os
import re
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from unigraph import dims, errors
from unigraph.converted import Converted
from unigraph.errors import CheckpointError, ExportError, first_line
from unigraph.frontends.jaxpr import BATCH, JaxVariable, trace, translate
from unigraph.io import sniff
from unigraph.ir import Source
from unigraph.names import unique_name
from unigraph.signature import as_array

#: Keras variable leaf names → (Flax leaf name, parameter role).
KERAS_LEAVES = {
    "kernel": ("kernel", "kernel"),
    "bias": ("bias", "bias"),
    "gamma": ("scale", "scale"),
    "beta": ("bias", "bias"),
    "moving_mean": ("mean", "mean"),
    "moving_variance": ("var", "var"),
    "embeddings": ("embedding", "embedding"),
}

#: Suffixes of the files Keras 3 loads as models.
KERAS_FILES = (".keras", ".h5", ".hdf5")

#: Packages whose classes Keras finds by itself when it deserializes a model.
_KERAS_PACKAGES = ("keras", "keras_hub", "keras_nlp", "keras_cv", "keras_rs")

#: The file a worker writes its answer to, in the directory it was given.
RESULT = "result.json"


def from_keras(
    model,
    example_inputs: Any = None,
    *,
    custom_objects: Mapping[str, Any] | None = None,
    polymorphic_shapes: Any = BATCH,
    safe_mode: bool = True,
) -> Converted:
    """Converts a Keras 3 model (or a ``.keras``/``.h5`` file, or a Keras model directory).

    - ``model``: a ``keras.Model`` of any kind (Functional, Sequential,
      subclassed, custom layers), or a path to a file ``keras.saving.load_model``
      reads. A TensorFlow SavedModel directory is refused with what to do
      instead (Keras 3 cannot rebuild a model from it).
    - ``example_inputs``: what the model is called with (an array, a list or
      a dict of arrays). Without them, shapes and dtypes come from the model's
      ``keras.Input``s, or for a subclassed model from the shapes it was
      built with (``model.build(shape)`` or its first call; the model's input
      dtype): dimension 0 is the symbolic ``batch``, other unknown sizes are
      symbols ``dim1``, ``dim2``, … (by axis, shared between inputs). Bounds
      the model's code puts on them (a sequence length up to the position
      table's, ``dim1 <= 64``) are found while tracing and kept in
      ``metadata["shape_constraints"]``; sizes beyond them are outside the
      converted model's domain, as they are outside the source's.
    - ``polymorphic_shapes`` (with ``example_inputs``): ``"batch"`` (the
      default) makes dimension 0 symbolic where the model allows it (static
      with a warning elsewhere); ``None`` keeps every size static; or a JAX
      shape spec per input in the inputs' structure (``"(batch, seq)"``, or a
      dict of them).
    - ``custom_objects``: classes and functions a file needs (``{"MyLayer":
      MyLayer}``, or by importable name: ``{"MyLayer": "pkg.layers.MyLayer"}``).
    - ``safe_mode``: Keras's own, for files: a ``Lambda`` layer's bytecode is
      refused unless it is ``False`` (only for files you trust).

    The model runs in inference mode (``training=False``). When the caller's
    Keras runs another backend than JAX, tracing happens in a worker process
    (see the module docstring). Raises ``ExportError`` when Keras cannot
    trace or hand over the model, ``CheckpointError`` when a file cannot be
    loaded (naming the class or layer it needs), ``UnsupportedOpError``
    listing every JAX primitive without a translation.
    """
    if isinstance(model, (str, os.PathLike)):
        path = model_file(model)
        keras = _import_keras()
        if keras.backend.backend() == "jax":
            loaded = load_model(path, _resolve_all(custom_objects or {}), safe_mode=safe_mode)
            return convert_model(loaded, example_inputs, polymorphic_shapes)
        objects = {**registered_objects(keras), **_importable_all(custom_objects or {})}
        return _in_worker(path, example_inputs, polymorphic_shapes, objects, safe_mode=safe_mode)
    keras = _keras_of(model)
    if keras.backend.backend() == "jax":
        return convert_model(model, example_inputs, polymorphic_shapes)
    return _model_in_worker(keras, model, example_inputs, polymorphic_shapes, custom_objects or {})


# ---- the conversion (under Keras's JAX backend) ---------------------------------------------


def convert_model(
    model,
    example_inputs: Any = None,
    polymorphic_shapes: Any = BATCH,
    *,
    values: Sequence | None = None,
    source_names: Sequence[str] | None = None,
    layer_names: Mapping[str, str] | None = None,
) -> Converted:
    """Traces ``model.stateless_call`` (Keras on JAX) and translates the jaxpr.

    ``values`` (one per variable, trainable ones first; by default the
    variables' own) are what the variables hold. ``source_names`` (in the
    same order) and ``layer_names`` (this process's layer name → the
    caller's) let a worker give the caller's names to a model it rebuilt
    from a file: Keras numbers auto-named layers per process (``dense_7``
    there may be ``dense`` here).
    """
    import keras

    if keras.backend.backend() != "jax":
        raise RuntimeError(f"convert_model needs Keras's JAX backend; this process runs {keras.backend.backend()!r}")
    trainable, non_trainable = list(model.trainable_variables), list(model.non_trainable_variables)
    n = len(trainable)
    # Keras's __call__ passes `training` only to a `call` that names it; stateless_call runs `call` itself
    flags = {"training": False} if "training" in inspect.signature(model.call).parameters else {}

    def call(values, inputs):
        return model.stateless_call(values[:n], values[n:], inputs, **flags)[0]

    if values is None:
        values = [v.value for v in (*trainable, *non_trainable)]
    variables = keras_variables(trainable, non_trainable, values, source_names)
    what = f"the Keras model {model.name}"
    reference = _symbolic_inputs(model)
    constraints: list[str] = []
    if example_inputs is None:
        templates = _input_templates(model, reference)
        if templates is None:
            raise _inputs_unknown(model)
        inputs, traced, constraints = _trace_symbolic(call, list(values), templates, what)
    else:
        inputs = jax.tree.map(_as_array, example_inputs)
        shapes = polymorphic_shapes if polymorphic_shapes in (BATCH, None) else [polymorphic_shapes]
        traced = trace(
            call, list(values), (inputs,), {}, polymorphic_shapes=shapes, positional_names=["inputs"], what=what
        )
    metadata = {
        "source_framework": "keras",
        "source_version": keras.__version__,
        "source_model": model.name,
        "source_class": type(model).__name__,
    }
    if constraints:
        metadata["shape_constraints"] = constraints
    converted = translate(
        traced.jaxpr,
        variables=variables,
        input_names=_input_names(inputs, reference),
        in_tree=traced.in_tree,
        static_inputs=traced.static,
        out_tree=traced.out_tree,
        source_of=_layer_paths(model, layer_names or {}),
        metadata=metadata,
    )
    return converted


def keras_variables(
    trainable: Sequence, non_trainable: Sequence, values: Sequence, source_names: Sequence[str] | None = None
) -> list[JaxVariable]:
    """One ``JaxVariable`` per Keras variable (holding ``values``), in ``stateless_call``'s order.

    The source name is the Keras path (``block/layer_normalization/gamma``);
    the Flax path renames the leaf (``block/layer_normalization/scale``).
    """
    everything = [*trainable, *non_trainable]
    names = list(source_names) if source_names is not None else [v.path for v in everything]
    out, taken_names = [], set()
    taken_leaves: dict[tuple[str, ...], set[str]] = collections.defaultdict(set)  # by (collection, *parents)
    for i, (v, value, name) in enumerate(zip(everything, values, names)):
        *parents, leaf = name.split("/")
        flax_leaf, role = KERAS_LEAVES.get(leaf, (leaf, None))
        if i < len(trainable):
            collection = "params"
        elif np.issubdtype(np.dtype(v.dtype), np.floating):
            collection = "batch_stats"
        else:
            collection = "constant"
        leaf = unique_name(flax_leaf, taken_leaves[(collection, *parents)])
        source_name = unique_name(name, taken_names)
        taken_leaves[(collection, *parents)].add(leaf)
        taken_names.add(source_name)
        out.append(JaxVariable((*parents, leaf), collection, role, np.asarray(value), source_name))
    return out


def _symbolic_inputs(model):
    """The structure of ``keras.Input`` tensors the model is called on, or None (subclassed models)."""
    try:
        return model.input
    except (AttributeError, ValueError):
        inputs = getattr(model, "inputs", None)  # a Sequential built by a call keeps only these
        if not inputs:
            return None
        return inputs[0] if len(inputs) == 1 else list(inputs)


def _inputs_unknown(model) -> ExportError:
    return ExportError(
        f"{model.name} ({type(model).__name__}) has no symbolic inputs and was never built, so the "
        "shapes and dtypes it takes are unknown: pass example_inputs, what the model is called with (an "
        "array, a list or a dict of arrays), or build the model on its input shape (model.build(input_shape)) first"
    )


@dataclasses.dataclass(frozen=True)
class _Input:
    """One input the model takes: its shape (None for a size Keras leaves open) and dtype."""

    shape: tuple
    dtype: np.dtype


def _input_templates(model, reference):
    """The model's inputs as a structure of ``_Input``s, or None when Keras does not know them.

    They come from its ``keras.Input``s, else from the shapes a subclassed
    model was built with (``model.build(shape)`` or its first call), whose
    dtype is the model's input dtype. A model whose build took several
    arguments is not read: which call arguments they are is its own code's
    business.
    """
    if reference is not None:
        return jax.tree.map(lambda t: _Input(tuple(t.shape), np.dtype(t.dtype)), reference)
    config = model.get_build_config() if model.built else None
    if not config or "input_shape" not in config:
        return None
    return _shape_tree(config["input_shape"], np.dtype(model.input_dtype))


def _shape_tree(shapes, dtype: np.dtype):
    """A build config's shape (a tuple, or a list or dict of them) as ``_Input``s."""
    if isinstance(shapes, Mapping):
        return {k: _shape_tree(v, dtype) for k, v in shapes.items()}
    if all(d is None or isinstance(d, int) for d in shapes):
        return _Input(tuple(shapes), dtype)
    return [_shape_tree(s, dtype) for s in shapes]


def _specs(templates, constraints: Sequence[str] = ()):
    """Abstract inputs: dimension 0 ``batch``, other unknown sizes ``dim<axis>``, in one scope with ``constraints``."""
    scope = jax.export.SymbolicScope(constraints)

    def spec(t: _Input):
        sizes = ["batch" if axis == 0 else (f"dim{axis}" if d is None else str(d)) for axis, d in enumerate(t.shape)]
        shape = jax.export.symbolic_shape(", ".join(sizes), scope=scope) if sizes else ()
        return jax.ShapeDtypeStruct(shape, jax.dtypes.canonicalize_dtype(t.dtype))

    return jax.tree.map(spec, templates)


def _sized(templates, env: Mapping[str, int]):
    """Concrete abstract inputs: the symbols of ``_specs`` given the sizes in ``env``."""

    def spec(t: _Input):
        shape = tuple(env["batch"] if axis == 0 else (env[f"dim{axis}"] if d is None else d) for axis, d in enumerate(t.shape))
        return jax.ShapeDtypeStruct(shape, jax.dtypes.canonicalize_dtype(t.dtype))

    return jax.tree.map(spec, templates)


def _trace_symbolic(call, values: list, templates, what: str):
    """Traces ``call`` on symbolic inputs, learning the bounds the model's code needs on their sizes.

    A model often works for any size up to a limit (a sequence length up to
    its position table: ``lax.dynamic_slice`` asks whether ``dim1 <= 64``),
    which JAX cannot decide for an unbounded symbol. Each comparison on one
    symbol that JAX finds inconclusive is tried as a constraint of the
    symbolic scope, and kept only if the model fails on sizes that break it:
    then it states the model's own domain. Where the model runs on such sizes
    too, the comparison is a branch of its code, and a symbolic trace would
    convert one branch only; the sizes must then come from example_inputs.

    Returns the inputs, the ``Traced`` and the constraints kept.
    """
    constraints: list[str] = []
    while True:
        inputs = _specs(templates, constraints)
        try:
            traced = trace(call, values, (inputs,), {}, polymorphic_shapes=None, positional_names=["inputs"], what=what)
            return inputs, traced, constraints
        except ExportError as e:
            bound = _bound_asked(e.__cause__)
            why = ""
            if bound is not None and bound not in constraints:
                why = _runs_beyond(call, values, templates, constraints, bound)
                if not why:
                    constraints.append(bound)
                    continue
            raise ExportError(
                f"{e}\n  - the sizes came from the model's inputs ({_describe_specs(inputs)}){why}: pass "
                "example_inputs to fix the sizes the model cannot take symbolically"
            ) from e.__cause__


_COMPARISON = re.compile(r"comparison '([^']+)' (<=|>=|<|>) '([^']+)' is inconclusive")


def _bound_asked(error) -> str | None:
    """The comparison an ``InconclusiveDimensionOperation`` asked, as a JAX constraint, if it bounds one symbol."""
    from jax.errors import InconclusiveDimensionOperation

    found = _COMPARISON.search(str(error)) if isinstance(error, InconclusiveDimensionOperation) else None
    if found is None:
        return None
    left, op, right = found.groups()
    try:
        if len(dims.symbols(left) | dims.symbols(right)) != 1:
            return None
    except ValueError:  # an expression outside unigraph's dimension syntax
        return None
    if op in ("<", ">"):  # constraints take <= and >= only; sizes are integers
        right, op = (f"{right} - 1", "<=") if op == "<" else (f"{right} + 1", ">=")
    return f"{left} {op} {right}"


def _sides(bound: str) -> tuple[str, str, str]:
    left, op, right = re.split(r" (<=|>=) ", bound, maxsplit=1)
    return left, op, right


def _symbols(bound: str) -> set[str]:
    left, _, right = _sides(bound)
    return dims.symbols(left) | dims.symbols(right)


def _holds(bound: str, env: Mapping[str, int]) -> bool:
    left, op, right = _sides(bound)
    a, b = dims.evaluate(left, env), dims.evaluate(right, env)
    return a <= b if op == "<=" else a >= b


#: Sizes tried for a symbol: small ones first, then powers of two (abstract traces cost nothing per element).
_CANDIDATES = (8, *range(1, 4097), *(2**k for k in range(13, 32)))


def _runs_beyond(call, values: list, templates, constraints: Sequence[str], bound: str) -> str:
    """``""`` if the model fails on sizes that break ``bound`` (and keep ``constraints``), else why it is no bound.

    The sizes are traced concretely (``jax.eval_shape``): every comparison
    is decided, so the trace fails only where the model cannot run.
    """
    (symbol,) = _symbols(bound)

    def allowed(name: str, size: int) -> bool:
        kept = all(_holds(c, {name: size}) for c in constraints if _symbols(c) == {name})
        return kept and (name != symbol or not _holds(bound, {name: size}))

    names = {"batch"} | {f"dim{axis}" for t in jax.tree.leaves(templates) for axis, d in enumerate(t.shape) if d is None}
    env = {name: next((v for v in _CANDIDATES if allowed(name, v)), None) for name in names}
    if None in env.values():
        return ""  # no size breaks the bound: it holds for every size the model can be given
    specs = [jax.ShapeDtypeStruct(np.shape(v), jax.dtypes.canonicalize_dtype(v.dtype)) for v in values]
    try:
        jax.eval_shape(call, specs, _sized(templates, env))
    except Exception:  # whatever the model raises where it cannot run
        return ""
    return f"; the model branches on {bound} (it runs with {symbol} = {env[symbol]} too)"


def _describe_specs(inputs) -> str:
    flat = jax.tree.leaves(inputs)
    return ", ".join(f"({', '.join(str(d) for d in x.shape)}) {np.dtype(x.dtype).name}" for x in flat)


def _as_array(x):
    if type(x).__module__.startswith("keras"):  # a KerasTensor or a Keras variable
        raise TypeError(f"example_inputs must be arrays, not {type(x).__name__}")
    return as_array(x)


def _input_names(inputs, reference) -> list[str]:
    """A name per input leaf: the ``keras.Input`` at the same place, else the leaf's path."""
    names = []
    for path, _ in jax.tree_util.tree_flatten_with_path(inputs)[0]:
        keys = [getattr(k, "key", getattr(k, "idx", None)) for k in path]
        node = reference
        for key in keys:
            try:
                node = node[key]
            except (KeyError, IndexError, TypeError):
                node = None
                break
        name = getattr(node, "name", None) if node is not None and not isinstance(node, (dict, list, tuple)) else None
        names.append(name or "_".join(["inputs", *map(str, keys)]))
    return names


def _layer_paths(model, layer_names: Mapping[str, str]):
    """A ``source_of`` hook making node module paths Keras layer paths, in the caller's layer names.

    JAX's name stack holds Keras's per-layer scopes and, below them, scopes
    of JAX functions (``attention/query/abc,cde->abde``, ``vmap()``): the
    path is cut at the first name that is not one of the model's layers.
    """
    known = {layer.name for layer in model._flatten_layers(include_self=True, recursive=True)}

    def source_of(eqn, source: Source) -> Source:
        parts = []
        for part in source.module.split("/") if source.module else ():
            if part not in known:
                break
            parts.append(layer_names.get(part, part))
        return Source(module="/".join(parts), location=source.location, origin=source.origin)

    return source_of


# ---- the checker's reference runs ----------------------------------------------------------------


def describe_reference(model) -> str:
    """How the checker names a Keras model in its report."""
    keras = _keras_of(model)
    return f"{model.name} (keras {keras.__version__}, {keras.backend.backend()})"


def run_reference(model, args: Sequence, kwargs: Mapping):
    """A Keras model in inference mode on NumPy inputs (dicts and lists of them too), NumPy outputs."""
    keras = _keras_of(model)
    return jax.tree.map(keras.ops.convert_to_numpy, model(*args, training=False, **kwargs))


# ---- loading files ----------------------------------------------------------------------------


def model_file(path: str | os.PathLike) -> Path:
    """``path`` checked to be something Keras 3 loads; a clear error for what it does not."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or directory")
    if path.is_dir():
        if (path / "config.json").is_file():
            return path  # a .keras archive unpacked into a directory
        if sniff.is_savedmodel(path):
            raise CheckpointError(
                f"{path}: a TensorFlow SavedModel. Keras 3 cannot rebuild a model from it (it holds TF "
                "graphs, not Keras layers), so unigraph cannot trace it. Convert the model object in the "
                "code that builds it (ug.from_keras(model)), or save it there as a .keras file "
                "(model.save('model.keras')); a Keras 2 SavedModel can be re-saved with tf_keras "
                "(tf_keras.models.load_model(dir).save('model.h5')) and converted from the .h5 file"
            )
        raise CheckpointError(f"{path}: a directory without a Keras model (no config.json)")
    if not is_model_file(path):
        raise CheckpointError(f"{path}: not a Keras model file; Keras 3 loads {', '.join(KERAS_FILES)} files")
    return path


def is_model_file(path: str | os.PathLike) -> bool:
    """A file Keras 3 loads as a model: by its suffix, or by its content (a ``.keras`` zip, an HDF5 file)."""
    path = Path(path)
    return path.is_file() and (
        path.suffix.lower() in KERAS_FILES or sniff.is_hdf5(path) or sniff.is_keras_archive(path)
    )


def load_model(path: Path, custom_objects: Mapping[str, Any], *, safe_mode: bool = True):
    """``keras.saving.load_model`` (uncompiled), with Keras's ``safe_mode`` on unless the caller trusts the file.

    Keras's deserialization errors become ``CheckpointError``s that name the
    missing class and say how to provide it. The command line opens Keras
    files here too, so both say the same.
    """
    import keras

    if sniff.is_hdf5(path):
        _probe_hdf5(path)
    try:
        return keras.saving.load_model(path, custom_objects=dict(custom_objects), compile=False, safe_mode=safe_mode)
    except Exception as e:  # Keras raises ValueError, TypeError, OSError, h5py and zip errors for bad files
        raise CheckpointError(_load_failure(path, e)) from e


#: Seconds a child process may take to read every attribute of an HDF5 file (``_probe_hdf5``).
HDF5_PROBE_SECONDS = 10.0

_HDF5_PROBE = """
import sys, h5py
def read(name, obj):
    for key in obj.attrs:
        obj.attrs.get(key)
with h5py.File(sys.argv[1], "r") as f:
    read("/", f)
    f.visititems(read)
"""


def _probe_hdf5(path: Path) -> None:
    """Reads every attribute of an HDF5 file in a child process, with a time limit, before Keras reads it here.

    HDF5's C library can loop forever on a corrupt file, holding the GIL, so
    that nothing in the reading process can stop it: the fuzzer found a 17 kB
    ``.h5`` whose root attribute ``backend`` never finishes reading. A file
    that hangs or kills the child is refused; any other error is left to
    Keras's own load, which reports it.
    """
    try:
        done = subprocess.run(
            [sys.executable, "-c", _HDF5_PROBE, str(path)], capture_output=True, timeout=HDF5_PROBE_SECONDS
        )
    except subprocess.TimeoutExpired:
        raise CheckpointError(
            f"{path}: reading its HDF5 attributes did not finish in {HDF5_PROBE_SECONDS:g} s (a corrupt file?)"
        ) from None
    if done.returncode < 0:
        raise CheckpointError(f"{path}: reading its HDF5 attributes crashed a process (signal {-done.returncode})")


def _load_failure(path: Path, error: Exception) -> str:
    text = str(error).strip()
    missing = re.search(r"Could not locate (?:class|function) '([^']+)'", text)
    if missing:
        name = missing.group(1)
        return (
            f"{path}: Keras cannot rebuild the model: it uses {name!r}, which is neither a Keras class "
            "nor among the custom objects. Pass it: from_keras(path, custom_objects={"
            f"{name!r}: {name} or 'package.module.{name}'}}), or import the module that registers it "
            "(@keras.saving.register_keras_serializable()) before converting. When the conversion runs "
            "in a worker process (this process's Keras is not on JAX), the class must be importable "
            "there: defined in a module on sys.path, not in __main__ or inside a function."
        )
    if "safe_mode" in text or "Lambda" in text and "lambda" in text:
        return (
            f"{path}: refused: the model holds Python bytecode (a Lambda layer), which would run on "
            "loading; Keras's safe_mode stays on and nothing was run. Rebuild the model in Python and pass "
            "the model object, or replace the Lambda by a registered custom layer; if you trust the file, "
            "load it with safe_mode=False (--trust-remote-code on the command line)."
        )
    return f"{path}: not a readable Keras model ({type(error).__name__}: {first_line(error)})"


def _import_keras():
    from unigraph.native_order import before_tensorflow

    before_tensorflow()  # Keras on its default backend loads TensorFlow: triton first (see unigraph.native_order)
    try:
        import keras
    except ImportError as e:
        raise ImportError("from_keras needs Keras 3 (pip install keras)") from e
    return keras


def _keras_of(model):
    """The ``keras`` module of a model object; a TypeError for anything else."""
    if not any(c.__module__.split(".")[0] == "keras" for c in type(model).__mro__):
        raise TypeError(
            f"from_keras takes a Keras 3 model or a path to a .keras/.h5 file, not {type(model).__name__}"
            " (tf.keras models of Keras 2 are not Keras 3 models: save them as .h5 and pass the path)"
        )
    import keras

    if not isinstance(model, keras.Model):
        raise TypeError(f"from_keras takes a keras.Model; {type(model).__name__} is a {type(model).__mro__[1].__name__}")
    return keras


# ---- custom objects ---------------------------------------------------------------------------


def resolve(name: str):
    """The object an importable name (``package.module.Name`` or ``package.module:Name``) denotes."""
    module, _, qualname = name.partition(":") if ":" in name else name.rpartition(".")
    if not module or not qualname:
        raise ValueError(f"{name!r} is not an importable name (package.module.Name)")
    try:
        obj = importlib.import_module(module)
    except ImportError as e:
        raise CheckpointError(f"custom object {name!r}: cannot import {module!r} ({e})") from e
    for part in qualname.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise CheckpointError(f"custom object {name!r}: {module!r} has no {qualname!r}") from None
    return obj


def _resolve_all(custom_objects: Mapping[str, Any]) -> dict[str, Any]:
    return {k: resolve(v) if isinstance(v, str) else v for k, v in custom_objects.items()}


def importable_name(obj, what: str) -> str:
    """``module:qualname`` of a class or function another process can import; a clear error otherwise."""
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if not module or not qualname or module == "__main__" or "<locals>" in qualname:
        where = "in __main__ (a script or notebook)" if module == "__main__" else "inside a function"
        raise ExportError(
            f"{what} is defined {where}, so the worker process that traces the model under Keras's "
            "JAX backend cannot import it. Move it into a module on sys.path and register it with "
            "@keras.saving.register_keras_serializable(), or run this process with KERAS_BACKEND=jax "
            "(then the model is traced here and never saved)."
        )
    return f"{module}:{qualname}"


def _importable_all(custom_objects: Mapping[str, Any]) -> dict[str, str]:
    return {
        k: v if isinstance(v, str) else importable_name(v, f"custom object {k!r} ({v!r})")
        for k, v in custom_objects.items()
    }


def registered_objects(keras) -> dict[str, str]:
    """Importable names of what this process registered with ``register_keras_serializable``.

    ``keras.saving.load_model`` finds these here, so the worker must too.
    Entries the worker could not import by their module and name are left
    out: those defined in ``__main__`` or in a function, or run from a file
    or a string that no module of ``sys.modules`` holds (a generated Keras
    source file that ``unigraph check`` ran).
    """
    found = {}
    for name, obj in keras.saving.get_custom_objects().items():
        module, qualname = getattr(obj, "__module__", ""), getattr(obj, "__qualname__", "")
        if module != "__main__" and "<locals>" not in qualname and _found_at(module, qualname) is obj:
            found[name] = f"{module}:{qualname}"
    return found


def _found_at(module: str, qualname: str):
    """What ``module:qualname`` names in this process's imported modules, or None."""
    found = sys.modules.get(module)
    for part in qualname.split(".") if found is not None else ():
        found = getattr(found, part, None)
    return found


def _model_custom_objects(keras, model) -> dict[str, str]:
    """Importable names of the model's own non-Keras classes and of every registered custom object."""
    found = registered_objects(keras)
    for layer in model._flatten_layers(include_self=True, recursive=True):
        cls = type(layer)
        if cls.__module__.split(".")[0] not in _KERAS_PACKAGES:
            what = f"layer {layer.name!r} ({cls.__qualname__})"
            found[keras.saving.get_registered_name(cls)] = importable_name(cls, what)
    return found


# ---- the worker process -----------------------------------------------------------------------


def _model_in_worker(keras, model, example_inputs, polymorphic_shapes, custom_objects) -> Converted:
    """Saves ``model`` and converts it in a worker running Keras on JAX, under the caller's names."""
    if example_inputs is None and _input_templates(model, _symbolic_inputs(model)) is None:
        raise _inputs_unknown(model)  # before saving: the worker could tell no more
    objects = {**_model_custom_objects(keras, model), **_importable_all(custom_objects)}
    variables = [*model.trainable_variables, *model.non_trainable_variables]
    identity = {
        "variables": [[v.path, list(v.shape)] for v in variables],
        "layers": [layer.name for layer in model._flatten_layers(include_self=True, recursive=True)],
    }
    with tempfile.TemporaryDirectory(prefix="unigraph-keras-") as tmp:
        path = Path(tmp) / "model.keras"
        try:
            model.save(path)
        except Exception as e:
            raise ExportError(
                f"Keras could not save {model.name} ({type(model).__name__}) to hand it to the worker that "
                f"traces it under Keras's JAX backend (this process runs {keras.backend.backend()!r}): "
                f"{type(e).__name__}: {first_line(e)}. Give custom "
                "layers a get_config() that rebuilds them, or run this process with KERAS_BACKEND=jax."
            ) from e
        # the caller's own model object, saved here: its code runs in the caller's process already
        return _in_worker(
            path, example_inputs, polymorphic_shapes, objects, safe_mode=False, identity=identity, scratch=Path(tmp)
        )


def _in_worker(
    path: Path,
    example_inputs,
    polymorphic_shapes,
    custom_objects: Mapping[str, str],
    *,
    safe_mode: bool = True,
    identity: Mapping | None = None,
    scratch: Path | None = None,
) -> Converted:
    """Runs ``keras_worker`` on ``path`` with KERAS_BACKEND=jax and loads the bundle it writes."""
    from unigraph.io.bundle import load

    with tempfile.TemporaryDirectory(prefix="unigraph-keras-", dir=scratch) as tmp:
        tmp = Path(tmp)
        arrays: dict[str, np.ndarray] = {}
        request = {
            "model": os.fspath(Path(path).absolute()),
            "safe_mode": safe_mode,
            "custom_objects": dict(custom_objects),
            "inputs": None if example_inputs is None else encode(example_inputs, arrays),
            "polymorphic_shapes": polymorphic_shapes,
            "identity": identity,
            "bundle": os.fspath(tmp / "model.ug"),
        }
        np.savez(tmp / "inputs.npz", **arrays)
        (tmp / "request.json").write_text(json.dumps(request))
        env = {
            **os.environ,
            "KERAS_BACKEND": "jax",
            "PYTHONPATH": os.pathsep.join(p or os.getcwd() for p in sys.path),
            "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
        }
        process = subprocess.run(
            [sys.executable, "-m", "unigraph.frontends.keras_worker", os.fspath(tmp)],
            capture_output=True, text=True, env=env,
        )
        result_file = tmp / RESULT
        if not result_file.is_file():
            raise ExportError(
                f"the worker tracing {path.name} under Keras's JAX backend died (exit status "
                f"{process.returncode}):\n{process.stderr.strip()[-4000:]}"
            )
        result = json.loads(result_file.read_text())
        for message in result.get("warnings", []):
            warnings.warn(message, stacklevel=4)
        if "error" in result:
            raise _error(result["error"])
        return load(tmp / "model.ug")


def encode(value, arrays: dict[str, np.ndarray]):
    """A JSON form of a structure of arrays (arrays stored in ``arrays`` by key); ``decode`` inverts it."""
    if isinstance(value, Mapping):
        return {"dict": [[str(k), encode(v, arrays)] for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        return {type(value).__name__: [encode(v, arrays) for v in value]}
    if value is None or isinstance(value, (bool, int, float, str)):
        return {"value": value}
    key = f"a{len(arrays)}"
    arrays[key] = np.asarray(_as_array(value))
    return {"array": key}


def decode(spec, arrays: Mapping[str, np.ndarray]):
    (kind, content), = spec.items()
    if kind == "dict":
        return {k: decode(v, arrays) for k, v in content}
    if kind in ("list", "tuple"):
        items = [decode(v, arrays) for v in content]
        return items if kind == "list" else tuple(items)
    if kind == "array":
        return arrays[content]
    return content


def error_record(error: BaseException, trace_text: str) -> dict:
    """What a worker sends back for an exception: its class, message, and the ops of an UnsupportedOpError."""
    record = {"type": type(error).__name__, "message": str(error)}
    if isinstance(error, errors.UnsupportedOpError):
        record["ops"] = [[op.op, list(op.locations)] for op in error.ops]
    if not isinstance(error, errors.UnigraphError):
        record["traceback"] = trace_text[-4000:]
    return record


def _error(record: Mapping) -> Exception:
    """The worker's exception raised again here: unigraph errors as themselves, others as ExportError."""
    cls = getattr(errors, record["type"], None)
    if record["type"] == "UnsupportedOpError":
        ops = [errors.UnsupportedOp(op, tuple(places)) for op, places in record["ops"]]
        return errors.UnsupportedOpError(ops, framework="the JAX")
    if isinstance(cls, type) and issubclass(cls, errors.UnigraphError) and cls is not errors.ShapeMismatchError:
        return cls(record["message"])
    return ExportError(
        f"tracing the model under Keras's JAX backend failed in the worker process: "
        f"{record['type']}: {record['message']}\n{record.get('traceback', '')}".rstrip()
    )


__all__ = ["KERAS_LEAVES", "convert_model", "from_keras", "keras_variables", "load_model", "model_file"]
