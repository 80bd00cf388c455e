"""Target formats of ``unigraph translate``: streaming a checkpoint into one; reading outputs back.

A converted model is written by its own methods (``Converted.write``, the
table ``unigraph.formats``). A batch of checkpoints of one architecture is
written by the same per-format code, fed differently: a ``Blueprint``
(everything a format needs besides the weights: graph, ParamMap, torch names;
computed once per architecture and sent to worker processes) and
``CheckpointLeaves`` (a checkpoint's tensors mapped through the ParamMap into
Flax variable leaves, one at a time). The safetensors-based formats stream:
one tensor in memory at a time.

Reading back (``reload``, ``variables``) serves ``--check`` and ``unigraph
check``: an output is run as it will be used.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from unigraph import formats
from unigraph.converted import Converted
from unigraph.dtypes import same_in_jax
from unigraph.errors import CheckpointError, first_line
from unigraph.io import safetensors_file, sniff
from unigraph.io import variables as variables_file
from unigraph.io.bundle import BundleBlueprint, is_bundle
from unigraph.io.safetensors_file import TensorSpec
from unigraph.io.source_file import import_source
from unigraph.params import ParamMap, nest_variables


# ---- what a target needs -------------------------------------------------------------------------------------


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
        self.torch = torch_tensors(conv)  # the state dict's names, layouts and dtypes
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
        if formats.get(fmt).graph or fmt == "torch":
            digest.update(self.bundle.graph_json.encode())
        return digest.hexdigest()


class CheckpointLeaves:
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
            if graph_dtypes and not same_in_jax(dtype.name, want):
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

    def nested(self) -> dict:
        """All the leaves, read, nested as Flax variables (for the formats that are not streamed)."""
        return nest_variables({s.name: np.asarray(self.get(s.name), order="C") for s in self._specs})


# ---- writing -----------------------------------------------------------------------------------------------------


def stage(fmt: str, blueprint: Blueprint, leaves: CheckpointLeaves, staging: Path, **options) -> tuple[str, int]:
    """Writes ``fmt`` at the fresh path ``staging``; returns the output's sha256 and size in bytes."""
    writer = _WRITERS.get(fmt)
    if writer is None:
        raise ValueError(f"{fmt!r} is not a format checkpoints translate into; those are {', '.join(_WRITERS)}")
    if formats.get(fmt).directory:
        writer(blueprint, leaves, staging, **options)
        return tree_sha256(staging)
    with open(staging, "wb") as f:
        return writer(blueprint, leaves, f, **options)


def _write_safetensors(blueprint: Blueprint, leaves: CheckpointLeaves, f) -> tuple[str, int]:
    return variables_file.write(f, leaves.specs(), leaves.get)


def _write_torch(blueprint: Blueprint, leaves: CheckpointLeaves, f) -> tuple[str, int]:
    from unigraph.backends.torch_params import write_state_dict

    return write_state_dict(f, blueprint.torch, {s.name: s for s in leaves.specs()}, leaves.get)


def _write_ug(blueprint: Blueprint, leaves: CheckpointLeaves, f) -> tuple[str, int]:
    return blueprint.bundle.write(f, leaves.specs(), leaves.get)


def _write_orbax(blueprint: Blueprint, leaves: CheckpointLeaves, directory: Path) -> None:
    from unigraph.backends.orbax import write

    write(leaves.nested(), directory)


def _write_savedmodel(blueprint: Blueprint, leaves: CheckpointLeaves, directory: Path, platforms=None) -> None:
    from unigraph.backends.savedmodel import save

    save(blueprint.converted(leaves.nested()), directory, platforms=platforms)


#: What each format holding weights is written with: the code its ``Converted`` method runs too.
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
        if sniff.is_savedmodel(path):
            return "savedmodel"
        if sniff.is_orbax(path):
            return "orbax"
        if sniff.is_keras_folder(path):
            return "keras"
        raise CheckpointError(f"{path}: not a SavedModel, an Orbax checkpoint or a Keras folder unigraph wrote")
    if sniff.is_tflite(path):
        return "tflite"
    if formats.from_suffix(path) == "torch_source":
        return "torch_source"
    if not sniff.is_safetensors(path):
        raise CheckpointError(
            f"{path}: not an output of 'unigraph convert' (a SavedModel, Orbax or Keras directory, a .ug bundle, "
            "a safetensors file, a torch source file or a .tflite file)"
        )
    if is_bundle(path):
        return "ug"
    with safetensors_file.SafetensorsFile(path) as f:
        names = f.names()
    if names and all("/" in n for n in names):
        return "safetensors"
    return "torch"


def reload(fmt: str, conv: Converted, path: str | os.PathLike):
    """What the checker runs for an output written from ``conv``: the output itself where it runs (a
    SavedModel, a bundle, the state dict in the generated torch module, the torch source file with the
    conversion's state dict, a Keras folder's ``.keras`` file, a ``.tflite`` file in the TFLite
    interpreter), else the graph with the output's weights."""
    path = Path(path)
    if fmt == "savedmodel":
        return path
    if fmt == "ug":
        from unigraph.io.bundle import load

        return load(path)
    if fmt == "keras":
        from unigraph.backends.keras import call_as_source
        from unigraph.backends.keras_files import load_folder

        return call_as_source(load_folder(path), conv)
    if fmt == "tflite":
        from unigraph.backends.tflite import call_as_source

        return call_as_source(path, conv)
    if fmt in ("torch", "torch_source"):
        from unigraph.backends.torch import to_module, to_state_dict

        module = to_module(conv) if fmt == "torch" else _source_module(path)
        state = _read_torch(path) if fmt == "torch" else to_state_dict(conv)
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise CheckpointError(f"{path}: does not load into the model's torch module ({first_line(e)})") from None
        return module.eval()
    return Converted(conv.graph, variables(fmt, conv, path), conv.param_map, conv.metadata)


def variables(fmt: str, conv: Converted, path: str | os.PathLike) -> dict:
    """The Flax variables an output holds, shaped like ``conv.variables`` (for node-by-node checks)."""
    path = Path(path)
    if fmt == "safetensors":
        return variables_file.load(path)
    if fmt == "torch":
        with safetensors_file.SafetensorsFile(path) as f:
            return nest_variables({t.key: t.to_flax(f.read(t.name)) for t in Blueprint(conv).torch})
    if fmt in ("torch_source", "keras", "tflite"):
        return conv.variables  # not read back into Flax variables: the check ran the output itself
    if fmt == "orbax":
        from unigraph.backends.orbax import restore

        return restore(path, like=conv.variables)
    if fmt == "ug":
        from unigraph.io.bundle import load

        return load(path).variables
    if fmt == "savedmodel":
        from unigraph.backends.savedmodel import load

        return nest_variables({v.name.removesuffix(":0"): v.numpy() for v in load(path).variables})
    raise ValueError(f"unknown format {fmt!r}")


def _read_torch(path: Path) -> dict:
    """A state dict saved as safetensors, as torch tensors (read with unigraph's reader: one set of errors)."""
    from unigraph.frontends.torch_tensors import from_numpy

    with safetensors_file.SafetensorsFile(path) as f:
        return {name: from_numpy(f.read(name)) for name in f.names()}


def _source_module(path: Path):
    """An instance of the ``Model`` class a torch source file defines (the file ``to_torch_source`` writes)."""
    what = "a torch source file"
    module = import_source(path, what=what)
    try:
        return module.Model()
    except Exception as e:  # the file's own code can raise anything
        raise CheckpointError(f"{path}: not {what} unigraph wrote ({type(e).__name__}: {first_line(e)})") from None
