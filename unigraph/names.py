"""Unique names: one numbering for every place unigraph names things (values, variables, symbols, identifiers)."""

from __future__ import annotations

import re
from collections.abc import Container, Iterable


def unique_name(name: str, taken: Container[str]) -> str:
    """``name``, or the first of ``name_1``, ``name_2``… not in ``taken`` (as Keras numbers its layers).

    The caller records the name it takes.
    """
    candidate, i = name, 0
    while candidate in taken:
        i += 1
        candidate = f"{name}_{i}"
    return candidate


def unique_names(names: Iterable[str], reserved: Container[str] = frozenset()) -> list[str]:
    """``names`` with later duplicates (and ``reserved`` words) numbered by ``unique_name``."""
    taken = set()
    out = []
    for name in names:
        out.append(unique_name(name, _Union(taken, reserved)))
        taken.add(out[-1])
    return out


def identifier(text: str, prefix: str) -> str:
    """``text`` as a name valid everywhere a model's names go (a TF signature key, a Keras layer, a
    Python identifier): ``[A-Za-z][A-Za-z0-9_]*``, other characters as ``_``, ``prefix`` first if needed."""
    name = re.sub(r"[^A-Za-z0-9_]+", "_", str(text)).strip("_")
    if not name or not name[0].isalpha():
        name = f"{prefix}_{name}" if name else prefix
    return name


class _Union:
    def __init__(self, *parts: Container[str]):
        self.parts = parts

    def __contains__(self, name: object) -> bool:
        return any(name in p for p in self.parts)
