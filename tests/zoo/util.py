"""Whole-model checks: convert once (batch dynamic), compare with torch eager at several batch sizes."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import numpy as np
import torch

import unigraph as ug
from tests.zoo.models import ZooModel

#: float32 tolerances at the outputs, as DESIGN.md states them.
RTOL, ATOL = 1e-4, 1e-5


def flatten(outputs, path=""):
    """``{"['logits']": array, "[0]": array, …}``: every tensor of a nested output by its path, as NumPy.

    Uses nothing but NumPy as ``np``: the fresh TensorFlow and torch
    processes of the zoo tests run its source (``inspect.getsource``) too.
    """
    if isinstance(outputs, dict):
        items = [(f"{path}[{k!r}]", v) for k, v in outputs.items()]
    elif isinstance(outputs, (tuple, list)):
        items = [(f"{path}[{i}]", v) for i, v in enumerate(outputs)]
    elif outputs is None:
        return {}
    else:
        return {path or "output": outputs.detach().numpy() if hasattr(outputs, "detach") else np.asarray(outputs)}
    return {p: leaf for k, v in items for p, leaf in flatten(v, k).items()}


def assert_converts(
    model: torch.nn.Module,
    make_inputs: Callable[[int], tuple[tuple, dict]],
    batches=(1, 3),
    rtol: float = RTOL,
    atol: float = ATOL,
):
    """Converts ``model`` on inputs of the first batch size, typechecks the graph; checks every batch size.

    The other zoo tests convert the same models; the Keras zoo's graphs are
    typechecked when the conversion worker's bundle is loaded.
    """
    torch.manual_seed(0)
    model.eval()
    args, kwargs = make_inputs(batches[0])
    conv = ug.from_torch(model, args, kwargs)
    conv.graph.typecheck()
    for batch in batches:
        args, kwargs = make_inputs(batch)
        report = ug.check(model, conv, args, kwargs, rtol=rtol, atol=atol)
        assert report.ok, f"batch {batch}:\n{report}"
    return conv


def assert_zoo_converts(case: ZooModel):
    """``assert_converts`` for a zoo model (under ``torch.no_grad()`` where it asks for it)."""
    with torch.no_grad() if case.no_grad else contextlib.nullcontext():
        return assert_converts(case.model, case.make_inputs, batches=case.batches)
