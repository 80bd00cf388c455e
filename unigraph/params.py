"""Parameter naming and layouts: the ``ParamMap`` between source tensors and Flax variables.

Every leaf of a converted model's variables is recorded with the source tensor
it came from: its name, shape and dtype, the permutation that turns the source
layout into the Flax layout, its role (``kernel``, ``bias``, ``scale``,
``mean``, ``var``, ``embedding``, or ``None`` when unknown) and the node that
uses it. Permutations are exact and invertible, so the map is a bijection:
source checkpoints of the same architecture can be translated with the map
alone, and Flax variables go back to the source names and layouts bit for bit.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from flax import traverse_util

from unigraph.dtypes import dtype_name
from unigraph.errors import CheckpointError, ShapeMismatchError

#: The leaf name each role takes in Flax conventions.
ROLE_LEAF = {
    "kernel": "kernel",
    "bias": "bias",
    "scale": "scale",
    "mean": "mean",
    "var": "var",
    "embedding": "embedding",
}

#: Source leaf names that are the conventional spelling of each role.
_CONVENTIONAL_SOURCE = {
    "kernel": {"weight", "kernel"},
    "bias": {"bias"},
    "scale": {"weight", "gamma", "scale"},
    "mean": {"running_mean", "moving_mean", "mean"},
    "var": {"running_var", "moving_variance", "var"},
    "embedding": {"weight", "embeddings", "embedding"},
}


@dataclasses.dataclass(frozen=True)
class ParamEntry:
    """One variable leaf and the source tensor it is the exact image of."""

    collection: str
    path: tuple[str, ...]
    source_name: str
    source_shape: tuple[int, ...]
    source_dtype: str
    perm: tuple[int, ...] | None = None
    role: str | None = None
    node: str | None = None
    aliases: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return "/".join((self.collection, *self.path))

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of the Flax leaf."""
        if self.perm is None:
            return self.source_shape
        return tuple(self.source_shape[i] for i in self.perm)

    @property
    def transform(self) -> str:
        return "identity" if self.perm is None else f"transpose{self.perm}"

    def to_flax(self, array: Any, where: str = "") -> np.ndarray:
        """The Flax leaf for a source tensor (checked against the recorded shape)."""
        array = np.asarray(array)
        if tuple(array.shape) != self.source_shape:
            raise ShapeMismatchError(self.source_name, self.source_shape, array.shape, where)
        return array if self.perm is None else np.transpose(array, self.perm)

    def to_source(self, array: Any) -> np.ndarray:
        """The source tensor for a Flax leaf (the exact inverse of ``to_flax``)."""
        array = np.asarray(array)
        if tuple(array.shape) != self.shape:
            raise ShapeMismatchError(self.key, self.shape, array.shape)
        return array if self.perm is None else np.transpose(array, np.argsort(self.perm))

    def to_json(self) -> dict:
        data = dataclasses.asdict(self)
        data["path"] = list(self.path)
        data["source_shape"] = list(self.source_shape)
        data["perm"] = None if self.perm is None else list(self.perm)
        data["aliases"] = list(self.aliases)
        return data

    @classmethod
    def from_json(cls, data: Mapping) -> ParamEntry:
        return cls(
            collection=data["collection"],
            path=tuple(data["path"]),
            source_name=data["source_name"],
            source_shape=tuple(data["source_shape"]),
            source_dtype=data["source_dtype"],
            perm=None if data.get("perm") is None else tuple(data["perm"]),
            role=data.get("role"),
            node=data.get("node"),
            aliases=tuple(data.get("aliases", ())),
        )


class ParamMap:
    """All entries of a conversion, indexed both ways."""

    def __init__(self, entries: Iterable[ParamEntry]):
        self.entries = tuple(entries)
        self._by_key = {e.key: e for e in self.entries}
        self._by_source: dict[str, ParamEntry] = {}
        for e in self.entries:
            for name in (e.source_name, *e.aliases):
                if name in self._by_source:
                    raise ValueError(f"source tensor {name!r} is mapped twice")
                self._by_source[name] = e
        if len(self._by_key) != len(self.entries):
            raise ValueError("two ParamMap entries share a variable path")

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self):
        return iter(self.entries)

    def by_source(self, name: str) -> ParamEntry:
        return self._by_source[name]

    def by_key(self, key: str) -> ParamEntry:
        return self._by_key[key]

    def source_names(self) -> list[str]:
        return [e.source_name for e in self.entries]

    def resolve(self, shapes: Mapping[str, Sequence[int]], where: str = "") -> dict[str, str]:
        """Which of a checkpoint's tensors each entry is, by variable key (``params/fc/kernel``).

        ``shapes`` maps the checkpoint's tensor names to their shapes. A tied
        tensor may be stored under any of its names (Hugging Face keeps one).
        Every entry must be present with its recorded shape, and every tensor
        must belong to an entry, so a checkpoint of another architecture is
        refused rather than half-applied: ``CheckpointError`` names the missing
        or unexpected tensors, ``ShapeMismatchError`` the first tensor whose
        shape differs.
        """
        prefix = f"{where}: " if where else ""
        stored: dict[str, str] = {}
        missing = []
        for e in self.entries:
            name = next((n for n in (e.source_name, *e.aliases) if n in shapes), None)
            if name is None:
                missing.append(e.source_name)
            else:
                stored[e.key] = name
        if missing:
            raise CheckpointError(f"{prefix}missing tensor(s) {_some(missing)} (is this a checkpoint of another architecture?)")
        unknown = [n for n in shapes if n not in self._by_source]
        if unknown:
            raise CheckpointError(
                f"{prefix}unexpected tensor(s) {_some(unknown)} (is this a checkpoint of another architecture?)"
            )
        for e in self.entries:
            found = tuple(shapes[stored[e.key]])
            if found != e.source_shape:
                raise ShapeMismatchError(stored[e.key], e.source_shape, found, where)
        return stored

    def to_variables(self, tensors: Mapping[str, Any], where: str = "") -> dict:
        """Flax variables (nested dicts of NumPy arrays) from source-named tensors (checked by ``resolve``)."""
        stored = self.resolve({n: np.shape(t) for n, t in tensors.items()}, where)
        return nest_variables({e.key: e.to_flax(tensors[stored[e.key]], where) for e in self.entries})

    def to_source(self, variables: Mapping) -> dict[str, np.ndarray]:
        """Source-named tensors, in source layouts, from Flax variables."""
        flat = flatten_variables(variables)
        return {e.source_name: e.to_source(flat[e.key]) for e in self.entries}

    def to_json(self) -> list:
        return [e.to_json() for e in self.entries]

    @classmethod
    def from_json(cls, data: Iterable[Mapping]) -> ParamMap:
        return cls(ParamEntry.from_json(d) for d in data)

    def __str__(self) -> str:
        rows = [("variable", "source", "transform", "role")]
        rows += [(e.key, e.source_name, e.transform, e.role or "-") for e in self.entries]
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def _some(names: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def module_path(source_name: str, separator: str = ".") -> tuple[tuple[str, ...], str]:
    """Splits ``"layer1.0.conv1.weight"`` into Flax module path ``("layer1_0", "conv1")`` and leaf ``"weight"``.

    Numeric components (list indices) join their parent with ``_``, the Flax
    spelling of ``nn.Sequential``/``ModuleList`` children.
    """
    parts = source_name.split(separator)
    path: list[str] = []
    for part in parts[:-1]:
        if part.isdigit() and path:
            path[-1] = f"{path[-1]}_{part}"
        else:
            path.append(part)
    return tuple(path), parts[-1]


def leaf_name(source_leaf: str, role: str | None) -> str:
    """The Flax leaf name for a source leaf used in ``role``.

    ``weight`` used as a dense kernel becomes ``kernel``; an unconventional
    name keeps itself with the role word swapped in (``in_proj_weight`` →
    ``in_proj_kernel``); an unknown role keeps the source name.
    """
    if role is None:
        return source_leaf
    if source_leaf in _CONVENTIONAL_SOURCE[role]:
        return ROLE_LEAF[role]
    swapped = re.sub(r"weight$", ROLE_LEAF[role], source_leaf)
    return swapped


def flatten_variables(variables: Mapping) -> dict[str, Any]:
    """``{"params/conv1/kernel": array, …}`` from nested variables."""
    return traverse_util.flatten_dict(variables, sep="/")


def nest_variables(flat: Mapping[str, Any]) -> dict:
    """Nested variables from ``{"params/conv1/kernel": array, …}`` (the inverse of ``flatten_variables``)."""
    return traverse_util.unflatten_dict(dict(flat), sep="/")


def source_dtype(array: Any) -> str:
    return dtype_name(np.asarray(array).dtype)
