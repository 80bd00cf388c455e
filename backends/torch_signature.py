"""The generated ``forward``'s parameters: the source model's call, and the lines that unpack it.

- Positional arguments stay positional. A tensor is named after its graph
  value; a nested one (a tuple, list or dict of tensors) is ``inputs`` when it
  is the only argument, else ``arg0``, ``arg1``…, and its tensors are read out
  of it by subscripts.
- Keyword arguments keep their names, so ``module(x, mask=m)`` works as the
  source model's call did; a name that would hide what the generated file uses
  (``torch``, ``F``, a builtin) is renamed, and that argument then goes by position.
- A model whose one argument is a dict with identifier keys (a Keras model
  with named inputs) takes ``module(inputs)`` and ``module(token_ids=…,
  padding_mask=…)`` both (``unigraph.signature.keyword_dict``).
- A fixed (non-tensor) argument is a parameter defaulting to its traced value;
  the parameters after it default to ``None`` so the signature stays valid.
"""

from __future__ import annotations

import builtins
import keyword
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from unigraph import tree
from unigraph.backends.source_copy import literal
from unigraph.ir import Graph
from unigraph.names import identifier, unique_name
from unigraph.signature import keyword_dict


@dataclass(frozen=True)
class Parameter:
    name: str  # the parameter's name in forward
    spec: tree.Spec  # what the caller passes there
    default: str | None = None  # Python source of the default


@dataclass(frozen=True)
class Parameters:
    """``forward``'s parameters; ``names`` fixes the identifier of each tensor a parameter is."""

    items: list[Parameter]
    dict_name: str | None  # the one-dict parameter whose entries are also keyword parameters

    @property
    def names(self) -> dict[str, str]:
        return {p.spec["name"]: p.name for p in self.items if p.spec["kind"] == "tensor"}

    @property
    def reserved(self) -> list[str]:
        return [p.name for p in self.items] + ([self.dict_name] if self.dict_name else [])

    def signature(self) -> str:
        """``self, x, mask`` or ``self, inputs=None, *, padding_mask=None, token_ids=None``."""
        parts = ["self"] + ([f"{self.dict_name}=None", "*"] if self.dict_name else [])
        for p in self.items:
            parts.append(p.name if p.default is None else f"{p.name}={p.default}")
        return ", ".join(parts)

    def preamble(self, ids: Callable[[str], str], class_name: str) -> list[str]:
        """The lines binding every graph input that is not a parameter itself, by subscripts."""
        lines = []
        if self.dict_name:
            entries = [p.name for p in self.items if p.spec["kind"] != "const"]
            given = entries[0] if len(entries) == 1 else f"({', '.join(entries)})"
            check = f"{given} is not None" if len(entries) == 1 else f"any(v is not None for v in {given})"
            lines += [
                f"if {self.dict_name} is not None and {check}:",
                f"    raise TypeError({f'{class_name} takes its inputs as one dict or as keywords, not both'!r})",
                f"if {self.dict_name} is not None:",
                *(f"    {name} = {self.dict_name}[{name!r}]" for name in entries),
            ]
        for p in self.items:
            if p.spec["kind"] not in ("tensor", "const"):
                lines += _unpack(p.name, p.spec, ids)
        return lines


def parameters(graph: Graph, taken: Iterable[str]) -> Parameters:
    """The parameters for ``graph``'s inputs; ``taken`` are the names the generated file defines."""
    taken = set(taken) | {"self"} | set(keyword.kwlist)
    args, kwargs = graph.input_tree["items"]
    entries = keyword_dict(graph)
    if entries is not None and all(_free(key, taken) for key in entries["keys"]):
        dict_name = unique_name("inputs", taken | set(entries["keys"]))
        items = [_keyword(key, spec) for key, spec in zip(entries["keys"], entries["items"])]
        return Parameters(items, dict_name)
    exact = [key for key in kwargs["keys"] if _free(key, taken)]
    used = taken | set(dir(builtins)) | set(exact)
    items = []
    named = [(None, spec) for spec in args["items"]] + list(zip(kwargs["keys"], kwargs["items"]))
    for i, (key, spec) in enumerate(named):
        if key not in exact:  # positional, or a keyword renamed: it goes by position
            if spec["kind"] == "tensor":
                base = spec["name"]
            elif key is None and len(named) == 1:
                base = "inputs"
            else:
                base = key or f"arg{i}"
            key = unique_name(identifier(base, "arg"), used)
            used.add(key)
        items.append(Parameter(key, spec))
    return Parameters(_defaults(items), None)


def _free(name: str, taken: set[str]) -> bool:
    """Whether a parameter may carry ``name`` exactly: an identifier hiding nothing forward uses."""
    return name.isidentifier() and name not in taken and not hasattr(builtins, name)


def _keyword(key: str, spec: tree.Spec) -> Parameter:
    default = literal(spec["value"]) if spec["kind"] == "const" else "None"
    return Parameter(key, spec, default=default)


def _defaults(items: list[Parameter]) -> list[Parameter]:
    """Fixed values as defaults; ``None`` for the parameters after one (Python requires a default)."""
    out, defaulted = [], False
    for p in items:
        if p.spec["kind"] == "const":
            out.append(Parameter(p.name, p.spec, default=literal(p.spec["value"])))
            defaulted = True
        else:
            out.append(Parameter(p.name, p.spec, default="None") if defaulted else p)
    return out


def _unpack(source: str, spec: tree.Spec, ids: Callable[[str], str]) -> list[str]:
    """``x_0 = arg0[0]['mask']``: one line per tensor, read by its path."""
    return [f"{ids(name)} = {source}{path}" for name, path in tree.paths(spec).items()]
