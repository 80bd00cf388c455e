"""Target formats of ``unigraph convert`` and ``unigraph translate``: writing them, and reading them back.

A target is written from a ``Blueprint`` (everything a format needs besides
the weights: graph, ParamMap, torch names; computed once per architecture and
sent to worker processes) and ``Leaves`` (the weights as Flax variable leaves,
one at a time: a ``Converted``'s own, or a checkpoint's mapped through the
ParamMap). The safetensors-based formats stream: one tensor in memory at a
time.

- ``savedmodel``: a TF SavedModel directory (``Converted.to_savedmodel``);
- ``torch``: the state dict in torch names and layouts, as safetensors;
- ``safetensors``: the Flax variables with ``/``-joined paths
  (``params/fc/kernel``), as JAX users load them without unigraph;
- ``orbax``: an Orbax checkpoint of the variables;
- ``ug``: unigraph's bundle (``unigraph.load``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from unigraph import safetensors_file
from unigraph.converted import Converted
from unigraph.errors import CheckpointError, OutputExistsError
from unigraph.io import BundleBlueprint
from unigraph.output import commit, discard, refuse_existing, staging_path
from unigraph.params import ParamMap, flatten_variables
from unigraph.safetensors_file import TensorSpec


@dataclasses.dataclass(frozen=True)
class Format:
    name: str
    suffix: str  # of translate's outputs: run3.safetensors -> OUT_DIR/run3<suffix>
    directory: bool
    keeps_graph: bool  # the graph's dtypes must match the weights'


FORMATS = {
    f.name: f
    for f in (
        Format("savedmodel", ".savedmodel", True, True),
        Format("torch", ".safetensors", False, False),
        Format("safetensors", ".safetensors", False, False),
        Format("orbax", ".orbax", True, False),
        Format("ug", ".ug", False, True),
    )
}

#: JAX computes 64-bit types as 32-bit ones (x64 off): a Converted's leaves of these are the source's.
_JAX_WIDTH = {"int64": "int32", "uint64": "uint32", "float64": "float32", "complex128": "complex64"}


# ---- what a target needs -------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TorchName:
    """One torch tensor of the state dict: ``torch = transpose(flax leaf, inverse(perm))``."""

    names: tuple[str, ...]  # state-dict name and tied aliases
    key: str  # the variable it is
    perm: tuple[int, ...] | None
    dtype: str


class Blueprint:
    """Everything a target needs besides the weights (picklable; built once per architecture)."""

    def __init__(self, conv: Converted):
        from unigraph.backends.torch_params import torch_tensors

        self.param_map: ParamMap = conv.param_map
        # plain str: a str subclass (torch.__version__) would import torch in every worker that unpickles it
        self.metadata = {k: str(v) if isinstance(v, str) else v for k, v in conv.metadata.items()}
        self.bundle = BundleBlueprint.of(conv)
        self.variable_types = {
            var.key: (t.dtype, tuple(t.shape)) for var, t in conv.graph.variable_types()
        }
        self.torch = [
            TorchName((t.name, *t.aliases), conv.graph.variables[t.value].key, t.perm, t.dtype)
            for t in torch_tensors(conv)
        ]
        self._graph = conv.graph

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_graph"}

    def __setstate__(self, state):
        self.__dict__.update(state, _graph=None)

    @property
    def graph(self):
        if self._graph is None:
            import json

            from unigraph.ir import Graph

            self._graph = Graph.from_json(json.loads(self.bundle.graph_json), self.bundle.constants)
        return self._graph

    def converted(self, variables: Mapping) -> Converted:
        return Converted(self.graph, variables, self.param_map, self.metadata)

    def fingerprint(self, fmt: str) -> str:
        """Identifies what ``fmt`` outputs of this architecture depend on (for translate's manifest)."""
        digest = hashlib.sha256(f"{fmt}\n{self.bundle.param_map_json}".encode())
        if FORMATS[fmt].keeps_graph or fmt == "torch":
            digest.update(self.bundle.graph_json.encode())
        return digest.hexdigest()


class Leaves:
    """The weights as Flax variable leaves by key (``params/fc/kernel``), one at a time."""

    def specs(self) -> list[TensorSpec]:
        raise NotImplementedError

    def get(self, key: str) -> np.ndarray:
        raise NotImplementedError

    def nested(self) -> dict:
        """All the leaves, materialized, nested as Flax variables."""
        return _nest({s.name: np.asarray(self.get(s.name), order="C") for s in self.specs()})


class ConvertedLeaves(Leaves):
    def __init__(self, conv: Converted):
        self.conv = conv
        self._flat = flatten_variables(conv.variables)

    def specs(self) -> list[TensorSpec]:
        return [TensorSpec(k, np.dtype(v.dtype), tuple(v.shape)) for k, v in self._flat.items()]

    def get(self, key: str) -> np.ndarray:
        return np.asarray(self._flat[key])

    def nested(self) -> dict:
        return self.conv.variables


class CheckpointLeaves(Leaves):
    """A checkpoint's tensors as the variables of an architecture: checked up front, read one at a time.

    Names and shapes are checked against the ParamMap from the checkpoint's
    header before anything is read (``ParamMap.resolve``); with ``graph_dtypes``
    the dtypes must be those the architecture was traced with too.
    """

    def __init__(self, blueprint: Blueprint, checkpoint, *, graph_dtypes: bool = False):
        self.checkpoint = checkpoint
        where = str(checkpoint.path)
        self._stored = blueprint.param_map.resolve(checkpoint.shapes(), where)
        self._entries = {e.key: e for e in blueprint.param_map}
        unmapped = sorted(set(blueprint.variable_types) - set(self._entries))
        if unmapped:
            raise CheckpointError(f"variable(s) {unmapped[:3]} of the architecture have no source tensor; its checkpoints cannot be translated")
        self._specs = []
        for key, e in self._entries.items():
            dtype = checkpoint.spec(self._stored[key]).dtype
            want = blueprint.variable_types[key][0]
            if graph_dtypes and _jax_width(dtype.name) != _jax_width(want):
                raise CheckpointError(
                    f"{where}: tensor {self._stored[key]!r} is {dtype.name}, the architecture was traced in "
                    f"{want}: trace it in the checkpoints' dtype, or write safetensors, torch or orbax "
                    "(which keep each tensor's dtype)"
                )
            self._specs.append(TensorSpec(key, dtype, e.shape))

    def specs(self) -> list[TensorSpec]:
        return list(self._specs)

    def get(self, key: str) -> np.ndarray:
        e = self._entries[key]
        return e.to_flax(self.checkpoint.read(self._stored[key]), str(self.checkpoint.path))


def _jax_width(dtype: str) -> str:
    return _JAX_WIDTH.get(dtype, dtype)


# ---- writing -----------------------------------------------------------------------------------------------------


def write(fmt: str, blueprint: Blueprint, leaves: Leaves, path: str | os.PathLike, *, overwrite: bool = False, **options) -> Path:
    """Writes ``fmt`` at ``path`` atomically: staged beside it, renamed into place when complete."""
    refuse_existing(path, overwrite=overwrite)
    staging = staging_path(path)
    try:
        stage(fmt, blueprint, leaves, staging, **options)
        refuse_existing(path, overwrite=overwrite)
        commit(staging, path)
    except OSError as e:
        if e.filename is not None or isinstance(e, OutputExistsError):
            raise
        # a failed write of the staged copy (a full disk): name the output, not its hidden staging path
        raise OSError(e.errno, f"writing failed, nothing was written: {e.strerror or e}", os.fspath(path)) from e
    finally:
        discard(staging)
    return Path(path)


def stage(fmt: str, blueprint: Blueprint, leaves: Leaves, staging: Path, **options) -> tuple[str, int]:
    """Writes ``fmt`` at the fresh path ``staging``; returns the output's sha256 and size in bytes."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; formats are {', '.join(FORMATS)}")
    writer = _WRITERS[fmt]
    if FORMATS[fmt].directory:
        writer(blueprint, leaves, staging, **options)
        return tree_sha256(staging)
    with open(staging, "wb") as f:
        return writer(blueprint, leaves, f, **options)


def _write_safetensors(blueprint: Blueprint, leaves: Leaves, f) -> tuple[str, int]:
    return safetensors_file.write(f, leaves.specs(), leaves.get, {"format": "flax"})


def _write_torch(blueprint: Blueprint, leaves: Leaves, f) -> tuple[str, int]:
    leaf_specs = {s.name: s for s in leaves.specs()}
    specs, plan = [], {}
    for t in blueprint.torch:
        leaf = leaf_specs[t.key]
        # a Converted holds int64 as int32 (JAX without x64): give torch the source's dtype back;
        # a checkpoint's own dtype (bfloat16 weights of a float32 trace) is kept
        dtype = np.dtype(t.dtype) if _jax_width(t.dtype) == leaf.dtype.name else leaf.dtype
        shape = leaf.shape if t.perm is None else tuple(leaf.shape[i] for i in np.argsort(t.perm))
        for name in t.names:
            specs.append(TensorSpec(name, dtype, shape))
            plan[name] = (t, dtype)

    def produce(name: str) -> np.ndarray:
        t, dtype = plan[name]
        array = leaves.get(t.key)
        if t.perm is not None:
            array = np.transpose(array, np.argsort(t.perm))
        return array.astype(dtype, copy=False)

    return safetensors_file.write(f, specs, produce, {"format": "pt"})


def _write_ug(blueprint: Blueprint, leaves: Leaves, f) -> tuple[str, int]:
    return blueprint.bundle.write(f, leaves.specs(), leaves.get)


def _write_orbax(blueprint: Blueprint, leaves: Leaves, directory: Path) -> None:
    from unigraph.backends.orbax import write

    write(leaves.nested(), directory)


def _write_savedmodel(blueprint: Blueprint, leaves: Leaves, directory: Path, platforms=None) -> None:
    from unigraph.backends.savedmodel import save

    conv = leaves.conv if isinstance(leaves, ConvertedLeaves) else blueprint.converted(leaves.nested())
    save(conv, directory, platforms=platforms)


_WRITERS = {
    "safetensors": _write_safetensors,
    "torch": _write_torch,
    "ug": _write_ug,
    "orbax": _write_orbax,
    "savedmodel": _write_savedmodel,
}


def tree_sha256(directory: Path) -> tuple[str, int]:
    """A digest of a directory's files (relative paths and contents), and their total size."""
    digest, total = hashlib.sha256(), 0
    for path in sorted(p for p in Path(directory).rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(directory).as_posix()}\0{safetensors_file.file_sha256(path)}\n".encode())
        total += path.stat().st_size
    return digest.hexdigest(), total


# ---- reading back ----------------------------------------------------------------------------------------------


def detect_output(path: str | os.PathLike) -> str:
    """The format of a written output (for ``unigraph check``)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or directory")
    if path.is_dir():
        if (path / "saved_model.pb").is_file():
            return "savedmodel"
        if (path / "_CHECKPOINT_METADATA").is_file() or (path / "_METADATA").is_file():
            return "orbax"
        raise CheckpointError(f"{path}: neither a SavedModel nor an Orbax checkpoint")
    from unigraph.io import FORMAT

    if path.suffix.lower() not in (".ug", ".safetensors") and not _looks_like_safetensors(path):
        raise CheckpointError(
            f"{path}: not an output of 'unigraph convert' (a SavedModel or Orbax directory, a .ug bundle "
            "or a safetensors file)"
        )
    with safetensors_file.SafetensorsFile(path) as f:
        if f.metadata.get("format") == FORMAT:
            return "ug"
        names = f.names()
    if names and all(n.startswith(("params/", "batch_stats/")) or "/" in n for n in names):
        return "safetensors"
    return "torch"


def _looks_like_safetensors(path: Path) -> bool:
    """An 8-byte header length then a JSON object: what every safetensors file starts with."""
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{"


def reload(fmt: str, conv: Converted, path: str | os.PathLike):
    """What the checker runs for an output written from ``conv``: the output itself where it runs
    (a SavedModel, a bundle, the state dict in the generated torch module), else the graph with its weights."""
    path = Path(path)
    if fmt == "savedmodel":
        return path
    if fmt == "ug":
        from unigraph.io import load

        return load(path)
    if fmt == "torch":
        from unigraph.backends.torch import to_module

        module = to_module(conv)
        state = read_torch(path)
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise CheckpointError(f"{path}: does not load into the model's torch module ({str(e).strip().splitlines()[0]})") from None
        return module
    return Converted(conv.graph, variables(fmt, conv, path), conv.param_map, conv.metadata)


def variables(fmt: str, conv: Converted, path: str | os.PathLike) -> dict:
    """The Flax variables an output holds, shaped like ``conv.variables`` (for node-by-node checks)."""
    path = Path(path)
    if fmt in ("safetensors", "torch"):
        with safetensors_file.SafetensorsFile(path) as f:
            flat = {name: f.read(name) for name in f.names()}
        if fmt == "safetensors":
            return _nest(flat)
        return _nest({t.key: _to_flax(flat[t.names[0]], t.perm) for t in Blueprint(conv).torch})
    if fmt == "orbax":
        from unigraph.backends.orbax import restore

        return restore(path, like=conv.variables)
    if fmt == "ug":
        from unigraph.io import load

        return load(path).variables
    if fmt == "savedmodel":
        from unigraph.backends.savedmodel import load

        model = load(path)
        return _nest({v.name.removesuffix(":0"): v.numpy() for v in model.variables})
    raise ValueError(f"unknown format {fmt!r}")


def read_torch(path: Path) -> dict:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as e:  # safetensors raises its own error types for damaged files
        raise CheckpointError(f"{path}: not a readable safetensors file ({str(e).strip().splitlines()[0]})") from None


def _to_flax(array: np.ndarray, perm) -> np.ndarray:
    return array if perm is None else np.transpose(array, perm)


def _nest(flat: Mapping[str, np.ndarray]) -> dict:
    out: dict = {}
    for key, value in flat.items():
        *parents, leaf = key.split("/")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out
