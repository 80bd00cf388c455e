"""Orbax backend: the Flax variables of a converted model as an Orbax checkpoint.

The checkpoint is ``orbax.checkpoint``'s standard format (a PyTree of arrays,
``{"params": …, "batch_stats": …}`` nested by module path), so JAX code
restores it without unigraph::

    import orbax.checkpoint as ocp
    variables = ocp.StandardCheckpointer().restore(path)        # NumPy leaves
    variables = ocp.StandardCheckpointer().restore(path, like)  # leaves as in `like`

Written atomically (a complete checkpoint directory or nothing).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from unigraph.converted import Converted
from unigraph.errors import CheckpointError, first_line
from unigraph.io import sniff
from unigraph.io.atomic import atomic_directory


def save(converted: Converted, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Writes the variables of ``converted`` to ``path`` (atomically)."""
    with atomic_directory(path, overwrite=overwrite) as staging:
        write(converted.variables, staging)
    return Path(path)


def write(variables: Mapping, directory: str | os.PathLike) -> None:
    """Writes the checkpoint into ``directory`` (empty or absent), synchronously; no staging."""
    import orbax.checkpoint as ocp

    leaves = _numpy(variables)
    checkpointer = ocp.StandardCheckpointer()
    try:
        checkpointer.save(Path(directory).absolute(), leaves, force=True)
        checkpointer.wait_until_finished()
    finally:
        checkpointer.close()


def restore(path: str | os.PathLike, like: Mapping) -> dict:
    """The variables saved at ``path``, checked against ``like``'s structure, shapes and dtypes."""
    import jax
    import orbax.checkpoint as ocp

    path = Path(path).absolute()
    if not sniff.is_orbax(path):
        raise CheckpointError(f"{path} is not an Orbax checkpoint (it has no _CHECKPOINT_METADATA or _METADATA)")
    target = jax.tree.map(lambda x: ocp.utils.to_shape_dtype_struct(np.asarray(x)), dict(like))
    checkpointer = ocp.StandardCheckpointer()
    try:
        return checkpointer.restore(path, target)
    except (ValueError, KeyError) as e:
        raise CheckpointError(f"{path}: does not restore into these variables ({first_line(e)})") from None
    finally:
        checkpointer.close()


def _numpy(tree):
    if isinstance(tree, Mapping):
        return {k: _numpy(v) for k, v in tree.items()}
    return np.asarray(tree)
