"""Registry: the one table class behind ``@op``, ``@handles`` and ``@lowers``.

Each table maps a key (an op name, an ATen overload, a JAX primitive name) to
what is registered for it, each key once: a second registration is an error,
never a silent override, so two modules cannot both claim an op. Lookups
follow ``dict``: ``registry.get(key)`` is ``None`` for an unknown key,
``registry[key]`` raises a ``KeyError`` that names the key and what the table
holds. Each table is an object owned by the package that fills it, not a
module-level dict.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Registry(Generic[K, V]):
    """Values by key, each key registered once.

    ``what`` names one entry in error messages: ``Registry("op")`` says
    ``unknown op 'rleu'``, ``Registry("torch lowering")`` says
    ``torch lowering 'relu' is registered twice``.
    """

    def __init__(self, what: str):
        self.what = what
        self._entries: dict[K, V] = {}

    def register(self, key: K, value: V) -> None:
        if key in self._entries:
            raise ValueError(f"{self.what} {_show(key)} is registered twice")
        self._entries[key] = value

    def registers(self, *keys: K, build: Callable[[K, Any], V] | None = None) -> Callable:
        """A decorator registering the decorated function under each of ``keys``.

        With ``build`` the value registered under a key is ``build(key, fn)``;
        the decorator returns ``fn`` itself either way.
        """

        def decorate(fn):
            for key in keys:
                self.register(key, fn if build is None else build(key, fn))
            return fn

        return decorate

    def get(self, key: K) -> V | None:
        return self._entries.get(key)

    def __getitem__(self, key: K) -> V:
        try:
            return self._entries[key]
        except KeyError:
            raise KeyError(f"unknown {self.what} {_show(key)}{self._suggestion(key)}") from None

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[K]:
        """The keys, sorted by their text (ATen overloads do not order otherwise)."""
        return sorted(self._entries, key=str)

    def _suggestion(self, key: K) -> str:
        close = difflib.get_close_matches(str(key), [str(k) for k in self._entries], n=3)
        return f" (did you mean {', '.join(close)}?)" if close else ""


def _show(key: Any) -> str:
    return repr(key) if isinstance(key, str) else str(key)
