"""PyTorch backend: a state dict, a runnable ``nn.Module``, or its standalone source file.

- ``to_state_dict``: for a torch-origin conversion, the original state dict
  (names, shapes, dtypes and values, tied names included); for other origins,
  torch's names and layouts (Linear ``(out, in)``, Conv ``(out, in/groups, *k)``).
- ``to_module``: an ``nn.Module`` that runs the graph with torch ops, its
  parameters registered under those names; it trains, moves with ``.to()``
  and can be traced by ``torch.export``.
- ``to_source``: the same module as a Python file that imports only torch.
"""

from __future__ import annotations

import collections
import linecache
import os

import torch

from unigraph.backends.torch_codegen import generate
from unigraph.backends.torch_params import state_dict_arrays
from unigraph.converted import Converted
from unigraph.frontends.torch_tensors import from_numpy
from unigraph.io.atomic import atomic_file


def to_state_dict(conv: Converted) -> dict[str, torch.Tensor]:
    """The variables as torch tensors under state-dict names (tied names share a tensor); as torch's own,
    an ``OrderedDict`` whose ``_metadata`` gives the source modules' versions (``torch_module_versions``)."""
    tensors: dict[int, torch.Tensor] = {}
    out = collections.OrderedDict()
    for name, array in state_dict_arrays(conv).items():
        if id(array) not in tensors:
            tensors[id(array)] = from_numpy(array)
        out[name] = tensors[id(array)]
    versions = conv.metadata.get("torch_module_versions", {})
    out._metadata = collections.OrderedDict((prefix, {"version": v}) for prefix, v in versions.items())
    return out


def to_module(conv: Converted, class_name: str = "Model") -> torch.nn.Module:
    """The generated module, executed in memory, with the converted weights loaded (eval mode)."""
    source = generate(conv, class_name)
    filename = f"<unigraph {class_name} {id(conv):x}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace: dict = {"__name__": f"unigraph_generated_{id(conv):x}"}
    exec(compile(source, filename, "exec"), namespace)
    module = namespace[class_name]()
    module.load_state_dict(to_state_dict(conv), strict=True)
    return module.eval()


def to_source(conv: Converted, path: str | os.PathLike, class_name: str = "Model", *, overwrite: bool = False) -> str:
    """Writes the module's source to ``path`` (atomically); returns the source."""
    source = generate(conv, class_name)
    with atomic_file(path, overwrite=overwrite) as staging:
        staging.write_text(source)
    return source
