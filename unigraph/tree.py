"""Structure of a model's inputs and outputs, as JSON-able data.

A source model takes and returns nested tuples, lists and dicts of tensors
(a Hugging Face ``ModelOutput`` is a dict). A *tree spec* records that
structure with the graph value at every tensor leaf, so a converted model
accepts and returns the same structure:

- ``{"kind": "tensor", "name": value_name}``
- ``{"kind": "const", "value": v}``: a non-tensor leaf fixed when tracing
- ``{"kind": "tuple" | "list", "items": [spec, …]}``
- ``{"kind": "dict", "keys": [str, …], "items": [spec, …]}``
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

Spec = dict


def tensor(name: str) -> Spec:
    return {"kind": "tensor", "name": name}


def const(value: Any) -> Spec:
    return {"kind": "const", "value": value}


def sequence(kind: str, items: list[Spec]) -> Spec:
    assert kind in ("tuple", "list")
    return {"kind": kind, "items": list(items)}


def mapping(keys: list[str], items: list[Spec]) -> Spec:
    return {"kind": "dict", "keys": [str(k) for k in keys], "items": list(items)}


def tensor_names(spec: Spec) -> list[str]:
    """The graph value names at the tensor leaves, in order."""
    if spec["kind"] == "tensor":
        return [spec["name"]]
    return [n for item in spec.get("items", ()) for n in tensor_names(item)]


def unflatten(spec: Spec, leaf: Callable[[str], Any]) -> Any:
    """Builds the structure, asking ``leaf(name)`` for each tensor."""
    kind = spec["kind"]
    if kind == "tensor":
        return leaf(spec["name"])
    if kind == "const":
        return spec["value"]
    items = [unflatten(item, leaf) for item in spec["items"]]
    if kind == "tuple":
        return tuple(items)
    if kind == "list":
        return items
    return dict(zip(spec["keys"], items))


def match(spec: Spec, obj: Any, where: str = "") -> dict[str, Any]:
    """The tensors of ``obj`` by value name, checking ``obj`` has ``spec``'s structure.

    Raises ``ValueError`` naming the path (``args[0]``, ``kwargs['mask']``) at
    which the structure differs.
    """
    found: dict[str, Any] = {}
    _match(spec, obj, where, found)
    return found


def _match(spec: Spec, obj: Any, where: str, found: dict[str, Any]) -> None:
    kind = spec["kind"]
    if kind == "tensor":
        if obj is None or isinstance(obj, (Mapping, list, tuple, str)):
            raise ValueError(f"{where or 'input'}: expected a tensor, got {type(obj).__name__}")
        found[spec["name"]] = obj
    elif kind == "const":
        if obj is not None and obj != spec["value"]:
            raise ValueError(
                f"{where or 'input'}: was fixed to {spec['value']!r} when the model was "
                f"traced; got {obj!r}. Convert again with this value to change it."
            )
    elif kind in ("tuple", "list"):
        if not isinstance(obj, (tuple, list)) or len(obj) != len(spec["items"]):
            raise ValueError(
                f"{where or 'input'}: expected a {kind} of {len(spec['items'])}, got {_describe(obj)}"
            )
        for i, (item, value) in enumerate(zip(spec["items"], obj)):
            _match(item, value, f"{where}[{i}]", found)
    else:
        if not isinstance(obj, Mapping):
            raise ValueError(f"{where or 'input'}: expected a dict, got {_describe(obj)}")
        unknown = set(obj) - set(spec["keys"])
        if unknown:
            raise ValueError(
                f"{where or 'input'}: unexpected key(s) {sorted(unknown)}; "
                f"the model takes {spec['keys']}"
            )
        for key, item in zip(spec["keys"], spec["items"]):
            _match(item, obj.get(key), f"{where}[{key!r}]", found)


def _describe(obj: Any) -> str:
    if isinstance(obj, (tuple, list)):
        return f"a {type(obj).__name__} of {len(obj)}"
    return type(obj).__name__


def paths(spec: Spec, prefix: str = "") -> dict[str, str]:
    """A readable path (``"[0]"``, ``"['logits']"``) for each tensor leaf's value name."""
    kind = spec["kind"]
    if kind == "tensor":
        return {spec["name"]: prefix or "output"}
    if kind == "const":
        return {}
    keys = spec.get("keys") or range(len(spec["items"]))
    out: dict[str, str] = {}
    for key, item in zip(keys, spec["items"]):
        out.update(paths(item, f"{prefix}[{key!r}]"))
    return out
