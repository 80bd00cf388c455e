"""Which torch tensor each variable becomes: its state-dict name, torch layout and kind.

A torch-origin conversion gives back its own state dict: the names, layouts
and dtypes the ParamMap recorded, tied names included. Any other origin gets
torch's conventions: names from the source path (``dense_1/kernel`` →
``dense_1.weight``), Linear weights ``(out, in)``, convolution weights
``(out, in/groups, *k)``, norm scales ``weight``, batch statistics
``running_mean``/``running_var``.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from unigraph.converted import Converted
from unigraph.dtypes import numpy_dtype
from unigraph.ir import Graph
from unigraph.params import ParamEntry

#: torch leaf names of Flax roles, for conversions that did not come from torch.
_TORCH_LEAF = {
    "kernel": "weight",
    "scale": "weight",
    "embedding": "weight",
    "bias": "bias",
    "mean": "running_mean",
    "var": "running_var",
}


@dataclasses.dataclass(frozen=True)
class TorchTensor:
    """One variable as a torch tensor: ``flax_leaf == torch_tensor.permute(perm)``."""

    value: str  # the graph value it feeds
    name: str  # state-dict name
    perm: tuple[int, ...] | None
    shape: tuple[int, ...]  # torch shape
    dtype: str  # torch-side dtype name (the source dtype)
    buffer: bool  # batch_stats are buffers, params are parameters
    aliases: tuple[str, ...] = ()

    def from_flax(self, leaf) -> np.ndarray:
        """The torch-layout array for a Flax leaf, in the torch dtype (exact)."""
        array = np.asarray(leaf)
        if self.perm is not None:
            array = np.transpose(array, np.argsort(self.perm))
        return np.asarray(array, order="C").astype(numpy_dtype(self.dtype), copy=False)


def torch_tensors(conv: Converted) -> list[TorchTensor]:
    """The torch tensor of every variable of ``conv``, in graph order."""
    from_torch = conv.metadata.get("source_framework") == "torch"
    users = _first_users(conv.graph)
    plan, taken = [], set()
    for value, var in conv.graph.variables.items():
        entry = _entry(conv, var.key)
        stored = conv.graph.types[value]
        if from_torch and entry is not None:
            name, perm, dtype, aliases = entry.source_name, entry.perm, entry.source_dtype, entry.aliases
        else:
            name = _derived_name(var.path, entry)
            perm = _torch_perm(entry.role if entry else None, users.get(value), stored.rank)
            dtype, aliases = stored.dtype, ()
        name = _unique(name, taken)
        shape = stored.shape if perm is None else tuple(stored.shape[i] for i in np.argsort(perm))
        plan.append(TorchTensor(value, name, perm, tuple(shape), dtype, var.collection != "params", aliases))
    return plan


def _entry(conv: Converted, key: str) -> ParamEntry | None:
    try:
        return conv.param_map.by_key(key)
    except KeyError:
        return None


def _first_users(graph: Graph) -> dict[str, tuple[str, int]]:
    """For each variable, the op of the first node using it and the input position."""
    users: dict[str, tuple[str, int]] = {}
    for node in graph.nodes:
        for position, name in enumerate(node.inputs):
            if name in graph.variables:
                users.setdefault(name, (node.op, position))
    return users


def _derived_name(path: tuple[str, ...], entry: ParamEntry | None) -> str:
    """``dense_1/kernel`` → ``dense_1.weight``: the source path, torch leaf names."""
    parts = list(entry.source_name.replace("/", ".").split(".")) if entry else list(path)
    role = entry.role if entry else None
    if role in _TORCH_LEAF:
        parts[-1] = _TORCH_LEAF[role]
    return ".".join(re.sub(r"[^0-9A-Za-z_]", "_", p) or "_" for p in parts)


def _torch_perm(role: str | None, user: tuple[str, int] | None, rank: int) -> tuple[int, ...] | None:
    """The permutation from torch's layout of a kernel to its Flax layout (None: the same)."""
    if role != "kernel" or user is None or rank < 2:
        return None
    op, _ = user
    if op == "dense" and rank == 2:
        return (1, 0)  # torch (out, in) -> Flax (in, out)
    if op == "conv":
        return (*range(2, rank), 1, 0)  # (out, in/g, *k) -> (*k, in/g, out)
    if op == "conv_transpose":
        return (*range(2, rank), 0, 1)  # (in, out/g, *k) -> (*k, in, out/g)
    return None


def _unique(name: str, taken: set[str]) -> str:
    candidate, i = name, 1
    while candidate in taken:
        i += 1
        candidate = f"{name}_{i}"
    taken.add(candidate)
    return candidate


def state_dict_arrays(conv: Converted) -> dict[str, np.ndarray]:
    """State-dict names to NumPy arrays in torch layouts and dtypes (tied names share one array)."""
    from unigraph.interpreter import lookup_variable

    out: dict[str, np.ndarray] = {}
    for t in torch_tensors(conv):
        var = conv.graph.variables[t.value]
        array = t.from_flax(lookup_variable(conv.variables, var.collection, var.path))
        for name in (t.name, *t.aliases):
            out[name] = array
    return out
