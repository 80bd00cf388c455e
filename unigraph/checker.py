"""The numerical checker: a converted model against its source, output by output.

``check(reference, candidate, inputs)`` runs both on the same inputs and
compares every output leaf with metrics computed by one jitted JAX function
(on whatever device JAX has): max absolute error, max relative error, the
fraction of elements outside ``atol + rtol * |reference|``, and cosine
similarity. When outputs disagree, ``locate`` names the first graph node
that diverges, with its source location, in two steps:

- the graph (run by JAX) against the source, value by value: the source's
  values come from the conversion's trace (the torch program's fx nodes,
  or the jaxpr's variables for JAX, Flax and Keras sources);
- for a SavedModel or torch module written from a ``Converted``, where the
  graph agrees with the source, the output's own lowerings against the
  graph's JAX values: every node's torch lowering on the JAX values of its
  inputs, or the whole graph through jax2tf (what the SavedModel's one
  ``XlaCallModule`` runs) with every node's value returned, run by
  TensorFlow.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from unigraph import interpreter, signature
from unigraph.api import framework_of
from unigraph.converted import Converted, host_arrays
from unigraph.dtypes import jax_dtype


@dataclasses.dataclass(frozen=True)
class OutputCheck:
    """One output leaf: its path, shapes, dtypes and error metrics."""

    path: str
    shape: tuple[int, ...]
    reference_dtype: str
    candidate_dtype: str
    max_abs: float
    max_rel: float
    mismatch: float
    cosine: float
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None and self.mismatch == 0.0


@dataclasses.dataclass(frozen=True)
class Divergence:
    """The first graph value that disagrees with the source model's matching value.

    ``lowering`` is None when the graph's JAX value disagrees with the
    source's; otherwise the backend (``"torch"``, ``"savedmodel"``) whose
    lowering of the node disagrees with its JAX value. ``problem``: the
    backend failed to run the node at all (its error), or shapes differ.
    """

    value: str
    op: str
    source: str
    max_abs: float
    max_rel: float
    mismatch: float
    lowering: str | None = None
    problem: str | None = None

    def __str__(self) -> str:
        against = "" if self.lowering is None else f" in the {self.lowering} lowering, against the graph's JAX value"
        if self.problem is not None:
            return f"first divergence at {self.value} = {self.op}(…) ({self.source}){against}: {self.problem}"
        return (
            f"first divergence at {self.value} = {self.op}(…) ({self.source}){against}: "
            f"max abs {self.max_abs:.3g}, max rel {self.max_rel:.3g}, "
            f"{self.mismatch:.2%} of elements outside tolerance"
        )


@dataclasses.dataclass(frozen=True)
class Report:
    reference: str
    candidate: str
    outputs: tuple[OutputCheck, ...]
    rtol: float
    atol: float
    device: str
    divergence: Divergence | None = None

    @property
    def ok(self) -> bool:
        return bool(self.outputs) and all(o.ok for o in self.outputs)

    def __bool__(self) -> bool:
        return self.ok

    def table(self) -> str:
        header = ("output", "shape", "dtype", "max abs", "max rel", "mismatch", "cosine", "")
        rows = [header]
        for o in self.outputs:
            dtype = o.reference_dtype if o.reference_dtype == o.candidate_dtype else (
                f"{o.reference_dtype}→{o.candidate_dtype}"
            )
            rows.append(
                (
                    o.path,
                    "x".join(str(d) for d in o.shape) or "scalar",
                    dtype,
                    _num(o.max_abs),
                    _num(o.max_rel),
                    f"{o.mismatch:.2%}",
                    f"{o.cosine:.6f}",
                    "ok" if o.ok else "FAIL" + (f": {o.problem}" if o.problem else ""),
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
        lines = [
            "  ".join(c.ljust(w) for c, w in zip(r[:-1], widths)) + "  " + r[-1] for r in rows
        ]
        lines.insert(1, "-" * len(lines[0]))
        return "\n".join(line.rstrip() for line in lines)

    def __str__(self) -> str:
        passed = sum(o.ok for o in self.outputs)
        verdict = "PASS" if self.ok else "FAIL"
        text = (
            f"{self.candidate} vs {self.reference} on {self.device} "
            f"(rtol={self.rtol:g}, atol={self.atol:g})\n{self.table()}\n"
            f"{verdict}: {passed}/{len(self.outputs)} outputs within tolerance"
        )
        if self.divergence is not None:
            text += f"\n{self.divergence}"
        return text

    def to_json(self) -> dict:
        return {
            "ok": self.ok,
            "reference": self.reference,
            "candidate": self.candidate,
            "rtol": self.rtol,
            "atol": self.atol,
            "device": self.device,
            "outputs": [dataclasses.asdict(o) | {"ok": o.ok} for o in self.outputs],
            "divergence": None if self.divergence is None else dataclasses.asdict(self.divergence),
        }


def _num(x: float) -> str:
    return "nan" if math.isnan(x) else f"{x:.3g}"


def check(
    reference: Any,
    candidate: Any,
    inputs: Any,
    kwargs: Mapping | None = None,
    *,
    rtol: float = 1e-4,
    atol: float = 1e-5,
    locate: bool = True,
    converted: Converted | None = None,
) -> Report:
    """Runs ``reference`` and ``candidate`` on ``inputs`` and compares every output.

    ``reference``: a torch model (or ExportedProgram), a Keras model (run
    with ``training=False``), a ``Converted``, or any callable taking NumPy
    arrays. ``candidate``: a ``Converted``, a TF
    SavedModel written by unigraph (its directory, or the object
    ``tf.saved_model.load`` returns), or such a callable. ``inputs``: the
    positional arguments (a tuple, or one array or tensor); ``kwargs``:
    keyword arguments. With ``locate`` (the default), a failing check of a
    ``Converted`` from torch, JAX, Flax or Keras (traced in this process)
    names the first graph node that diverges from the source.
    ``converted``: the ``Converted`` a SavedModel or torch module
    ``candidate`` was written from; a failing check then compares its graph
    with the source, and where they agree, the output's lowerings with the
    graph's JAX values node by node.
    """
    args = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    kwargs = dict(kwargs or {})
    want = _flatten(_run(reference, args, kwargs))
    got = _flatten(_run(candidate, args, kwargs))
    rows = []
    for path in dict.fromkeys([*want, *got]):
        if path not in got or path not in want:
            side = "candidate" if path not in got else "reference"
            present = want.get(path, got.get(path))
            rows.append(_missing(path, present, side))
            continue
        rows.append(compare_arrays(path, want[path], got[path], rtol, atol))
    report = Report(
        reference=_describe(reference),
        candidate=_describe(candidate),
        outputs=tuple(rows),
        rtol=rtol,
        atol=atol,
        device=_device(),
    )
    if not report.ok and locate:
        graph = candidate if isinstance(candidate, Converted) else converted
        divergence = None if graph is None else _locate(reference, graph, args, kwargs, rtol, atol)
        backend = None if isinstance(candidate, Converted) else _framework(candidate)
        if divergence is None and converted is not None and backend in LOWERINGS:
            divergence = locate_lowering(converted, backend, args, kwargs, rtol=rtol, atol=atol)
        report = dataclasses.replace(report, divergence=divergence)
    return report


def compare_arrays(path: str, reference, candidate, rtol: float, atol: float) -> OutputCheck:
    reference, candidate = np.asarray(reference), np.asarray(candidate)
    ref_dtype, cand_dtype = reference.dtype.name, candidate.dtype.name
    if reference.shape != candidate.shape:
        return OutputCheck(
            path, reference.shape, ref_dtype, cand_dtype, math.inf, math.inf, 1.0, math.nan,
            problem=f"shape {list(candidate.shape)} ≠ {list(reference.shape)}",
        )
    problem = None
    if jax_dtype(ref_dtype) != jax_dtype(cand_dtype):
        problem = f"dtype {cand_dtype} ≠ {ref_dtype}"
    exact = not np.issubdtype(reference.dtype, np.inexact)
    metrics = _metrics(
        jnp.asarray(reference.astype(np.float32)),
        jnp.asarray(candidate.astype(np.float32)),
        0.0 if exact else rtol,
        0.0 if exact else atol,
    )
    max_abs, max_rel, mismatch, cosine = (float(m) for m in metrics)
    return OutputCheck(path, reference.shape, ref_dtype, cand_dtype, max_abs, max_rel, mismatch, cosine, problem)


@jax.jit
def _metrics(reference, candidate, rtol, atol):
    """max abs, max rel (where |reference| > atol), mismatch fraction, cosine similarity."""
    both_nan = jnp.isnan(reference) & jnp.isnan(candidate)
    diff = jnp.where(both_nan, 0.0, jnp.abs(candidate - reference))
    diff = jnp.where(jnp.isnan(diff), jnp.inf, diff)
    magnitude = jnp.abs(reference)
    rel = jnp.where(magnitude > atol, diff / jnp.where(magnitude > 0, magnitude, 1.0), 0.0)
    bad = diff > atol + rtol * magnitude
    size = max(reference.size, 1)
    r = jnp.where(both_nan, 0.0, reference).ravel()
    c = jnp.where(both_nan, 0.0, candidate).ravel()
    norms = jnp.linalg.norm(r) * jnp.linalg.norm(c)
    cosine = jnp.where(norms > 0, jnp.vdot(r, c) / jnp.where(norms > 0, norms, 1.0), 1.0)
    return (
        jnp.max(diff, initial=0.0),
        jnp.max(rel, initial=0.0),
        jnp.sum(bad) / size,
        cosine,
    )


def _missing(path: str, present, side: str) -> OutputCheck:
    present = np.asarray(present)
    return OutputCheck(
        path, present.shape, present.dtype.name, present.dtype.name, math.inf, math.inf, 1.0,
        math.nan, problem=f"missing in the {side}",
    )


# ---- running models ----------------------------------------------------------------------
#
# The checker imports no framework: a torch or Keras model is run by its frontend, a SavedModel by
# its backend, each imported when such a model is given.


def _framework(model) -> str | None:
    """``"torch"``, ``"keras"`` or ``"savedmodel"`` (a directory, or what ``tf.saved_model.load`` returns)."""
    if isinstance(model, (str, os.PathLike)):
        return "savedmodel"
    framework = framework_of(model)
    return "savedmodel" if framework == "tensorflow" else framework


def _run(model, args: tuple, kwargs: dict):
    if isinstance(model, Converted):
        return jax.tree.map(np.asarray, model(*args, **kwargs))
    framework = _framework(model)
    if framework == "torch":
        from unigraph.frontends.torch_export import run_reference

        return run_reference(model, args, kwargs)
    args, kwargs = jax.tree.map(signature.as_array, host_arrays((args, kwargs)))
    if framework == "keras":
        from unigraph.frontends.keras import run_reference

        return run_reference(model, args, kwargs)
    if framework == "savedmodel":
        from unigraph.backends.savedmodel import run  # imports TensorFlow

        return run(model, args, kwargs)
    if callable(model):
        return model(*args, **kwargs)
    raise TypeError(f"cannot run {type(model).__name__}: expected a model, a Converted or a callable")


def _flatten(outputs, path: str = "") -> dict[str, np.ndarray]:
    """``{"['logits']": array, "[0]": array, …}``: every array leaf by its path."""
    if isinstance(outputs, Mapping):
        items = [(f"{path}[{k!r}]", v) for k, v in outputs.items()]
    elif isinstance(outputs, (tuple, list)):
        items = [(f"{path}[{i}]", v) for i, v in enumerate(outputs)]
    elif outputs is None:
        return {}
    else:
        return {path or "output": np.asarray(outputs)}
    flat: dict[str, np.ndarray] = {}
    for p, v in items:
        flat.update(_flatten(v, p))
    return flat


def _describe(model) -> str:
    if isinstance(model, Converted):
        return f"converted {model.metadata.get('source_model', 'model')} (jax)"
    framework = _framework(model)
    if framework == "torch":
        from unigraph.frontends.torch_export import describe_reference

        return describe_reference(model)
    if framework == "keras":
        from unigraph.frontends.keras import describe_reference

        return describe_reference(model)
    if isinstance(model, (str, os.PathLike)):
        return f"SavedModel {os.fspath(model)}"
    if framework == "savedmodel":
        return "SavedModel (loaded)"
    return getattr(model, "__name__", type(model).__name__)


def _device() -> str:
    device = jax.devices()[0]
    return f"{device.platform}:{device.device_kind}"


# ---- locating the first divergence -------------------------------------------------------------

#: The outputs whose own lowerings ``locate_lowering`` compares, by the framework the checker runs them in.
LOWERINGS = ("torch", "savedmodel")


def _locate(reference, candidate: Converted, args, kwargs, rtol, atol) -> Divergence | None:
    """The first node whose JAX value differs from the source's value it translates.

    The source's values come from the candidate's trace: the torch program's
    fx nodes (run on the call's arguments, for a torch reference), or the
    jaxpr's variables (on the graph's inputs: one per jaxpr input). None
    without a trace (a bundle, a Keras model traced in a worker).
    """
    trace = candidate.trace
    from_jaxpr = hasattr(trace, "jaxpr")  # frontends.jaxpr.JaxprTrace: JAX, Flax and Keras sources
    if trace is None or not (from_jaxpr or _framework(reference) == "torch"):
        return None
    inputs, values = _jax_values(candidate, args, kwargs)
    if from_jaxpr:
        source = trace.intermediate_values(inputs)
    else:
        from unigraph.frontends.torch_export import intermediate_values

        source = intermediate_values(trace.program, args, kwargs)
    for node in candidate.graph.nodes:
        for name in node.outputs:
            origin = trace.origins.get(name)
            if origin is None or origin not in source:
                continue
            want = source[origin]
            got = np.asarray(values[name])
            if want.shape != got.shape:
                continue
            row = compare_arrays(name, want, got, rtol, atol)
            if not row.ok:
                return Divergence(name, node.op, str(node.source), row.max_abs, row.max_rel, row.mismatch)
    return None


def _jax_values(conv: Converted, args, kwargs, variables=None) -> tuple[list, dict]:
    """The graph's inputs and every value the graph computes with JAX (at the conversion's precision)."""
    inputs = [jnp.asarray(x) for x in signature.bind(conv.graph, *host_arrays((args, kwargs)))]
    with jax.default_matmul_precision(conv.precision) if conv.precision else contextlib.nullcontext():
        _, values = interpreter.run(conv.graph, conv.variables if variables is None else variables, inputs, collect=True)
    return inputs, values


def locate_lowering(
    conv: Converted, backend: str, args, kwargs, *, variables=None, rtol: float = 1e-4, atol: float = 1e-5
) -> Divergence | None:
    """The first node whose lowering in ``backend`` (one of ``LOWERINGS``) differs from its JAX value.

    ``torch``: each node's torch lowering (``backends/torch_ops``, what the
    generated module calls) on the JAX values of its inputs, so a node is
    judged alone. ``savedmodel``: the graph lowered through jax2tf as the
    SavedModel is (symbolic dimensions symbolic, the same precision), every
    value returned, run by TensorFlow: a SavedModel is one ``XlaCallModule``
    of the graph's JAX lowerings, so that is what each of its nodes runs.
    ``variables``: the output's own (default: ``conv.variables``).
    """
    inputs, values = _jax_values(conv, args, kwargs, variables)
    variables = conv.variables if variables is None else variables
    if backend == "torch":
        from unigraph.backends.torch_nodes import lowered_values
    elif backend == "savedmodel":
        from unigraph.backends.savedmodel_values import lowered_values
    else:
        raise ValueError(f"no node-by-node lowering for {backend!r}; one of {', '.join(LOWERINGS)}")
    for node, result in lowered_values(conv, variables, inputs, values):
        if isinstance(result, Exception):
            return Divergence(node.outputs[0], node.op, str(node.source), math.inf, math.inf, 1.0, backend, str(result))
        for name, got in zip(node.outputs, result):
            row = compare_arrays(name, np.asarray(values[name]), got, rtol, atol)
            if not row.ok:
                return Divergence(
                    name, node.op, str(node.source), row.max_abs, row.max_rel, row.mismatch, backend, row.problem
                )
    return None
