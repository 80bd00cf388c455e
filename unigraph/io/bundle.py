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
from unigraph.dtypes import dtype_name, numpy_dtype, same_in_jax
from unigraph.errors import CheckpointError, GraphError, first_line
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
    """The ``Converted`` saved at ``path``; ``CheckpointError`` names what is wrong with the file.

    Everything in the file is checked before it is used: the metadata's JSON,
    the graph's structure and types, and that each variable the graph uses
    is in the file with the dtype and shape the graph gives it.
    """
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
    version = metadata.get("version", "0")
    if not (version.isascii() and version.isdigit()):
        raise CheckpointError(f"{path}: corrupt bundle (its version {version!r} is not a number)")
    if int(version) > VERSION:
        raise CheckpointError(f"{path}: bundle version {version} is newer than this unigraph reads")
    _view_dtypes(path, tensors, _metadata_json(path, metadata, "viewed_dtypes", dict, default="{}"))  # version 1
    constants = {k.removeprefix("constants/"): v for k, v in tensors.items() if k.startswith("constants/")}
    try:
        graph = Graph.from_json(_metadata_json(path, metadata, "graph", dict), constants)
    except (GraphError, RecursionError) as e:  # RecursionError: nested deeper than any graph
        raise CheckpointError(f"{path}: the graph in the bundle is invalid ({first_line(e)})") from None
    try:
        graph.typecheck()
    except GraphError as e:
        raise CheckpointError(f"{path}: the graph in the bundle does not typecheck: {e}") from e
    variables = {k.removeprefix("variables/"): v for k, v in tensors.items() if k.startswith("variables/")}
    _check_variables(path, graph, variables)
    try:
        param_map = ParamMap.from_json(_metadata_json(path, metadata, "param_map", list))
    except (KeyError, TypeError, ValueError) as e:  # ParamMap.from_json takes its JSON on trust
        raise CheckpointError(f"{path}: corrupt bundle (its parameter map is malformed: {first_line(e)})") from None
    return Converted(graph, nest_variables(variables), param_map, _metadata_json(path, metadata, "metadata", dict))


def _metadata_json(path: Path, metadata: dict[str, str], key: str, kind: type, default: str | None = None):
    """A metadata value's JSON, checked to be a ``kind``."""
    text = metadata.get(key, default)
    if text is None:
        raise CheckpointError(f"{path}: corrupt bundle (its metadata has no {key!r})")
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        value = None
    if not isinstance(value, kind):
        raise CheckpointError(f"{path}: corrupt bundle (its metadata's {key!r} is not a JSON {kind.__name__})")
    return value


def _view_dtypes(path: Path, tensors: dict[str, np.ndarray], viewed: dict) -> None:
    """Version 1 bundles: bfloat16 and float8 tensors stored as unsigned integers of their width."""
    for name, dtype in viewed.items():
        if name not in tensors:
            raise CheckpointError(f"{path}: corrupt bundle (its metadata names a tensor {name!r} it does not hold)")
        try:
            tensors[name] = tensors[name].view(numpy_dtype(dtype))
        except (TypeError, ValueError):
            raise CheckpointError(f"{path}: corrupt bundle (tensor {name!r} cannot be viewed as {dtype!r})") from None


def _check_variables(path: Path, graph: Graph, variables: dict[str, np.ndarray]) -> None:
    """Every variable the graph uses is in the file, with the graph's shape and dtype (as JAX computes
    it: variables are saved as JAX holds them); no path is empty or a folder of other paths."""
    for name, var in graph.variables.items():
        array, t = variables.get(var.key), graph.types[name]
        if array is None:
            raise CheckpointError(f"{path}: corrupt bundle (the graph's variable {var.key!r} is not in the file)")
        if tuple(array.shape) != t.shape or not same_in_jax(dtype_name(array.dtype), t.dtype):  # int64 saved as JAX's int32
            raise CheckpointError(
                f"{path}: corrupt bundle (variable {var.key!r} is {array.dtype}{list(array.shape)}, the graph says {t})"
            )
    paths = [key.split("/") for key in variables]
    inner = {"/".join(parts[:i]) for parts in paths for i in range(1, len(parts))}
    for key, parts in zip(variables, paths):
        if not all(parts) or key in inner:
            raise CheckpointError(f"{path}: corrupt bundle (variable path {key!r} is empty or also a folder of others)")
