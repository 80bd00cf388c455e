"""The whole zoo through ``conv.to_keras()``: every Keras backend, eager and compiled, against the source.

Per model of both zoos (the torch zoo of ``tests/zoo/models.py`` and the Keras
zoo of ``tests/zoo/test_keras_zoo.py``; seeded random weights, norm
statistics, scales, offsets and zero-initialized parameters randomized by the
zoos, so that a dropped or swapped one shows), the
source framework runs it (torch eager; Keras on TensorFlow) at the zoo's batch
sizes; ``ug.from_torch`` / ``ug.from_keras`` converts it once, and the Keras
model of ``conv.to_keras()`` is compared with those outputs:

- here, under Keras's TensorFlow backend: eagerly (``tf eager``), inside
  ``tf.function(jit_compile=False)`` (``tf.fn``) and ``tf.function(jit_compile=True)``
  (``xla``), each traced per batch size and, in the ``dyn`` columns, once for
  every batch size with an ``input_signature`` whose symbolic dimensions are
  ``None`` (as a SavedModel export traces it: the lowerings see those sizes as
  tensors);
- in a fresh process with ``KERAS_BACKEND=jax`` (eagerly, and under
  ``jax.jit``), and with ``KERAS_BACKEND=torch`` for the CNNs and BERT (every
  model with ``--all-torch``), on the conversion's ``.ug`` bundle
  (``conv.save``, ``ug.load``, ``to_keras()``), against the same saved outputs.

A model with a channels-first image op gets a second row, ``cl``: the same
runs of ``to_keras(channels_last=True)``, called through ``call_as_source``
(inputs and outputs transposed to and from the source's layouts).

float32, ``rtol=1e-4, atol=1e-5`` (the project's tolerance), every output leaf
at every batch size. A cell is ``ok`` or ``BAD`` with the largest absolute error,
or ``ERR`` with a note number: the notes below the table give the error's
first line. ``native/glue/op/w`` counts the model's layers: Keras's own
(``Dense``, ``Conv2D``, norms, pools, ``Embedding``), the ``Permute``/``ZeroPadding``
around channels-first convolutions, ``Op`` layers (one graph node each) and
``Weights`` layers.

    python bench/bench_keras_zoo.py                          # both zoos, every backend
    python bench/bench_keras_zoo.py --models cnn keras/bert  # a bare name picks it in both zoos
    python bench/bench_keras_zoo.py --zoo keras --no-xla --backends jax
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
#: float32 tolerances at the outputs, as DESIGN.md states them.
RTOL, ATOL = 1e-4, 1e-5
#: Models also run under Keras's torch backend (the CNNs and BERT of both zoos).
TORCH_BACKEND = {
    "torch/cnn", "torch/resnet18", "torch/mobilenet_v3_small", "torch/efficientnet_b0", "torch/convnext_tiny",
    "torch/bert", "keras/mobilenet_v2", "keras/resnet50", "keras/efficientnet_b0", "keras/densenet121",
    "keras/convnext_tiny", "keras/inception_v3", "keras/bert",
}
COLUMNS = ("tf eager", "tf.fn", "tf.fn dyn", "xla", "xla dyn", "jax", "jax jit", "torch")


def flatten(outputs, path=""):
    """``{"['logits']": array, "[0]": array, …}``: every tensor of a nested output by its path, as NumPy
    (tests/zoo/util.py's paths; without torch, for the worker processes)."""
    if isinstance(outputs, dict):
        items = [(f"{path}[{k!r}]", v) for k, v in outputs.items()]
    elif isinstance(outputs, (tuple, list)):
        items = [(f"{path}[{i}]", v) for i, v in enumerate(outputs)]
    elif outputs is None:
        return {}
    else:
        if hasattr(outputs, "detach"):
            outputs = outputs.detach().cpu().numpy()
        else:
            import keras

            outputs = keras.ops.convert_to_numpy(outputs)
        return {path or "output": np.asarray(outputs)}
    return {p: leaf for k, v in items for p, leaf in flatten(v, k).items()}


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0].strip()}" if text else type(error).__name__


def compare(run, cases) -> dict:
    """Runs ``run`` on each ``(batch, arrays, want)``; ``{"ok", "err" (max abs), "error" (first line)}``."""
    worst = 0.0
    try:
        for batch, arrays, want in cases:
            got = flatten(run(arrays))
            if sorted(got) != sorted(want):
                return {"ok": False, "err": None, "error": f"outputs {sorted(got)}, the source's {sorted(want)}"}
            for path, expected in want.items():
                value = np.asarray(got[path])
                if value.shape != expected.shape:
                    error = f"batch {batch} {path}: shape {value.shape}, the source's {expected.shape}"
                    return {"ok": False, "err": None, "error": error}
                a, b = value.astype(np.float64), expected.astype(np.float64)
                worst = max(worst, float(np.max(np.abs(a - b), initial=0.0)))
                if not np.allclose(a, b, rtol=RTOL, atol=ATOL):
                    return {"ok": False, "err": worst, "error": f"batch {batch} {path}: not within rtol={RTOL}, atol={ATOL}"}
    except Exception as e:  # any failure is a result of the bench, reported by its first line
        return {"ok": False, "err": None, "error": first_line(e)}
    return {"ok": True, "err": worst, "error": None}


def as_source(function, conv, channels_last: bool):
    """``function`` (the Keras model, or a compiled call of it) taking the graph's input arrays in order and
    returning the source's outputs in the source's layouts (``call_as_source``)."""
    from unigraph.backends.keras import call_as_source

    call = call_as_source(function, conv, channels_last=channels_last)
    return lambda arrays: call(*arrays)  # signature.bind takes a flat list of the graph's inputs


def eager(model):
    return lambda inputs: model(inputs, training=False)


# ---- the worker: a .ug bundle under this process's Keras backend ----------------------------------------------


def worker(directory: Path) -> None:
    """Loads ``directory/model.ug``, builds its Keras models (``meta.json``'s variants) and compares them with
    ``data.npz``; prints ``{variant: {column: result}}`` as JSON."""
    import keras

    import unigraph as ug

    meta = json.loads((directory / "meta.json").read_text())
    with np.load(directory / "data.npz", allow_pickle=False) as data:
        stored = dict(data)
    cases = []
    for batch in meta["batches"]:
        arrays = [stored[f"in{batch}/{i}"] for i in range(meta["inputs"])]
        want = {k.split("/", 1)[1]: v for k, v in stored.items() if k.startswith(f"out{batch}/")}
        cases.append((batch, arrays, want))
    backend = keras.backend.backend()
    results = {}
    for variant in meta["variants"]:
        channels_last = variant == "cl"
        try:
            conv = ug.load(directory / "model.ug")
            model = conv.to_keras(channels_last=channels_last)
        except Exception as e:  # reported, not raised: the table shows it
            failed = {"ok": False, "err": None, "error": first_line(e)}
            results[variant] = {backend: failed}
            continue
        results[variant] = {backend: compare(as_source(eager(model), conv, channels_last), cases)}
        if backend == "jax":
            import jax

            jitted = jax.jit(eager(model))
            results[variant]["jax jit"] = compare(as_source(jitted, conv, channels_last), cases)
    print(json.dumps({"backend": backend, "results": results}))


def run_worker(directory: Path, backend: str, timeout: float) -> dict:
    """``{variant: {column: result}}`` from a worker under Keras's ``backend``."""
    meta = json.loads((directory / "meta.json").read_text())
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}

    def failed(error: str) -> dict:
        return {variant: {backend: {"ok": False, "err": None, "error": error}} for variant in meta["variants"]}

    try:
        done = subprocess.run(
            [sys.executable, __file__, "--worker", str(directory)],
            capture_output=True, text=True, env=env, timeout=timeout, cwd=directory,
        )
    except subprocess.TimeoutExpired:
        return failed(f"timed out after {timeout:.0f} s")
    lines = done.stdout.strip().splitlines()
    if done.returncode or not lines:
        tail = [line for line in done.stderr.strip().splitlines() if line.strip()]
        return failed(f"worker exited {done.returncode}: {tail[-1] if tail else ''}")
    answer = json.loads(lines[-1])
    if answer["backend"] != backend:
        return failed(f"the worker ran Keras's {answer['backend']} backend")
    return answer["results"]


# ---- the zoos ---------------------------------------------------------------------------------------------------


def _torch_case(name: str):
    """(model id, source outputs by batch, (args, kwargs) by batch, the conversion) of a torch zoo model."""
    import torch

    import unigraph as ug
    from tests.zoo.models import MODELS

    case = MODELS[name]()
    calls = {batch: case.make_inputs(batch) for batch in case.batches}
    with torch.no_grad():
        want = {batch: flatten(case.model(*args, **kwargs)) for batch, (args, kwargs) in calls.items()}
    args, kwargs = calls[case.batches[0]]
    with torch.no_grad() if case.no_grad else torch.enable_grad():
        conv = ug.from_torch(case.model, args, kwargs)
    return want, calls, conv


def _keras_case(name: str):
    import keras

    import unigraph as ug
    from tests.zoo.test_keras_zoo import BATCHES, MODELS

    case = MODELS[name]()
    calls = {batch: ((case.make_inputs(batch),), {}) for batch in BATCHES}
    want = {
        batch: flatten(keras.tree.map_structure(keras.ops.convert_to_numpy, case.model(args[0], training=False)))
        for batch, (args, _) in calls.items()
    }
    conv = ug.from_keras(case.model, case.make_inputs(2) if case.example else None)
    return want, calls, conv


def zoo() -> dict[str, object]:
    """Model id (``torch/resnet18``, ``keras/bert``) → a function returning (want, calls, conv)."""
    from tests.zoo.models import MODELS
    from tests.zoo.test_keras_zoo import MODELS as KERAS_MODELS

    found = {f"torch/{name}": (lambda name=name: _torch_case(name)) for name in MODELS}
    found.update({f"keras/{name}": (lambda name=name: _keras_case(name)) for name in KERAS_MODELS})
    return found


# ---- one model --------------------------------------------------------------------------------------------------

#: Ops the channels-last pass moves (``unigraph.channels_last``): a graph with one channels-first also gets a
#: ``to_keras(channels_last=True)`` row.
IMAGE_OPS = ("conv", "conv_transpose", "max_pool", "avg_pool", "adaptive_avg_pool", "adaptive_max_pool", "resize", "group_norm")


def variants(graph) -> list[str]:
    """``source`` (the graph's layouts), and ``cl`` where some image op runs channels-first."""
    channels_first = any(n.op in IMAGE_OPS and not n.attrs.get("channels_last", False) for n in graph.nodes)
    return ["source", "cl"] if channels_first else ["source"]


def layer_counts(model) -> dict:
    counts = {"native": 0, "glue": 0, "op": 0, "weights": 0}
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "InputLayer":
            continue
        if kind == "Op":
            counts["op"] += 1
        elif kind == "Weights":
            counts["weights"] += 1
        elif kind == "Permute" or kind.startswith("ZeroPadding"):
            counts["glue"] += 1
        else:
            counts["native"] += 1
    return counts


def tensorflow_runs(model, conv, channels_last: bool, cases, options) -> dict:
    """The model under Keras's TensorFlow backend: eager, and in ``tf.function``s with and without XLA.

    Each batch size is traced on its own (static shapes), and in the ``dyn`` columns once for all with the
    model's symbolic dimensions as ``None`` (as a SavedModel export traces it), where the lowerings see
    those sizes as tensors.
    """
    import keras
    import tensorflow as tf

    results = {"tf eager": compare(as_source(eager(model), conv, channels_last), cases)}
    dynamic = [keras.tree.map_structure(lambda t: tf.TensorSpec(t.shape, t.dtype), model.input)]
    for column, jit, signature in (
        ("tf.fn", False, None), ("tf.fn dyn", False, dynamic), ("xla", True, None), ("xla dyn", True, dynamic),
    ):
        if jit and not options.xla:
            continue
        function = tf.function(eager(model), jit_compile=jit, input_signature=signature)
        results[column] = compare(as_source(function, conv, channels_last), cases)
    return results


def bench(model_id: str, build, options, scratch: Path) -> list[dict]:
    """One row per variant: ``{"model", "layers", "results": {column: result}}`` (or an error of the row)."""
    from unigraph import signature
    from unigraph.converted import host_arrays

    start = time.perf_counter()
    try:
        want, calls, conv = build()
    except Exception as e:  # the conversion itself failed: every column is that error
        return [{"model": model_id, "error": first_line(e), "results": {}}]
    seconds = time.perf_counter() - start
    graph = conv.graph
    arrays = {batch: [np.asarray(a) for a in signature.bind(graph, *host_arrays(call))] for batch, call in calls.items()}
    cases = [(batch, arrays[batch], want[batch]) for batch in calls]
    kinds = variants(graph) if options.channels_last else ["source"]
    rows = {}
    for variant in kinds:
        row = rows[variant] = {"model": model_id + (" cl" if variant == "cl" else ""), "convert_s": seconds, "results": {}}
        try:
            model = conv.to_keras(channels_last=variant == "cl")
        except Exception as e:
            row["error"] = first_line(e)
            continue
        row["layers"] = layer_counts(model)
        row["results"].update(tensorflow_runs(model, conv, variant == "cl", cases, options))

    directory = scratch / model_id.replace("/", "_")
    directory.mkdir(parents=True, exist_ok=True)
    conv.save(directory / "model.ug", overwrite=True)
    stored = {}
    for batch in calls:
        stored.update({f"in{batch}/{i}": array for i, array in enumerate(arrays[batch])})
        stored.update({f"out{batch}/{path}": value for path, value in want[batch].items()})
    np.savez(directory / "data.npz", **stored)
    meta = {"batches": list(calls), "inputs": len(graph.inputs), "variants": kinds}
    (directory / "meta.json").write_text(json.dumps(meta))
    for backend in options.backends:
        if backend == "torch" and not (options.all_torch or model_id in TORCH_BACKEND):
            continue
        for variant, results in run_worker(directory, backend, options.timeout).items():
            rows[variant]["results"].update(results)
    return list(rows.values())


# ---- the table --------------------------------------------------------------------------------------------------


def cell(result: dict | None, notes: list[str]) -> str:
    if result is None:
        return "-"
    if result["ok"]:
        return f"ok {result['err']:.0e}"
    if result["err"] is not None:
        return f"BAD {result['err']:.0e}"
    if result["error"] not in notes:
        notes.append(result["error"])
    return f"ERR [{notes.index(result['error']) + 1}]"


def print_row(row: dict, notes: list[str]) -> None:
    layers = row.get("layers")
    counts = f"{layers['native']}/{layers['glue']}/{layers['op']}/{layers['weights']}" if layers else "-"
    cells = [cell(row["results"].get(c), notes) for c in COLUMNS]
    if "error" in row:  # the conversion or to_keras failed: the columns that did not run show it
        failed = cell({"ok": False, "err": None, "error": row["error"]}, notes)
        cells = [failed if c not in row["results"] else shown for c, shown in zip(COLUMNS, cells)]
    seconds = f"{row['convert_s']:.1f}" if "convert_s" in row else "-"
    print(f"{row['model']:28} {seconds:>9} {counts:>16} " + " ".join(f"{c:>9}" for c in cells), flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", help="model ids (torch/bert, keras/bert) or bare names (both zoos)")
    parser.add_argument("--zoo", choices=("torch", "keras", "both"), default="both")
    parser.add_argument("--backends", nargs="*", default=["jax", "torch"], choices=("jax", "torch"),
                        help="Keras backends run in fresh processes on the .ug bundle")
    parser.add_argument("--all-torch", action="store_true", help="every model under Keras's torch backend too")
    parser.add_argument("--no-xla", dest="xla", action="store_false", help="skip tf.function(jit_compile=True)")
    parser.add_argument("--no-channels-last", dest="channels_last", action="store_false",
                        help="skip the to_keras(channels_last=True) rows")
    parser.add_argument("--timeout", type=float, default=1200, help="seconds for each worker process")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.worker:
        worker(options.worker)
        return 0

    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    if os.environ["KERAS_BACKEND"] != "tensorflow":
        parser.error("run the bench under Keras's TensorFlow backend (the worker processes run the others)")
    import unigraph.backends.savedmodel  # noqa: F401  (loads triton, then TensorFlow: see unigraph/native_order.py)
    import keras
    import tensorflow as tf
    import torch

    tf.get_logger().setLevel("ERROR")  # tf.function's retracing warnings: each batch size is a new trace
    models = zoo()
    if options.zoo != "both":
        models = {k: v for k, v in models.items() if k.startswith(options.zoo + "/")}
    if options.models:
        unknown = [m for m in options.models if m not in models and not any(k.endswith("/" + m) for k in models)]
        if unknown:
            parser.error(f"unknown models {unknown}; known: {' '.join(models)}")
        models = {k: v for k, v in models.items() if k in options.models or k.split("/", 1)[1] in options.models}
    print(f"keras {keras.__version__}, tensorflow {tf.__version__}, torch {torch.__version__}; "
          f"float32 rtol={RTOL}, atol={ATOL}; cells: ok/BAD max abs error, ERR [note]\n")
    header = f"{'model':28} {'convert s':>9} {'native/glue/op/w':>16} " + " ".join(f"{c:>9}" for c in COLUMNS)
    print(header)
    print("-" * len(header), flush=True)
    notes: list[str] = []
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_keras_zoo_") as scratch:
        for model_id, build in models.items():
            for row in bench(model_id, build, options, Path(scratch)):
                rows.append(row)
                print_row(row, notes)
    if notes:
        print()
        for i, note in enumerate(notes, 1):
            print(f"[{i}] {note}")
    failed = sum(not r["ok"] for row in rows for r in row["results"].values()) + sum("error" in row for row in rows)
    print(f"\n{len(models)} models, {len(rows)} rows, {failed} failing cells or rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
