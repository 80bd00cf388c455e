"""Flax variables as one safetensors file, ``/``-joined paths: the ``safetensors`` output format.

``{"params": {"fc": {"kernel": …}}}`` is stored as the tensor
``params/fc/kernel``, so JAX code reads it without unigraph::

    from flax import traverse_util
    from safetensors.flax import load_file
    variables = traverse_util.unflatten_dict(load_file(path), sep="/")

Written tensor by tensor (``write``), the same way for a converted model's
variables and for a checkpoint streamed through a ParamMap.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from unigraph.io import safetensors_file
from unigraph.io.atomic import atomic_file
from unigraph.io.safetensors_file import TensorSpec
from unigraph.params import flatten_variables, nest_variables

METADATA = {"format": "flax"}


def write(file, specs: Sequence[TensorSpec], produce: Callable[[str], np.ndarray]) -> tuple[str, int]:
    """Writes the leaves ``specs`` names (``params/fc/kernel``) to ``file``; returns the sha256 and size."""
    return safetensors_file.write(file, specs, produce, METADATA)


def save(variables: Mapping, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Writes ``variables`` to ``path`` atomically."""
    flat = {key: np.asarray(value) for key, value in flatten_variables(variables).items()}
    specs = [TensorSpec(key, a.dtype, a.shape) for key, a in flat.items()]
    with atomic_file(path, overwrite=overwrite) as staging, open(staging, "wb") as f:
        write(f, specs, flat.__getitem__)
    return Path(path)


def load(path: str | os.PathLike) -> dict:
    """The variables in the file at ``path``, nested (NumPy leaves)."""
    with safetensors_file.SafetensorsFile(path) as f:
        return nest_variables({name: f.read(name) for name in f.names()})
