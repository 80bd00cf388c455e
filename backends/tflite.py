"""TFLite (LiteRT) backend: a converted model as a ``.tflite`` flatbuffer, checked before it is written.

Two routes lead from a graph to TFLite's builtin ops; both were measured
(``python bench/bench_tf_side.py --routes``: float32, batch 1, LiteRT 2.3's
interpreter on one thread with its default XNNPACK delegate; max abs error
against torch eager; latency as a multiple of torch eager's in the same run):

==========================  ============================  ============================
model (random weights)      ``keras``: Keras model's      ``jax2tf``: StableHLO in one
                            TensorFlow ops                XlaCallModule
==========================  ============================  ============================
CNN (zoo, 32×32)            6e-8, 0.14× eager, 0.03 MB    9e-9, 2.3× eager, 0.03 MB
ResNet-18 (224×224)         7e-6, 1.03×, 46.8 MB          8e-6, 2.3×, 46.8 MB
MobileNet-V3-small (64×64)  7e-7, 0.15×, 10.2 MB          5e-8, 2.4×, 10.5 MB
ViT, 2 layers (32×32)       2e-7, 0.13×, 0.15 MB          3e-7, 1.1×, 0.20 MB
BERT, 2 layers (10 tokens)  7e-7, 0.08×, 0.15 MB          1e-6, 0.40×, 0.19 MB
GPT-2, 2 layers (10 tokens) 1e-6, 0.09×, 0.16 MB          7e-7, 0.24×, 0.19 MB
==========================  ============================  ============================

Both are right to float32 rounding on these, with a dynamic batch (and
sequence length). The ``keras`` route runs 2-16× faster: the Keras model
(``backends/keras_plan.py``, rewritten channels-last by
``unigraph.channels_last`` so that transposes are left at the inputs and
outputs only) legalizes to TFLite's fused NHWC kernels, which XNNPACK takes
whole, while the StableHLO route leaves gathers, pads and transposes around
every convolution. So ``keras`` goes first, and ``jax2tf`` is the fallback
where the Keras model does not convert or is wrong (a grouped 3-d
convolution or a 3-d average pool, as in torch's local response norm: the
Keras route gives ``tf.Conv3D``/``tf.AvgPool3D``, which TFLite's builtins
lack), and the only route when this process's Keras runs another backend.

Either route can write a wrong model without failing: TFLite's converter
prints an error, or nothing, and writes a file anyway (StableHLO's transposed
convolutions come out wrong, an LSTM's TensorFlow loop fails to prepare with
a dynamic batch). So every model is checked before it appears at its path:
the converter and the interpreter run in a child process (the converter
aborts its process on some graphs, with an LLVM error), the model runs on
the example inputs and again with every dimension symbol one larger, and its
outputs must match the graph's own JAX run. A model that cannot keep its
dynamic dimensions is converted again with the example's shapes, with a
warning naming them; one that no route converts correctly raises
``LoweringError`` naming the TFLite op and, where the converter's locations
name a Keras layer, the graph node and its source line. Nothing is written
then.
"""

from __future__ import annotations

import os
import re
import tempfile
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from unigraph.native_order import before_tensorflow

before_tensorflow()

import jax  # noqa: E402
import keras  # noqa: E402
import ml_dtypes  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from jax.experimental import jax2tf  # noqa: E402

from unigraph import dims, tree  # noqa: E402
from unigraph.backends import stablehlo_compat  # noqa: E402
from unigraph.backends.child_process import JsonChild  # noqa: E402
from unigraph.checker import compare_arrays  # noqa: E402
from unigraph.converted import Converted, host_arrays  # noqa: E402
from unigraph.dtypes import jax_dtype, numpy_dtype  # noqa: E402
from unigraph.errors import LoweringError, first_line  # noqa: E402
from unigraph.flax import run as run_graph  # noqa: E402
from unigraph.interpreter import bind_symbols  # noqa: E402
from unigraph.io.atomic import atomic_file  # noqa: E402
from unigraph.ir import Graph, Node  # noqa: E402
from unigraph.signature import bind  # noqa: E402
from unigraph.signature import input_names as signature_input_names  # noqa: E402
from unigraph.signature import output_names as signature_output_names  # noqa: E402

#: The routes in the order they are tried (see the module docstring for the measurements).
ROUTES = ("keras", "jax2tf")
#: ``quantize`` options: the source's float weights, float16 weights, or int8 weights with dynamic-range activations.
QUANTIZE = (None, "float16", "dynamic_int8")
#: Sizes given to dimension symbols when no example inputs are passed (those ``unigraph check`` samples with).
DEFAULT_SIZES = {"batch": 2}
OTHER_SYMBOL_SIZE = 8
#: How close a quantized model's outputs must stay to the float graph's (cosine similarity): its error is the
#: quantization's, so the check only catches a broken model.
MIN_COSINE = {"float16": 0.999, "dynamic_int8": 0.98}


def save(
    conv: Converted,
    path: str | os.PathLike,
    *,
    inputs: Sequence | None = None,
    kwargs: Mapping | None = None,
    quantize: str | None = None,
    dynamic: bool = True,
    route: str | None = None,
    overwrite: bool = False,
) -> None:
    """Writes ``conv`` as a ``.tflite`` file at ``path``, checked against the graph before it appears.

    - ``inputs``/``kwargs``: an example call, as the source model takes it;
      without, seeded random inputs (``batch`` 2, other symbols 8; integers
      and booleans 0 or 1). The model runs on it, and once more with every
      dimension symbol one larger, in the LiteRT interpreter, and must match
      the graph's JAX run (float32: ``rtol=1e-4, atol=1e-5``).
    - ``dynamic``: symbolic dimensions stay dynamic (the signature runner, or
      ``interpreter.resize_tensor_input``, takes other sizes). When no route
      keeps them, or with ``dynamic=False``, the inputs get the example's
      shapes (a warning names them in the first case).
    - ``quantize``: ``"float16"`` (float16 weights, float32 compute) or
      ``"dynamic_int8"`` (int8 weights, activations quantized on the fly).
    - ``route``: ``"keras"`` or ``"jax2tf"`` only; by default the first of
      ``ROUTES`` that gives a correct model.

    The serving signature (``serving_default``) has the SavedModel's input
    and output names. A model no route converts correctly raises
    ``LoweringError`` and nothing is written; an existing ``path`` raises
    ``OutputExistsError`` unless ``overwrite``.
    """
    if quantize not in QUANTIZE:
        raise ValueError(f"quantize={quantize!r}: expected one of {list(QUANTIZE)}")
    routes = _routes(route)
    graph = conv.graph
    bfloat16 = [n for n in (*graph.inputs, *graph.outputs) if graph.types[n].dtype == "bfloat16"]
    if bfloat16:
        raise LoweringError(
            f"inputs and outputs {bfloat16} are bfloat16; a TFLite model written here takes and returns float32, "
            "float16 and integer tensors only: convert the model in float32"
        )
    example = _example(graph, inputs, kwargs)
    with atomic_file(path, overwrite=overwrite) as staging:
        dynamic_failure = None
        if dynamic and _symbols(graph):
            try:
                _write_first(conv, staging, routes, _specs(graph), [example, _grown(graph, example)], quantize)
                return
            except LoweringError as error:
                dynamic_failure = error
        _write_first(conv, staging, routes, _specs(graph, example), [example], quantize)
    if dynamic_failure is not None:
        warnings.warn(
            f"{path}: its inputs have fixed shapes {_shapes(graph, example)}, since the dynamic dimensions "
            f"{sorted(_symbols(graph))} could not be kept: {first_line(dynamic_failure)}",
            stacklevel=2,
        )


def call_as_source(path: str | os.PathLike, conv: Converted) -> Callable:
    """The ``.tflite`` at ``path`` in LiteRT's interpreter (TensorFlow's where LiteRT is not installed),
    called with the source model's arguments and returning its output structure: what the checker
    runs for a TFLite output. Inputs of other sizes than the file's resize its dynamic dimensions."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        Interpreter = tf.lite.Interpreter
    runner = Interpreter(model_path=os.fspath(path)).get_signature_runner()
    graph = conv.graph
    inputs, outputs = signature_input_names(graph), list(signature_output_names(graph))

    def call(*args, **kwargs):
        arrays = bind(graph, *host_arrays((args, kwargs)))
        got = runner(**dict(zip(inputs, arrays)))
        leaves = iter([got[name] for name in outputs])
        return tree.unflatten(graph.output_tree, lambda value: next(leaves))

    return call


def _routes(route: str | None) -> tuple[str, ...]:
    if route is not None:
        if route not in ROUTES:
            raise ValueError(f"route={route!r}: expected one of {list(ROUTES)}")
        if route == "keras" and keras.backend.backend() != "tensorflow":
            raise ValueError(f"route='keras' needs Keras on TensorFlow; this process's Keras runs {keras.backend.backend()}")
        return (route,)
    return ROUTES if keras.backend.backend() == "tensorflow" else ("jax2tf",)


def _write_first(conv: Converted, staging: Path, routes, specs, examples, quantize) -> None:
    """Writes the model of the first route that converts it correctly; raises the first route's failure
    (naming the others') when none does."""
    failures = []
    for route in routes:
        try:
            _write_checked(conv, staging, route, specs, examples, quantize)
            return
        except LoweringError as error:
            failures.append(f"{route} route: {error}")
    others = "".join(f"\n  also tried the {first_line(f)}" for f in failures[1:])
    raise LoweringError(f"TFLite conversion failed, {failures[0]}{others}")


def _write_checked(conv: Converted, staging: Path, route: str, specs, examples, quantize) -> None:
    with tempfile.TemporaryDirectory(prefix="unigraph-tflite-") as directory:
        directory = Path(directory)
        layers = _SAVED_MODELS[route](conv, specs, directory / "savedmodel")
        samples = []
        for i, arrays in enumerate(examples):
            samples.append(directory / f"sample_{i}.npz")
            np.savez(samples[-1], **dict(zip(signature_input_names(conv.graph), arrays)))
        _convert_and_run(layers, directory / "savedmodel", staging, samples, quantize)
        for arrays, sample in zip(examples, samples):
            with np.load(f"{sample}.out.npz") as outputs:
                _compare(conv, arrays, dict(outputs), quantize)


# ---- the two routes to a SavedModel the converter reads -------------------------------------------


def _keras_savedmodel(conv: Converted, specs: list[tf.TensorSpec], directory: Path) -> dict[str, Node]:
    """The Keras model's serving function (TensorFlow ops), its variables in the checkpoint; returns the
    node each of its layers runs, by layer name, for errors to name.

    The model runs channels-last (``unigraph.channels_last``), the layout of
    TFLite's kernels, so transposes are left only at the inputs and outputs,
    which keep the source's layouts.
    """
    from unigraph.backends.keras import build
    from unigraph.backends.keras_plan import plan
    from unigraph.channels_last import to_channels_last

    rewritten, layout = to_channels_last(conv)
    graph = rewritten.graph
    keras_plan = plan(rewritten)
    producers = {value: node for node in graph.nodes for value in node.outputs}
    layers = {call.name: producers[call.outputs[0]] for call in keras_plan.calls if call.outputs and call.outputs[0] in producers}
    try:
        model = build(keras_plan)

        def serve(*tensors):
            inputs = {
                spec.name: tf.transpose(x, layout.inputs[spec.value]) if spec.value in layout.inputs else x
                for spec, x in zip(keras_plan.inputs, tensors)
            }
            result = model(keras.tree.map_structure(lambda kt: inputs[kt.name], model.input), training=False)
            values = dict(zip(keras.tree.flatten(keras_plan.outputs), keras.tree.flatten(result)))
            for value, perm in layout.outputs.items():
                values[value] = tf.transpose(values[value], np.argsort(perm))
            return _named_outputs(graph, values)

        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint("serve", serve, specs)
        archive.write_out(str(directory), verbose=False)
    except Exception as error:  # building or tracing the model: any lowering's error, or TensorFlow's
        raise LoweringError(_tracing_error(error, layers)) from error
    return layers


def _jax2tf_savedmodel(conv: Converted, specs: list[tf.TensorSpec], directory: Path) -> dict[str, Node]:
    """The graph's JAX function lowered to StableHLO for the CPU, its variables folded in as constants."""
    graph = conv.graph
    dynamic = any(d is None for spec in specs for d in spec.shape)
    shapes = ["(" + ", ".join(map(str, graph.types[n].shape)) + ")" for n in graph.inputs] if dynamic else None

    def apply(*inputs):
        return tuple(run_graph(graph, conv.variables, list(inputs), conv.precision))

    lowered = jax2tf.convert(apply, polymorphic_shapes=shapes, with_gradient=False, native_serialization_platforms=("cpu",))

    def serve(*tensors):
        inputs = [tf.cast(x, jax_dtype(graph.types[n].dtype)) for x, n in zip(tensors, graph.inputs)]
        return _named_outputs(graph, dict(zip(graph.outputs, lowered(*inputs))))

    module = tf.Module()
    module.serve = tf.function(serve, input_signature=specs, autograph=False)
    try:
        tf.saved_model.save(module, str(directory), signatures={"serving_default": module.serve})
    except Exception as error:  # jax2tf's lowering or TensorFlow's tracing
        raise LoweringError(f"lowering with jax2tf failed: {first_line(error)}") from error
    stablehlo_compat.rewrite_savedmodel(directory)  # the converter reads the StableHLO TensorFlow reads
    return {}


_SAVED_MODELS = {"keras": _keras_savedmodel, "jax2tf": _jax2tf_savedmodel}


def _named_outputs(graph: Graph, tensors: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """One tensor per output leaf, named as the SavedModel backend names them, in the source's dtype."""
    values = tree.tensor_names(graph.output_tree)
    return {name: tf.cast(tensors[v], numpy_dtype(graph.types[v].dtype)) for name, v in zip(signature_output_names(graph), values)}


def _specs(graph: Graph, example: Sequence[np.ndarray] | None = None) -> list[tf.TensorSpec]:
    """The serving inputs: symbolic dimensions ``None``, or, given an example, its shapes."""
    specs = []
    for i, (value, name) in enumerate(zip(graph.inputs, signature_input_names(graph))):
        t = graph.types[value]
        shape = example[i].shape if example is not None else [d if isinstance(d, int) else None for d in t.shape]
        specs.append(tf.TensorSpec(shape, tf.as_dtype(numpy_dtype(t.dtype)), name=name))
    return specs


# ---- the converter and the interpreter, in a child process ------------------------------------------

#: The child: reads one JSON request a line (``savedmodel``, ``output``, ``quantize``, ``samples``, ``log``),
#: converts to ``output``, runs the serving signature on each ``sample`` (npz) into ``sample.out.npz``, and
#: answers one JSON line: ``status`` "ok", "convert" or "run" (what failed), and the error's ``message``.
#: Everything TensorFlow prints, on either stream, goes to the request's ``log``.
_WORKER = """
import numpy as np
import tensorflow as tf
try:
    from ai_edge_litert.interpreter import Interpreter
except ImportError:
    Interpreter = tf.lite.Interpreter
def handle(request):
    converter = tf.lite.TFLiteConverter.from_saved_model(request["savedmodel"])
    if request["quantize"]:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if request["quantize"] == "float16":
        converter.target_spec.supported_types = [tf.float16]
    try:
        flatbuffer = converter.convert()
    except Exception as error:
        return {"status": "convert", "message": str(error)}
    with open(request["output"], "wb") as f:
        f.write(flatbuffer)
    print("unigraph: converted", file=sys.stderr, flush=True)
    runner = Interpreter(model_path=request["output"], num_threads=1).get_signature_runner()
    for sample in request["samples"]:
        try:
            outputs = runner(**dict(np.load(sample)))
        except Exception as error:
            return {"status": "run", "message": str(error)}
        np.savez(sample + ".out.npz", **outputs)
    return {"status": "ok"}
"""


class _Converter:
    """TFLite's converter and interpreter in a child process that outlives one ``save``.

    The converter aborts its process on some graphs (an LLVM error on
    StableHLO it cannot infer shapes for), so it never runs in the caller's;
    the child stays for the next model, so TensorFlow's import (seconds) is
    paid once. A child that died is replaced at the next request.
    """

    def __init__(self):
        self.child = JsonChild(_WORKER)

    def __call__(self, layers: Mapping[str, Node], savedmodel: Path, output: Path, samples: list[Path], quantize) -> None:
        """Converts ``savedmodel`` to ``output`` and runs it on ``samples``; ``LoweringError`` if either fails,
        naming the node of the layer (in ``layers``, by name) the converter's error names, if any."""
        log = savedmodel.parent / "converter.log"
        request = {"savedmodel": str(savedmodel), "output": str(output), "quantize": quantize, "samples": list(map(str, samples)), "log": str(log)}
        with self.child.lock:
            answer = self.child.ask(request)
        printed = log.read_text(errors="replace") if log.exists() else ""
        if answer is None:
            stage = "running the converted model" if "unigraph: converted" in printed else "converting"
            raise LoweringError(f"TFLite's converter process crashed while {stage}{_crash(printed)}{_diagnostics(printed, layers)}")
        if answer["status"] == "convert":
            raise LoweringError(_conversion_error(answer["message"] + "\n" + printed, layers))
        if answer["status"] == "run":
            raise LoweringError(f"the converted model does not run: {first_line(answer['message'])}{_diagnostics(printed, layers)}")


_convert_and_run = _Converter()


# ---- errors: the op, and the node it came from --------------------------------------------------

_OP = re.compile(r"'((?:tf|tfl|mhlo|stablehlo|vhlo|chlo)\.\w+)' op ([^\n]*)")
_ERROR = re.compile(r"error: ([^\n]+)")
#: The TensorFlow op names in a converter location: ``"model_1/layer1_0_conv1_1/Conv2D@__inference…"``.
_SCOPE = re.compile(r'"([\w/.-]+)@')
#: A Keras lowering's error (``backends/keras_runtime.py``) names the layer.
_KERAS_LOWERING = re.compile(r"the Keras lowering of '\w+' \((\w+)\)")
#: A JAX lowering's source line in a StableHLO location: ``("…/unigraph/ops/conv.py":61:8)``.
_LOWERING = re.compile(r'"([^"]+\.py)":(\d+):\d+')


def _tracing_error(error: Exception, layers: Mapping[str, Node]) -> str:
    """What failed while TensorFlow traced the Keras model: Keras wraps a layer's error in a paragraph."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))
    if text.startswith("Exception encountered when calling"):
        text = text.partition("\n\n")[2]
    layer = _KERAS_LOWERING.search(text)
    node = layers.get(layer.group(1)) if layer else None
    return f"tracing under TensorFlow failed{f' at {node.describe()}' if node else ''}: {first_line(text)}"


def _conversion_error(said: str, layers: Mapping[str, Node]) -> str:
    """One paragraph: the op TFLite rejected, where it came from, what the converter said."""
    op = _OP.search(said)
    what = op.group(0) if op else next(iter(_ERROR.findall(said)), first_line(said))
    return f"the converter rejected {op.group(1) if op else 'the model'}{_origin(said, layers)}: {what}"


def _diagnostics(printed: str, layers: Mapping[str, Node]) -> str:
    """The converter's printed errors, for a model it wrote although they were there."""
    said = _OP.search(printed) or _ERROR.search(printed)
    return f"\n  (the converter had reported: {said.group(0)}{_origin(printed, layers)})" if said else ""


def _crash(printed: str) -> str:
    """The LLVM error a converter aborts with, and the line after it (the operation)."""
    lines = printed.splitlines()
    at = next((i for i, line in enumerate(lines) if "LLVM ERROR" in line), None)
    return "" if at is None else ": " + " ".join(line.strip() for line in lines[at:at + 2])


def _origin(said: str, layers: Mapping[str, Node]) -> str:
    """The node of the first Keras layer the converter's locations name (TensorFlow numbers name scopes:
    ``conv_1``), or else the JAX lowering's source line."""
    for scope in _SCOPE.findall(said):
        for part in scope.split("/"):
            node = layers.get(part) or layers.get(re.sub(r"_\d+$", "", part))
            if node is not None:
                return f" at {node.describe()}"
    lowering = _LOWERING.search(said)
    return f" in the JAX lowering at {lowering.group(1)}:{lowering.group(2)}" if lowering else ""


# ---- checking against the graph ----------------------------------------------------------------------


def _compare(conv: Converted, arrays: list[np.ndarray], got: Mapping[str, np.ndarray], quantize) -> None:
    """Every output of the TFLite run against the graph's JAX run on the same inputs."""
    graph = conv.graph
    want = dict(zip(graph.outputs, _jax_run(conv, arrays)))
    for name, value in zip(signature_output_names(graph), tree.tensor_names(graph.output_tree)):
        reference = np.asarray(want[value])
        row = compare_arrays(name, reference, got[name], *_tolerance(reference.dtype))
        wrong = row.problem or (row.cosine < MIN_COSINE[quantize] if quantize else not row.ok)
        if wrong:
            detail = row.problem or (
                f"max abs error {row.max_abs:.3g}, {row.mismatch:.1%} of elements outside tolerance, "
                f"cosine similarity {row.cosine:.6f}"
            )
            raise LoweringError(
                f"the converted model disagrees with the graph's JAX run at output {name!r} on inputs of "
                f"shapes {_shapes(graph, arrays)}: {detail}"
            )


def _jax_run(conv: Converted, arrays: list[np.ndarray]) -> list:
    return jax.jit(run_graph, static_argnums=(0, 3))(conv.graph, conv.variables, arrays, conv.precision)


def _tolerance(dtype) -> tuple[float, float]:
    """(rtol, atol): DESIGN.md's float32 tolerances, or eight rounding steps of a narrower float."""
    if not np.issubdtype(dtype, np.inexact) and dtype != ml_dtypes.bfloat16:
        return 0.0, 0.0
    eps = float(ml_dtypes.finfo(dtype).eps)
    return (1e-4, 1e-5) if eps < 1e-6 else (8 * eps, 8 * eps)


# ---- example inputs ----------------------------------------------------------------------------------


def _symbols(graph: Graph) -> set[str]:
    return {s for n in graph.inputs for d in graph.types[n].shape if isinstance(d, str) for s in dims.symbols(d)}


def _example(graph: Graph, inputs, kwargs) -> list[np.ndarray]:
    """The graph inputs of the example call, or seeded random ones (see ``save``)."""
    if inputs is None and not kwargs:
        return _random(graph, {s: DEFAULT_SIZES.get(s, OTHER_SYMBOL_SIZE) for s in _symbols(graph)}, seed=0)
    args = () if inputs is None else tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    return [np.asarray(x) for x in bind(graph, *host_arrays((args, dict(kwargs or {}))))]


def _grown(graph: Graph, example: list[np.ndarray]) -> list[np.ndarray]:
    """Seeded random inputs with every dimension symbol one larger than in ``example``."""
    sizes = {s: int(v) + 1 for s, v in bind_symbols(graph, [x.shape for x in example]).items()}
    return _random(graph, sizes, seed=1)


def _random(graph: Graph, sizes: Mapping[str, int], seed: int) -> list[np.ndarray]:
    """Floats ~ N(0, 1); integers and booleans 0 or 1, in range of whatever they index or mask."""
    rng = np.random.default_rng(seed)
    arrays = []
    for name in graph.inputs:
        t = graph.types[name]
        shape, dtype = dims.evaluate_shape(t.shape, sizes), numpy_dtype(t.dtype)
        floating = np.issubdtype(dtype, np.floating) or dtype == ml_dtypes.bfloat16
        values = rng.standard_normal(shape) if floating else rng.integers(0, 2, shape)
        arrays.append(values.astype(dtype))
    return arrays


def _shapes(graph: Graph, arrays: Sequence[np.ndarray]) -> dict[str, list[int]]:
    return {name: list(x.shape) for name, x in zip(signature_input_names(graph), arrays)}
