"""Proof that a written SavedModel runs: loaded and called once in a TensorFlow process of its own.

TensorFlow reads the StableHLO inside a SavedModel only when a signature is
first called, so a SavedModel can save without complaint and still fail for
every user (an op TensorFlow's ``XlaCallModule`` cannot deserialize, or
cannot refine to static shapes). Before the SavedModel backend renames a
staged directory into place, ``prove`` loads it in a child process that
imports TensorFlow and NumPy only, as a server would, calls its serving
signature once on seeded random inputs (``batch`` 2, other dimension
symbols 8), and checks the outputs' names, shapes and dtypes against the
graph. A failure raises ``LoweringError`` with TensorFlow's error and the op
whose JAX lowering its locations name.

The child outlives one save, so TensorFlow's import is paid once per
process (the caller's own process may never import TensorFlow's runtime
for this, and a crash in TensorFlow's compiler cannot take it down).
"""

from __future__ import annotations

import contextlib
import inspect
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from unigraph import dims, tree
from unigraph.backends import stablehlo_compat
from unigraph.backends.child_process import JsonChild
from unigraph.dtypes import numpy_dtype
from unigraph.errors import LoweringError, first_line
from unigraph.ir import Graph
from unigraph.ops import REGISTRY
from unigraph.signature import input_names as signature_input_names
from unigraph.signature import output_names as signature_output_names

#: Sizes given to dimension symbols in the call (those ``unigraph check`` samples with).
DEFAULT_SIZES = {"batch": 2}
OTHER_SYMBOL_SIZE = 8

#: The child: reads one JSON request a line (``savedmodel``, ``inputs`` (npz, or null: do not call), ``log``),
#: loads the SavedModel, calls ``serving_default`` with the inputs cast to its input dtypes, and answers one
#: JSON line: ``status`` "ok" with each output's ``shape`` and ``dtype``, or "load"/"run" (what failed) with
#: the error's ``message``. Everything TensorFlow prints goes to the request's ``log``.
_WORKER = """
import numpy as np
import tensorflow as tf
def handle(request):
    try:
        serving = tf.saved_model.load(request["savedmodel"]).signatures["serving_default"]
    except Exception as error:
        return {"status": "load", "message": str(error)}
    if request["inputs"] is None:
        return {"status": "ok", "outputs": None}
    specs = serving.structured_input_signature[1]
    with np.load(request["inputs"]) as arrays:
        inputs = {name: tf.cast(tf.constant(arrays[name]), specs[name].dtype) for name in specs}
    try:
        outputs = serving(**inputs)
    except Exception as error:
        return {"status": "run", "message": str(error)}
    return {"status": "ok", "outputs": {n: {"shape": list(y.shape), "dtype": y.dtype.name} for n, y in outputs.items()}}
"""

#: A source location in TensorFlow's StableHLO errors: ``/…/unigraph/ops/reduce.py:199:22``.
_LOCATION = re.compile(r"([^\s\"'():]+\.py)\"?:(\d+):\d+")
_ERROR = re.compile(r"error: ([^\n]+)")
#: The lines TensorFlow puts before an op's error message.
_PREAMBLE = re.compile(r"Graph execution error|Detected at node|<stack traces unavailable>|\[\[")
#: What names a StableHLO op or a custom call target in an error: ``stablehlo.sort``, ``lapack_ssyevd_ffi``.
_NAME = re.compile(r"\b[a-z]\w*(?:\.\w+|_\w+)+\b")
#: What the child was doing when it failed.
_STAGES = {"load": "loading", "run": "calling the serving signature"}


def prove(directory: Path, graph: Graph, output: str | os.PathLike, *, call: bool = True) -> None:
    """Loads the SavedModel at ``directory`` in a TensorFlow process and, with ``call``, calls it once;
    ``LoweringError`` (naming ``output``, the path it was to be written at) if that fails or the outputs do
    not fit ``graph``.

    ``call=False`` for a SavedModel lowered for no platform this machine's
    TensorFlow runs on (``platforms="tpu"``): it is only loaded, since
    TensorFlow reads the StableHLO only to run it.
    """
    sizes = symbol_sizes(graph)
    with tempfile.TemporaryDirectory(prefix="unigraph-proof-") as scratch:
        inputs, log = Path(scratch) / "inputs.npz", Path(scratch) / "tensorflow.log"
        np.savez(inputs, **example_inputs(graph, sizes))
        request = {"savedmodel": str(directory), "inputs": str(inputs) if call else None, "log": str(log)}
        with _worker.lock:
            answer = _worker.ask(request)
        printed = log.read_text(errors="replace") if log.exists() else ""
    what = f"{output}: TensorFlow cannot run the SavedModel written for this model, so nothing was written"
    if answer is None:
        raise LoweringError(f"{what}: its process crashed while loading or calling it{_last_error(printed)}")
    if answer["status"] != "ok":
        said = answer["message"] + "\n" + printed
        error = _what(said)
        where = _op(said, graph) or _op("\n".join(_named_locations(directory, error)), graph) or _location(said)
        raise LoweringError(f"{what}: {_STAGES[answer['status']]} failed{where}: {error}")
    if call:
        _check_outputs(graph, sizes, answer["outputs"], what)


def start() -> None:
    """Starts the TensorFlow process ``prove`` uses, if it is not running, and returns at once."""
    _worker.start()


def symbol_sizes(graph: Graph) -> dict[str, int]:
    found = {s for n in graph.inputs for d in graph.types[n].shape if isinstance(d, str) for s in dims.symbols(d)}
    return {s: DEFAULT_SIZES.get(s, OTHER_SYMBOL_SIZE) for s in sorted(found)}


def example_inputs(graph: Graph, sizes: Mapping[str, int]) -> dict[str, np.ndarray]:
    """Seeded inputs by signature name: floats ~ N(0, 1) (as float32; the child casts them), integers and
    booleans 0 or 1 (in range of any index or mask)."""
    rng = np.random.default_rng(0)
    arrays = {}
    for name, value in zip(signature_input_names(graph), graph.inputs):
        t = graph.types[value]
        shape = dims.evaluate_shape(t.shape, sizes)
        kind = np.dtype(numpy_dtype(t.dtype)).kind
        arrays[name] = rng.standard_normal(shape).astype(np.float32) if kind in "fV" else rng.integers(0, 2, shape)
    return arrays


def _check_outputs(graph: Graph, sizes: Mapping[str, int], got: Mapping[str, dict], what: str) -> None:
    values = tree.tensor_names(graph.output_tree)
    for name, value in zip(signature_output_names(graph), values):
        t = graph.types[value]
        want = {"shape": list(dims.evaluate_shape(t.shape, sizes)), "dtype": t.dtype}
        if got.get(name) != want:
            raise LoweringError(f"{what}: its output {name!r} is {got.get(name)}, the graph declares {want}")


def _what(message: str) -> str:
    """TensorFlow's error: the StableHLO error line when there is one (it names the StableHLO op), else the
    first line that is not TensorFlow's preamble (``Graph execution error:``, ``Detected at node …``)."""
    said = _ERROR.search(message)
    if said:
        return said.group(1).strip()
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return next((line for line in lines if not _PREAMBLE.match(line)), first_line(message))


def _named_locations(directory: Path, error: str) -> list[str]:
    """Where the ops or custom call targets that ``error`` names (``lapack_ssyevd_ffi``) come from."""
    return [where for name in _NAME.findall(error) for where in stablehlo_compat.locations(directory, name)]


def _op(said: str, graph: Graph) -> str:
    """`` in op 'top_k' (its JAX lowering at …/reduce.py:199)``: the first location inside the lowering of
    an op of ``graph`` (ops made by one factory share their lowering's lines: all of those are named)."""
    used = {node.op for node in graph.nodes}
    for file, line in _LOCATION.findall(said):
        path = os.path.realpath(file)
        ops = [name for name, (source, first, last) in _lowering_spans().items()
               if name in used and source == path and first <= int(line) <= last]
        if ops:
            return f" in op {' or '.join(map(repr, ops))} (its JAX lowering at {file}:{line})"
    return ""


def _location(said: str) -> str:
    location = _LOCATION.search(said)
    return f" at {location.group(1)}:{location.group(2)}" if location else ""


def _lowering_spans() -> dict[str, tuple[str, int, int]]:
    """Each registered op's JAX lowering (a Python function): its source file and first and last lines."""
    spans = {}
    for name in REGISTRY.names():
        fn = inspect.unwrap(REGISTRY[name].jax)
        with contextlib.suppress(TypeError, OSError):
            lines, first = inspect.getsourcelines(fn)
            spans[name] = (os.path.realpath(inspect.getsourcefile(fn)), first, first + len(lines) - 1)
    return spans


def _last_error(printed: str) -> str:
    errors = _ERROR.findall(printed) or [line for line in printed.splitlines() if "Fatal" in line or "Check failed" in line]
    return f": {errors[-1].strip()}" if errors else ""


_worker = JsonChild(_WORKER, isolated=True)
