"""Which torch tensor each variable becomes: its state-dict name, torch layout and kind.

Everything here is NumPy: the command line writes state dicts (``--to
torch``, and ``unigraph translate`` streaming checkpoints) with these same
functions and no torch; ``backends/torch.py`` makes torch tensors of them.

A torch-origin conversion gives back its own state dict: the names, layouts
and dtypes the ParamMap recorded, tied names included. Any other origin gets
torch's conventions: names from the source path (``dense_1/kernel`` →
``dense_1.weight``), Linear weights ``(out, in)``, convolution weights
``(out, in/groups, *k)``, norm scales ``weight``, batch statistics
``running_mean``/``running_var``.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from unigraph.converted import Converted
from unigraph.dtypes import jax_dtype, numpy_dtype
from unigraph.io import safetensors_file
from unigraph.io.atomic import atomic_file
from unigraph.io.safetensors_file import TensorSpec, contiguous
from unigraph.ir import Graph
from unigraph.names import unique_name
from unigraph.params import ParamEntry, flatten_variables

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
    key: str  # the variable (``params/fc/kernel``)
    name: str  # state-dict name
    perm: tuple[int, ...] | None
    shape: tuple[int, ...]  # torch shape
    dtype: str  # torch-side dtype name (the source dtype)
    buffer: bool  # batch_stats are buffers, params are parameters
    aliases: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        """The state-dict name and its tied aliases."""
        return (self.name, *self.aliases)

    def layout(self, shape: tuple[int, ...], dtype: np.dtype) -> tuple[tuple[int, ...], np.dtype]:
        """The torch shape and dtype of a Flax leaf of ``shape`` and ``dtype``.

        JAX holds 64-bit source tensors as 32-bit ones (x64 off): those get the
        source's dtype back. A leaf of any other dtype keeps its own (the
        bfloat16 weights of a checkpoint of a float32 architecture).
        """
        source = numpy_dtype(self.dtype)
        dtype = source if jax_dtype(self.dtype) == np.dtype(dtype) else np.dtype(dtype)
        return (tuple(shape) if self.perm is None else tuple(shape[i] for i in np.argsort(self.perm))), dtype

    def from_flax(self, leaf) -> np.ndarray:
        """The torch-layout array for a Flax leaf (exact; a transposed view where it can be)."""
        array = np.asarray(leaf)
        _, dtype = self.layout(array.shape, array.dtype)
        if self.perm is not None:
            array = np.transpose(array, np.argsort(self.perm))
        return array.astype(dtype, copy=False)

    def to_flax(self, array) -> np.ndarray:
        """The Flax leaf for this tensor's torch-layout array (the inverse of ``from_flax``, dtypes aside)."""
        array = np.asarray(array)
        return array if self.perm is None else np.transpose(array, self.perm)


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
        name = unique_name(name, taken)
        taken.add(name)
        shape = stored.shape if perm is None else tuple(stored.shape[i] for i in np.argsort(perm))
        plan.append(TorchTensor(value, var.key, name, perm, tuple(shape), dtype, var.collection != "params", aliases))
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


def state_dict_arrays(conv: Converted) -> dict[str, np.ndarray]:
    """State-dict names to NumPy arrays in torch layouts and dtypes (tied names share one array)."""
    flat = flatten_variables(conv.variables)
    out: dict[str, np.ndarray] = {}
    for t in torch_tensors(conv):
        array = contiguous(t.from_flax(flat[t.key]))
        for name in t.names:
            out[name] = array
    return out


def write_state_dict(
    file, plan: Sequence[TorchTensor], leaves: Mapping[str, TensorSpec], get: Callable[[str], np.ndarray]
) -> tuple[str, int]:
    """Writes the state dict of ``plan`` to ``file`` as safetensors, one tensor in memory at a time.

    ``leaves`` are the Flax leaves' specs by variable key and ``get(key)``
    gives one: a converted model's variables, or a checkpoint's translated
    through a ParamMap (``unigraph translate``). Tied names are each stored.
    Returns the sha256 of the bytes written and their count.
    """
    specs, by_name = [], {}
    for t in plan:
        shape, dtype = t.layout(leaves[t.key].shape, leaves[t.key].dtype)
        for name in t.names:
            specs.append(TensorSpec(name, dtype, shape))
            by_name[name] = t
    return safetensors_file.write(file, specs, lambda name: by_name[name].from_flax(get(by_name[name].key)), {"format": "pt"})


def save_state_dict(conv: Converted, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Writes ``conv``'s state dict (``to_state_dict``'s names, layouts and dtypes) as safetensors, atomically."""
    flat = flatten_variables(conv.variables)
    leaves = {key: TensorSpec(key, np.dtype(v.dtype), tuple(v.shape)) for key, v in flat.items()}
    with atomic_file(path, overwrite=overwrite) as staging, open(staging, "wb") as f:
        write_state_dict(f, torch_tensors(conv), leaves, lambda key: np.asarray(flat[key]))
    return Path(path)
