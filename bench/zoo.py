"""The zoo: how much of a wide set of models converts, path by path, and how closely.

Every model of ``bench/zoo_models.py`` (timm, torchvision, Hugging Face
transformers, keras.applications, keras_hub and hand-written models, built
from configs with seeded random weights; constant-valued float tensors
randomized) runs in its own worker process with a time limit, through each
path that applies to it:

torch models
  ``flax``        ``ug.from_torch``, the converted model (JAX) against torch eager
  ``savedmodel``  ``conv.to_savedmodel``, reloaded and run in a process that imports only TensorFlow
  ``roundtrip``   ``conv.to_state_dict()`` equal to the model's own and loading into it ``strict``;
                  the module of ``conv.to_torch()`` against torch eager
  ``keras``       ``conv.to_keras()`` run under Keras's TensorFlow backend
Keras models
  ``flax``        ``ug.from_keras`` against Keras (TensorFlow backend)
  ``torch``       ``conv.to_torch()`` against Keras

Each model is converted at batch 1 (the batch dimension symbolic) and checked
at batch 2. A path passes when every output leaf has the source's
shape and, for floats, ``max |got - want| <= 1e-4 * max |want|`` (its error
relative to the output's scale, the number the table shows), integers and
booleans exactly. Each cell also gives the seconds the path's conversion took.
A torch model that ``torch.export`` cannot trace is listed apart with the
reason and counts on no path.

    python bench/zoo.py                                  # everything, merged into bench/results/zoo.{json,md}
    python bench/zoo.py --family timm --paths flax keras
    python bench/zoo.py --only transformers/bert keras_hub/gpt2 --jobs 2

Results merge into the existing JSON by (model, path), so the zoo can be run
in chunks; ``--fresh`` starts from nothing.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import importlib.metadata
import inspect
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
TORCH_PATHS = ("flax", "savedmodel", "roundtrip", "keras")
KERAS_PATHS = ("flax", "torch")
PATHS = ("flax", "savedmodel", "roundtrip", "keras", "torch")
#: The bound on ``max |got - want| / max |want|`` of every float output leaf.
TOLERANCE = 1e-4
#: The batch size each model is converted at (its batch dimension symbolic), and those it is checked at.
TRACE_BATCH, BATCHES = 1, (2,)
PACKAGES = ("torch", "torchvision", "timm", "transformers", "jax", "flax", "tensorflow-cpu", "keras", "keras-hub")

sys.path.insert(0, str(ROOT))


def applicable(source: str) -> tuple[str, ...]:
    return TORCH_PATHS if source == "torch" else KERAS_PATHS


def first_line(error: BaseException) -> str:
    """The exception's type and first line (with the next line where the first ends in a colon)."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    text = f"{lines[0]} {lines[1]}" if lines[0].endswith(":") and len(lines) > 1 else lines[0]
    return f"{type(error).__name__}: {text}"


# ---- comparing outputs (NumPy only: the TensorFlow process reuses nothing else) ----------------------------


def flatten(outputs, path: str = "") -> dict:
    """``{"['logits']": array, "[0]": array, …}``: every tensor of a nested output by its path, as NumPy."""
    import numpy as np

    if isinstance(outputs, dict) or hasattr(outputs, "keys") and hasattr(outputs, "items"):
        items = [(f"{path}[{k!r}]", v) for k, v in outputs.items()]
    elif isinstance(outputs, (tuple, list)):
        items = [(f"{path}[{i}]", v) for i, v in enumerate(outputs)]
    elif outputs is None:
        return {}
    else:
        if hasattr(outputs, "detach"):
            outputs = outputs.detach().cpu().numpy()
        elif hasattr(outputs, "numpy"):
            outputs = outputs.numpy()
        return {path or "output": np.asarray(outputs)}
    return {p: leaf for k, v in items for p, leaf in flatten(v, k).items()}


#: ``flatten`` for the TensorFlow process, read once (the file may change while the zoo runs).
FLATTEN_SOURCE = inspect.getsource(flatten)


def compare(got: dict, want: dict) -> tuple[float, str | None]:
    """(the largest error relative to its leaf's scale, the first failure or None)."""
    import numpy as np

    if sorted(got) != sorted(want):
        return float("nan"), f"outputs {sorted(got)}, the source's {sorted(want)}"
    worst = 0.0
    for path, expected in want.items():
        value = np.asarray(got[path])
        if value.shape != expected.shape:
            return float("nan"), f"{path}: shape {value.shape}, the source's {expected.shape}"
        if not np.issubdtype(expected.dtype, np.inexact):
            if not np.array_equal(value, expected):
                return float("nan"), f"{path}: {np.mean(value != expected):.1%} of its integers differ"
            continue
        a, b = value.astype(np.float64), expected.astype(np.float64)
        same = (a == b) | (np.isnan(a) & np.isnan(b))  # infinities and NaNs where the source has them
        scale = float(np.max(np.abs(b[np.isfinite(b)]), initial=0.0)) or 1.0
        error = float(np.max(np.where(same, 0.0, np.abs(a - b)), initial=0.0)) / scale
        worst = max(worst, error if np.isfinite(error) else float("inf"))
        if not error <= TOLERANCE:
            return worst, f"{path}: error {error:.2g} of the output's scale (bound {TOLERANCE:g})"
    return worst, None


# ---- the TensorFlow-only process ------------------------------------------------------------------------------

TENSORFLOW_RUN = """
import sys
import numpy as np
import tensorflow as tf

with np.load(sys.argv[2], allow_pickle=False) as data:
    stored = dict(data)
m = tf.saved_model.load(sys.argv[1])
outputs = {}
for batch in sys.argv[4].split(","):
    args = [stored[f"{batch}/a{i}"] for i in range(int(stored[f"{batch}/nargs"]))]
    kwargs = {k.split("/k", 1)[1]: v for k, v in stored.items() if k.startswith(f"{batch}/k")}
    outputs.update({f"{batch}/{p}": v for p, v in flatten(m(*args, **kwargs)).items()})
np.savez(sys.argv[3], **outputs)
leaked = [m for m in ("torch", "unigraph") if m in sys.modules]
assert not leaked, f"the TensorFlow process imported {leaked}"
"""


def run_savedmodel(path: Path, calls: dict, scratch: Path, timeout: float) -> dict:
    """``{batch: flat outputs}`` of the SavedModel at ``path``, run in a fresh TensorFlow-only process."""
    import numpy as np

    stored = {}
    for batch, (args, kwargs) in calls.items():
        stored[f"{batch}/nargs"] = np.asarray(len(args))
        stored.update({f"{batch}/a{i}": np.asarray(a) for i, a in enumerate(args)})
        stored.update({f"{batch}/k{k}": np.asarray(v) for k, v in kwargs.items()})
    np.savez(scratch / "inputs.npz", **stored)
    script = "import numpy as np\n" + FLATTEN_SOURCE + TENSORFLOW_RUN
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("PYTHONPATH", None)
    done = subprocess.run(
        [sys.executable, "-c", script, str(path), str(scratch / "inputs.npz"), str(scratch / "outputs.npz"),
         ",".join(map(str, calls))],
        capture_output=True, text=True, cwd=scratch, env=env, timeout=timeout,
    )
    if done.returncode:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        raise RuntimeError(f"the TensorFlow process failed: {lines[-1] if lines else done.returncode}")
    with np.load(scratch / "outputs.npz", allow_pickle=False) as data:
        outputs = dict(data)
    return {batch: {k.split("/", 1)[1]: v for k, v in outputs.items() if k.split("/", 1)[0] == str(batch)}
            for batch in calls}


# ---- the worker: one model, its paths --------------------------------------------------------------------------


class Recorder:
    """The worker's result, rewritten to ``out`` after every step (a model that times out keeps what it did)."""

    def __init__(self, out: Path, result: dict):
        self.out, self.result = out, result
        self.write()

    def write(self):
        self.out.write_text(json.dumps(self.result))

    def path(self, name: str, seconds: float, error: float = float("nan"), failure: str | None = None):
        self.result["paths"][name] = {
            "ok": failure is None, "error": None if error != error else error, "seconds": round(seconds, 2),
            "reason": failure,
        }
        self.write()


def _check(recorder: Recorder, name: str, convert, run, want: dict, calls: dict, flat: bool = False):
    """Times ``convert()``, then compares ``run(converted, batch, call)`` (flattened already with ``flat``)
    with ``want`` at every batch."""
    start = time.perf_counter()
    try:
        converted = convert()
    except Exception as e:  # a failing path is a result: its reason is recorded
        recorder.path(name, time.perf_counter() - start, failure=first_line(e))
        return None
    seconds = time.perf_counter() - start
    worst = 0.0
    try:
        for batch, call in calls.items():
            outputs = run(converted, batch, call)
            error, failure = compare(outputs if flat else flatten(outputs), want[batch])
            worst = max(worst, error) if error == error else worst
            if failure:
                recorder.path(name, seconds, error, f"batch {batch} {failure}")
                return converted
    except Exception as e:
        recorder.path(name, seconds, failure=first_line(e))
        return converted
    recorder.path(name, seconds, worst)
    return converted


def worker_torch(entry, paths, recorder: Recorder, scratch: Path, timeout: float):
    import contextlib

    import torch

    import unigraph as ug
    from unigraph.errors import ExportError
    from unigraph.frontends.torch_export import run_reference

    case = entry.build()
    calls = {batch: case.make_inputs(batch) for batch in BATCHES}
    want = {batch: flatten(run_reference(case.model, *call)) for batch, call in calls.items()}
    grad = torch.no_grad() if case.no_grad else contextlib.nullcontext()
    start = time.perf_counter()
    try:
        with grad:
            conv = ug.from_torch(case.model, *case.make_inputs(TRACE_BATCH))
    except ExportError as e:
        recorder.result["export_error"] = first_line(e)
        recorder.write()
        return
    except Exception as e:
        for name in paths:
            recorder.path(name, time.perf_counter() - start, failure=f"from_torch: {first_line(e)}")
        return
    convert_s = time.perf_counter() - start
    recorder.result["convert_s"] = round(convert_s, 2)

    def explain(converted, call):
        report = ug.check(case.model, converted, *call, rtol=0.0, atol=0.0)
        return f"; {report.divergence}" if report.divergence else ""

    if "flax" in paths:
        _check(recorder, "flax", lambda: conv, lambda c, b, call: c(*call[0], **call[1]), want, calls)
        recorder.result["paths"]["flax"]["seconds"] = round(convert_s, 2)
        if not recorder.result["paths"]["flax"]["ok"]:
            try:
                recorder.result["paths"]["flax"]["reason"] += explain(conv, calls[BATCHES[-1]])
            except Exception:  # locating is a courtesy; the failure is recorded already
                pass
        recorder.write()
    if "roundtrip" in paths:
        def roundtrip():
            original = case.model.state_dict()
            state = conv.to_state_dict()
            if sorted(state) != sorted(original):
                raise AssertionError(f"state dict keys differ: {sorted(set(state) ^ set(original))[:4]}")
            for key, tensor in original.items():
                if state[key].dtype != tensor.dtype or not torch.equal(state[key], tensor):
                    raise AssertionError(f"state dict entry {key} differs")
            case.model.load_state_dict(state, strict=True)
            return conv.to_torch()

        def run_module(module, batch, call):
            with torch.no_grad():
                return module(*call[0], **call[1])

        _check(recorder, "roundtrip", roundtrip, run_module, want, calls)
    if "keras" in paths:
        import unigraph.backends.savedmodel  # noqa: F401  (triton before TensorFlow: unigraph/native_order.py)
        from unigraph.backends.keras import call_as_source

        _check(recorder, "keras", lambda: call_as_source(conv.to_keras(), conv),
               lambda call_keras, b, call: call_keras(*call[0], **call[1]), want, calls)
    if "savedmodel" in paths:
        import unigraph.backends.savedmodel  # noqa: F401

        numpy_calls = {b: (tuple(a.numpy() for a in args), {k: v.numpy() for k, v in kwargs.items()})
                       for b, (args, kwargs) in calls.items()}

        reloaded = {}  # every batch's outputs, from one TensorFlow process

        def run(path, batch, call):
            if not reloaded:
                reloaded.update(run_savedmodel(path, numpy_calls, scratch, timeout))
            return reloaded[batch]

        def write():
            return conv.to_savedmodel(scratch / "savedmodel", platforms=("cpu",), overwrite=True)

        _check(recorder, "savedmodel", write, run, want, calls, flat=True)


def worker_keras(entry, paths, recorder: Recorder):
    import numpy as np
    import torch

    import unigraph.backends.savedmodel  # noqa: F401  (triton before TensorFlow: unigraph/native_order.py)
    import keras

    import unigraph as ug

    case = entry.build()
    calls = {batch: case.make_inputs(batch) for batch in BATCHES}
    want = {b: flatten(keras.tree.map_structure(keras.ops.convert_to_numpy, case.model(x, training=False)))
            for b, x in calls.items()}
    start = time.perf_counter()
    try:
        conv = ug.from_keras(case.model, case.make_inputs(TRACE_BATCH) if case.example else None)
    except Exception as e:
        for name in paths:
            recorder.path(name, time.perf_counter() - start, failure=f"from_keras: {first_line(e)}")
        return
    convert_s = time.perf_counter() - start
    recorder.result["convert_s"] = round(convert_s, 2)
    if "flax" in paths:
        _check(recorder, "flax", lambda: conv, lambda c, b, x: c(x), want, calls)
        recorder.result["paths"]["flax"]["seconds"] = round(convert_s, 2)
        recorder.write()
    if "torch" in paths:
        def as_torch(x):
            return {k: torch.from_numpy(np.asarray(v)) for k, v in x.items()} if isinstance(x, dict) else (
                torch.from_numpy(np.asarray(x)))

        def run_module(module, batch, x):
            with torch.no_grad():
                return module(as_torch(x))

        _check(recorder, "torch", conv.to_torch, run_module, want, calls)


def worker(model_id: str, paths: list[str], out: Path, timeout: float) -> None:
    import torch  # noqa: F401  (torch and its model libraries load before TensorFlow: see DEVELOPERS.md)

    from bench.zoo_models import ZOO

    entry = ZOO[model_id]
    recorder = Recorder(out, {"model": model_id, "family": entry.family, "source": entry.source, "paths": {},
                              "export_error": None, "convert_s": None})
    with tempfile.TemporaryDirectory(prefix="zoo_") as scratch:
        if entry.source == "torch":
            worker_torch(entry, paths, recorder, Path(scratch), timeout)
        else:
            worker_keras(entry, paths, recorder)


# ---- the driver --------------------------------------------------------------------------------------------


def run_model(model_id: str, source: str, paths: list[str], timeout: float) -> dict:
    """One model in a worker process under ``timeout``; paths it did not finish fail with the reason."""
    wanted = [p for p in paths if p in applicable(source)]
    with tempfile.TemporaryDirectory(prefix="zoo_run_") as scratch:
        out = Path(scratch) / "result.json"
        env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
        reason = None
        try:
            done = subprocess.run(
                [sys.executable, __file__, "--worker", model_id, "--paths", *wanted, "--out", str(out),
                 "--timeout", str(timeout)],
                capture_output=True, text=True, env=env, timeout=timeout, cwd=scratch,
            )
            if done.returncode:
                lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
                reason = f"worker exited {done.returncode}: {lines[-1][:300] if lines else ''}"
        except subprocess.TimeoutExpired:
            reason = f"timed out after {timeout:.0f} s"
        result = json.loads(out.read_text()) if out.exists() else {"model": model_id, "paths": {}}
    result.setdefault("export_error", None)
    if result["export_error"] is None:
        for path in wanted:
            if path not in result["paths"]:
                result["paths"][path] = {"ok": False, "error": None, "seconds": None,
                                         "reason": reason or "the worker stopped before this path"}
    return result


def versions() -> dict:
    found = {}
    for package in PACKAGES:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = None
    try:
        found["unigraph"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                           cwd=ROOT).stdout.strip() or None
    except OSError:
        found["unigraph"] = None
    return found


def coverage(models: dict) -> dict:
    """Per path: models passed, models it applies to (traceable models only), and the share."""
    table = {}
    for path in PATHS:
        rows = [m for m in models.values() if m.get("export_error") is None and path in m["paths"]]
        passed = sum(m["paths"][path]["ok"] for m in rows)
        table[path] = {"passed": passed, "total": len(rows), "share": passed / len(rows) if rows else None}
    return table


def markdown(data: dict) -> str:
    from bench.zoo_models import ZOO

    lines = [
        "# Model zoo: conversion coverage",
        "",
        f"Run {data['date']} with " + ", ".join(f"{k} {v}" for k, v in data["versions"].items() if v) + ".",
        "Written by `python bench/zoo.py` (see its docstring); models are built from configs with seeded random "
        "weights, their constant-valued tensors randomized, converted at batch 1 (its batch dimension symbolic) and checked at batch 2. "
        f"A cell is `ok` with the largest error relative to the output's scale (bound {TOLERANCE:g}) and the "
        "path's conversion seconds, or `FAIL [n]` with a note below.",
        "",
        f"{len(data['models'])} of the zoo's {len(ZOO)} models have run (`bench/zoo.py --list` names them all).",
        "",
        "| path | passed | of | coverage |",
        "| --- | ---: | ---: | ---: |",
    ]
    for path, c in data["coverage"].items():
        if c["total"]:
            lines.append(f"| {path} | {c['passed']} | {c['total']} | {c['share']:.1%} |")
    lines += ["", "| model | " + " | ".join(PATHS) + " |", "| --- |" + " --- |" * len(PATHS)]
    notes: list[str] = []
    models = data["models"]
    order = [m for m in ZOO if m in models] + sorted(m for m in models if m not in ZOO)
    for model_id in order:
        model = models[model_id]
        if model.get("export_error") is not None:
            continue
        cells = []
        for path in PATHS:
            result = model["paths"].get(path)
            if result is None:
                cells.append("")
            elif result["ok"]:
                seconds = f", {result['seconds']:.1f} s" if result["seconds"] is not None else ""
                cells.append(f"ok {result['error']:.0e}{seconds}")
            else:
                if result["reason"] not in notes:
                    notes.append(result["reason"])
                cells.append(f"FAIL [{notes.index(result['reason']) + 1}]")
        lines.append(f"| {model_id} | " + " | ".join(cells) + " |")
    if notes:
        lines += ["", "## Failures", ""] + [f"{i}. {note}" for i, note in enumerate(notes, 1)]
    apart = {m: r["export_error"] for m, r in models.items() if r.get("export_error") is not None}
    if apart:
        lines += ["", "## Models torch.export cannot trace (counted on no path)", ""]
        lines += [f"- {m}: {reason}" for m, reason in sorted(apart.items())]
    return "\n".join(lines) + "\n"


def write_results(data: dict, out: Path) -> None:
    data["coverage"] = coverage(data["models"])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
    out.with_suffix(".md").write_text(markdown(data))


def select(options, parser) -> dict:
    from bench.zoo_models import ZOO

    chosen = dict(ZOO)
    if options.family:
        unknown = sorted(set(options.family) - {e.family for e in ZOO.values()})
        if unknown:
            parser.error(f"unknown families {unknown}; known: {sorted({e.family for e in ZOO.values()})}")
        chosen = {k: e for k, e in chosen.items() if e.family in options.family}
    if options.only:
        unknown = [m for m in options.only if m not in ZOO]
        if unknown:
            parser.error(f"unknown models {unknown}; known: {' '.join(ZOO)}")
        chosen = {k: e for k, e in chosen.items() if k in options.only}
    return chosen


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", help="model ids (family/name)")
    parser.add_argument("--family", nargs="+", help="families (timm, torchvision, transformers, handwritten, ...)")
    parser.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS), help="paths to run")
    parser.add_argument("--jobs", type=int, default=1, help="models run at once")
    parser.add_argument("--timeout", type=float, default=600, help="seconds for each model's worker")
    parser.add_argument("--out", type=Path, default=RESULTS / "zoo.json", help="the JSON (the markdown beside it)")
    parser.add_argument("--fresh", action="store_true", help="replace the results instead of merging into them")
    parser.add_argument("--list", action="store_true", help="print the model ids and stop")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.worker:
        worker(options.worker, options.paths, options.out, options.timeout)
        return 0
    chosen = select(options, parser)
    if options.list:
        print("\n".join(chosen))
        return 0

    data = {"models": {}}
    if options.out.exists() and not options.fresh:
        data = json.loads(options.out.read_text())
    data["date"] = datetime.date.today().isoformat()
    data["versions"] = versions()
    data["tolerance"] = TOLERANCE
    with concurrent.futures.ThreadPoolExecutor(max(1, options.jobs)) as pool:
        futures = {pool.submit(run_model, k, e.source, options.paths, options.timeout): k for k, e in chosen.items()}
        for future in concurrent.futures.as_completed(futures):
            result = future.result()
            old = data["models"].get(result["model"], {"paths": {}})
            result["paths"] = {**old.get("paths", {}), **result["paths"]} if result["export_error"] is None else {}
            data["models"][result["model"]] = result
            write_results(data, options.out)
            cells = "traced by no torch.export: " + result["export_error"] if result["export_error"] else "  ".join(
                f"{p} {'ok' if r['ok'] else 'FAIL'}" for p, r in result["paths"].items() if p in options.paths)
            print(f"{result['model']:44} {cells}", flush=True)
            for p, r in result["paths"].items():
                if not r["ok"] and p in options.paths:
                    print(f"    {p}: {r['reason']}", flush=True)
    for path, c in data["coverage"].items():
        if c["total"]:
            print(f"{path:11} {c['passed']}/{c['total']} ({c['share']:.1%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
