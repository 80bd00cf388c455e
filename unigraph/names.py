"""Unique names: one numbering for every place unigraph names things (values, variables, symbols, identifiers)."""

from __future__ import annotations

from collections.abc import Container


def unique_name(name: str, taken: Container[str]) -> str:
    """``name``, or the first of ``name_1``, ``name_2``… not in ``taken`` (as Keras numbers its layers).

    The caller records the name it takes.
    """
    candidate, i = name, 0
    while candidate in taken:
        i += 1
        candidate = f"{name}_{i}"
    return candidate
