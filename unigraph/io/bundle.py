"""The ``.ug`` bundle: a converted model in one safetensors file, loadable with only JAX.

The tensors are the variables (``variables/params/conv1/kernel``) and the
graph's constants (``constants/<name>``); the safetensors header metadata
holds the graph JSON, the ParamMap and the conversion metadata. Every tensor
keeps its dtype, bfloat16 and float8 included (``BF16``, ``F8_E4M3``), so any
safetensors reader can list and load the weights; ``unigraph.load`` needs
neither torch nor tensorflow. Loading typechecks the graph
(``Graph.typecheck``): a bundle whose recorded types its ops do not give is
refused. Nothing in a bundle is executable: loading it never unpickles.

Version 1 bundles stored bfloat16 and float8 tensors as same-width unsigned
integers, naming their dtypes in the ``viewed_dtypes`` metadata; they still load.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from unigraph.io import safetensors_file, sniff
from unigraph.converted import Converted
from unigraph.dtypes import numpy_dtype
from unigraph.errors import CheckpointError, GraphError
from unigraph.ir import Graph
from unigraph.io.atomic import atomic_file
from unigraph.params import ParamMap, flatten_variables, nest_variables
from unigraph.io.safetensors_file import TensorSpec

FORMAT = "unigraph.bundle"
VERSION = 2  # 2: bfloat16 and float8 stored as such (version 1 readers cannot read them)


def save(conv: Converted, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Writes ``conv`` to ``path`` (atomically: a complete bundle or nothing)."""
    leaves = {k: np.asarray(v) for k, v in flatten_variables(conv.variables).items()}
    blueprint = BundleBlueprint.of(conv)
    specs = [TensorSpec(k, a.dtype, a.shape) for k, a in leaves.items()]
    with atomic_file(path, overwrite=overwrite) as staging, open(staging, "wb") as f:
        blueprint.write(f, specs, leaves.__getitem__)
    return Path(path)


class BundleBlueprint:
    """Everything in a bundle but the variables: graph JSON, constants, ParamMap, metadata.

    ``write`` streams the variables in one at a time, so a batch of
    checkpoints of one architecture becomes bundles without holding more
    than one tensor (``unigraph translate --to ug``).
    """

    def __init__(self, graph_json: str, constants: dict[str, np.ndarray], param_map_json: str, metadata_json: str):
        self.graph_json, self.constants = graph_json, constants
        self.param_map_json, self.metadata_json = param_map_json, metadata_json

    @classmethod
    def of(cls, conv: Converted) -> BundleBlueprint:
        constants: dict[str, np.ndarray] = {}
        graph = conv.graph.to_json(constant_store=constants)
        return cls(
            json.dumps(graph, allow_nan=False),
            {k: np.asarray(v) for k, v in constants.items()},
            json.dumps(conv.param_map.to_json()),
            json.dumps(conv.metadata, default=str),
        )

    def write(self, file, variables: list[TensorSpec], produce) -> tuple[str, int]:
        """Writes the bundle to ``file``; ``produce(key)`` gives the variable ``key`` (``params/fc/kernel``).

        Returns the sha256 of the bytes written and their count.
        """
        specs = [TensorSpec(f"variables/{s.name}", s.dtype, s.shape) for s in variables]
        specs += [TensorSpec(f"constants/{k}", a.dtype, a.shape) for k, a in self.constants.items()]

        def array(name: str) -> np.ndarray:
            if name.startswith("constants/"):
                return self.constants[name.removeprefix("constants/")]
            return np.asarray(produce(name.removeprefix("variables/")))

        metadata = {
            "format": FORMAT,
            "version": str(VERSION),
            "graph": self.graph_json,
            "param_map": self.param_map_json,
            "metadata": self.metadata_json,
        }
        return safetensors_file.write(file, specs, array, metadata)


def is_bundle(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a safetensors file whose metadata says it is a unigraph bundle."""
    if not sniff.is_safetensors(path):
        return False
    try:
        with safetensors_file.SafetensorsFile(path) as f:
            return f.metadata.get("format") == FORMAT
    except CheckpointError:
        return False


def load(path: str | os.PathLike) -> Converted:
    """The ``Converted`` saved at ``path``; ``CheckpointError`` names what is wrong with the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        with safetensors_file.SafetensorsFile(path) as f:
            metadata = f.metadata
            is_bundle = metadata.get("format") == FORMAT
            tensors = {name: f.read(name) for name in f.names()} if is_bundle else {}
    except CheckpointError as e:  # truncated or corrupt, in the reader's words
        raise CheckpointError(f"{path}: not a readable unigraph bundle ({str(e).removeprefix(f'{path}: ')})") from None
    if not is_bundle:
        raise CheckpointError(f"{path}: a safetensors file, but not a unigraph bundle")
    if int(metadata.get("version", 0)) > VERSION:
        raise CheckpointError(f"{path}: bundle version {metadata['version']} is newer than this unigraph reads")
    for name, dtype in json.loads(metadata.get("viewed_dtypes", "{}")).items():  # version 1
        if name not in tensors:
            raise CheckpointError(f"{path}: corrupt bundle (its metadata names a tensor {name!r} it does not hold)")
        tensors[name] = tensors[name].view(numpy_dtype(dtype))
    constants = {k.removeprefix("constants/"): v for k, v in tensors.items() if k.startswith("constants/")}
    try:
        graph = Graph.from_json(json.loads(metadata["graph"]), constants)
    except (GraphError, KeyError, ValueError) as e:
        raise CheckpointError(f"{path}: the graph in the bundle is invalid ({e})") from e
    try:
        graph.typecheck()
    except GraphError as e:
        raise CheckpointError(f"{path}: the graph in the bundle does not typecheck: {e}") from e
    variables = nest_variables({k.removeprefix("variables/"): v for k, v in tensors.items() if k.startswith("variables/")})
    return Converted(
        graph,
        variables,
        ParamMap.from_json(json.loads(metadata["param_map"])),
        json.loads(metadata["metadata"]),
    )
