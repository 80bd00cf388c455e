"""The ``.ug`` bundle: a converted model in one safetensors file, loadable with only JAX.

The tensors are the variables (``variables/params/conv1/kernel``) and the
graph's constants (``constants/<name>``); the safetensors header metadata
holds the graph JSON, the ParamMap and the conversion metadata. Any
safetensors reader can list and load the weights; ``unigraph.load`` needs
neither torch nor tensorflow. Nothing in a bundle is executable: loading it
never unpickles.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from unigraph.converted import Converted
from unigraph.errors import CheckpointError, GraphError
from unigraph.ir import Graph
from unigraph.output import atomic_file
from unigraph.params import ParamMap, flatten_variables

FORMAT = "unigraph.bundle"
VERSION = 1

#: Dtypes safetensors' NumPy API cannot hold, stored as same-width unsigned integers.
_VIEWED = {"bfloat16": np.uint16, "float8_e4m3fn": np.uint8, "float8_e5m2": np.uint8}


def save(conv: Converted, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Writes ``conv`` to ``path`` (atomically: a complete bundle or nothing)."""
    from safetensors.numpy import save_file

    constants: dict[str, np.ndarray] = {}
    graph = conv.graph.to_json(constant_store=constants)
    tensors = {f"variables/{k}": np.asarray(v) for k, v in flatten_variables(conv.variables).items()}
    tensors.update({f"constants/{k}": np.asarray(v) for k, v in constants.items()})
    viewed = {}
    for name, array in tensors.items():
        if array.dtype.name in _VIEWED:
            viewed[name] = array.dtype.name
            tensors[name] = np.asarray(array, order="C").view(_VIEWED[array.dtype.name])
        else:
            tensors[name] = np.asarray(array, order="C")
    metadata = {
        "format": FORMAT,
        "version": str(VERSION),
        "graph": json.dumps(graph, allow_nan=False),
        "param_map": json.dumps(conv.param_map.to_json()),
        "metadata": json.dumps(conv.metadata, default=str),
        "viewed_dtypes": json.dumps(viewed),
    }
    with atomic_file(path, overwrite=overwrite) as staging:
        save_file(tensors, str(staging), metadata=metadata)
    return Path(path)


def load(path: str | os.PathLike) -> Converted:
    """The ``Converted`` saved at ``path``; ``CheckpointError`` names what is wrong with the file."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        with safe_open(str(path), framework="numpy") as f:
            metadata = f.metadata() or {}
            if metadata.get("format") != FORMAT:
                raise CheckpointError(f"{path}: a safetensors file, but not a unigraph bundle")
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except CheckpointError:
        raise
    except Exception as e:  # safetensors reports truncation and corruption with its own types
        raise CheckpointError(f"{path}: not a readable unigraph bundle ({e})") from e
    if int(metadata.get("version", 0)) > VERSION:
        raise CheckpointError(f"{path}: bundle version {metadata['version']} is newer than this unigraph reads")
    for name, dtype in json.loads(metadata["viewed_dtypes"]).items():
        from unigraph.dtypes import numpy_dtype

        tensors[name] = tensors[name].view(numpy_dtype(dtype))
    constants = {k.removeprefix("constants/"): v for k, v in tensors.items() if k.startswith("constants/")}
    try:
        graph = Graph.from_json(json.loads(metadata["graph"]), constants)
    except (GraphError, KeyError, ValueError) as e:
        raise CheckpointError(f"{path}: the graph in the bundle is invalid ({e})") from e
    variables: dict = {}
    for key, array in tensors.items():
        if key.startswith("variables/"):
            *parents, leaf = key.removeprefix("variables/").split("/")
            node = variables
            for p in parents:
                node = node.setdefault(p, {})
            node[leaf] = array
    return Converted(
        graph,
        variables,
        ParamMap.from_json(json.loads(metadata["param_map"])),
        json.loads(metadata["metadata"]),
    )
