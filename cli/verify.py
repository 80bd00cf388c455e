"""A written output checked against the model it came from (``convert --check``, ``unigraph check``).

The output is read back as it will be used (a SavedModel run by TensorFlow, a
bundle by ``unigraph.load``, a torch state dict loaded strictly into the
model's generated torch module, a torch source file's module with the
conversion's state dict, Flax variables run by the graph) and compared
with the source model on seeded inputs. With ``locate``, a failing check
re-runs the graph with the output's weights node by node against the source
(PyTorch, Keras: its trace) and names the first node that diverges; where
none does, a SavedModel's or torch output's own lowerings are compared with
the graph's JAX values node by node (``checker.locate_lowering``).
"""

from __future__ import annotations

import dataclasses
import os

from unigraph.cli import targets
from unigraph.checker import Report, check, locate_lowering
from unigraph.converted import Converted
from unigraph.cli.sources import Source

#: Output formats whose own lowerings ``locate`` compares, and the backend that lowers them.
LOWERED = {"savedmodel": "savedmodel", "torch": "torch", "torch_source": "torch"}


def check_output(
    source: Source,
    fmt: str,
    path: str | os.PathLike,
    *,
    seed: int = 0,
    rtol: float = 1e-4,
    atol: float = 1e-5,
    locate: bool = False,
) -> Report:
    conv = source.converted
    candidate = targets.reload(fmt, conv, path)
    args, kwargs = source.check_inputs(conv, seed)
    report = check(source.model, candidate, args, kwargs, rtol=rtol, atol=atol, locate=False)
    report = dataclasses.replace(report, reference=f"{report.reference} [{source.spec}]", candidate=f"{fmt} {os.fspath(path)}")
    if report.ok or not locate:
        return report
    probe = Converted(
        conv.graph, targets.variables(fmt, conv, path), conv.param_map, conv.metadata,
        trace=conv.trace, precision=conv.precision,
    )
    divergence = None
    if conv.trace is not None:
        divergence = check(source.model, probe, args, kwargs, rtol=rtol, atol=atol, locate=True).divergence
    if divergence is None and fmt in LOWERED:
        divergence = locate_lowering(probe, LOWERED[fmt], args, kwargs, rtol=rtol, atol=atol)
    return dataclasses.replace(report, divergence=divergence)
