"""The unigraph IR: typed values, nodes of registered ops, and graphs.

A ``Graph`` is an immutable SSA program over named values. Values are the
graph inputs, the variables (parameters and batch statistics, looked up in a
Flax variable pytree), constants (NumPy arrays kept in the graph) and node
outputs. Every value has a ``TensorType``; every node names a registered op,
its input values, its output values, JSON-able attributes, and the ``Source``
it came from in the original model.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from unigraph import dims, tree
from unigraph.dtypes import dtype_name, numpy_dtype
from unigraph.errors import GraphError

FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class TensorType:
    """A tensor's shape (ints and dimension expressions) and dtype name."""

    shape: tuple[dims.Dim, ...]
    dtype: str

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(dims.check_dim(d) for d in self.shape))
        object.__setattr__(self, "dtype", dtype_name(self.dtype))

    @property
    def rank(self) -> int:
        return len(self.shape)

    def __str__(self) -> str:
        return f"{self.dtype}[{','.join(str(d) for d in self.shape)}]"

    def to_json(self) -> dict:
        return {"shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_json(cls, data: Mapping) -> TensorType:
        return cls(tuple(data["shape"]), data["dtype"])


@dataclasses.dataclass(frozen=True)
class Source:
    """Where a node came from: module path, file:line, and the original op."""

    module: str = ""
    location: str = ""
    origin: str = ""

    def __str__(self) -> str:
        parts = [p for p in (self.module and f"in {self.module}", self.location, self.origin) if p]
        return ", ".join(parts) or "unknown source"


@dataclasses.dataclass(frozen=True)
class Node:
    op: str
    inputs: tuple[str | None, ...]
    outputs: tuple[str, ...]
    attrs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    source: Source = Source()

    def describe(self) -> str:
        return f"node {', '.join(self.outputs)} = {self.op}(…) ({self.source})"


@dataclasses.dataclass(frozen=True)
class Variable:
    """Where a graph value lives in the variable pytree: collection and path."""

    collection: str
    path: tuple[str, ...]

    @property
    def key(self) -> str:
        return "/".join((self.collection, *self.path))


@dataclasses.dataclass(frozen=True, eq=False)
class Graph:
    """An immutable program (compared and hashed by identity).

    Constructing one checks nothing: ``validate()`` checks its structure and
    ``typecheck()`` its types (``from_json`` validates; the frontends build
    validated graphs).
    """

    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    nodes: tuple[Node, ...]
    types: Mapping[str, TensorType]
    variables: Mapping[str, Variable] = dataclasses.field(default_factory=dict)
    constants: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)
    input_tree: tree.Spec | None = None  # the structure of (args, kwargs)
    output_tree: tree.Spec | None = None

    def __post_init__(self):
        if self.input_tree is None:  # called with the inputs as positional arguments
            args = tree.sequence("tuple", [tree.tensor(n) for n in self.inputs])
            spec = tree.sequence("tuple", [args, tree.mapping([], [])])
            object.__setattr__(self, "input_tree", spec)
        if self.output_tree is None:
            if len(self.outputs) == 1:
                spec = tree.tensor(self.outputs[0])
            else:
                spec = tree.sequence("tuple", [tree.tensor(n) for n in self.outputs])
            object.__setattr__(self, "output_tree", spec)

    # ---- queries -----------------------------------------------------------------

    def variable_types(self, collection: str | None = None) -> Iterator[tuple[Variable, TensorType]]:
        for name, var in self.variables.items():
            if collection is None or var.collection == collection:
                yield var, self.types[name]

    def op_histogram(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for node in self.nodes:
            counts[node.op] = counts.get(node.op, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def symbols(self) -> list[str]:
        """The dimension symbols of the inputs, in order of first appearance."""
        seen: dict[str, None] = {}
        for name in self.inputs:
            for d in self.types[name].shape:
                for s in sorted(dims.symbols(d)):
                    seen.setdefault(s)
        return list(seen)

    # ---- validation -------------------------------------------------------------------

    def validate(self) -> Graph:
        """Checks structure, SSA form, types and every node's op and attributes.

        Returns the graph itself; raises ``GraphError`` naming the first problem.
        """
        from unigraph.ops import REGISTRY

        defined: set[str] = set()

        def define(name: str, what: str) -> None:
            if not isinstance(name, str) or not name:
                raise GraphError(f"{what}: value names are non-empty strings, got {name!r}")
            if name in defined:
                raise GraphError(f"{what}: value {name!r} is defined twice (graphs are SSA)")
            if name not in self.types:
                raise GraphError(f"{what}: value {name!r} has no type")
            defined.add(name)

        for name in self.inputs:
            define(name, "graph input")
        for name in self.variables:
            define(name, "variable")
        for name, array in self.constants.items():
            define(name, "constant")
            t = self.types[name]
            if tuple(array.shape) != t.shape or dtype_name(array.dtype) != t.dtype:
                raise GraphError(
                    f"constant {name!r} is {array.dtype}{list(array.shape)} but typed {t}"
                )
        for i, node in enumerate(self.nodes):
            where = _where(i, node)
            if node.op not in REGISTRY:
                raise GraphError(f"{where}: unknown op {node.op!r}")
            opdef = REGISTRY.get(node.op)
            problem = opdef.check_arity(len(node.inputs))
            if problem:
                raise GraphError(f"{where}: {node.op} {problem}")
            for j, name in enumerate(node.inputs):
                if name is None:
                    if j >= len(opdef.inputs) or opdef.inputs[j] not in opdef.optional:
                        raise GraphError(f"{where}: input {j} is required but missing")
                elif name not in defined:
                    raise GraphError(f"{where}: input {name!r} is not defined before use")
            problems = opdef.check_attrs(node.attrs)
            if problems:
                raise GraphError(f"{where}: " + "; ".join(problems))
            if not node.outputs:
                raise GraphError(f"{where}: a node has at least one output")
            for name in node.outputs:
                define(name, where)
        for name in self.outputs:
            if name not in defined:
                raise GraphError(f"graph output {name!r} is not defined")
        kinds = [item["kind"] for item in self.input_tree.get("items", ())]
        if self.input_tree["kind"] != "tuple" or kinds != ["tuple", "dict"]:
            raise GraphError("input_tree must describe (args, kwargs): a tuple of a tuple and a dict")
        if set(tree.tensor_names(self.input_tree)) != set(self.inputs):
            raise GraphError("input_tree does not name exactly the graph inputs")
        if not set(tree.tensor_names(self.output_tree)) <= set(self.outputs):
            raise GraphError("output_tree names values that are not graph outputs")
        return self

    def typecheck(self) -> Graph:
        """Validates the graph, then re-infers every node's output types and compares them with the recorded ones.

        Each node's types are inferred from its recorded input types and its
        attributes, as the frontends inferred them when they built it
        (``interpreter.infer_types``: abstract evaluation of the op's JAX
        lowering), all symbolic dimensions in one scope. A dimension JAX
        cannot prove equal to the recorded one is compared on sample sizes
        (``dims.equal_on_samples``), as the frontends compare it before they
        record a source framework's simpler form (``floordiv(h - 1, 4)`` for
        ``floordiv(floordiv(h - 1, 2), 2)``). Like ``jax.core.check_jaxpr``,
        it catches graphs that were edited or written by hand (a tampered
        bundle) before they run.

        Nodes alike in op, input types and attributes (the layers of a
        transformer) are inferred once.

        Returns the graph itself; raises ``GraphError`` naming the first node
        that disagrees, with both types.
        """
        from unigraph.interpreter import infer_types  # the interpreter imports this module

        self.validate()
        scope = dims.SymbolicScope()
        inferred: dict[tuple, tuple[TensorType, ...]] = {}
        for i, node in enumerate(self.nodes):
            in_types = tuple(None if n is None else self.types[n] for n in node.inputs)
            key = (node.op, in_types, json.dumps(_jsonable(node.attrs), sort_keys=True))
            if key not in inferred:
                try:
                    inferred[key] = infer_types(node.op, in_types, node.attrs, scope)
                except Exception as e:  # whatever the lowering raises on these types, reported with the node
                    shown = ", ".join("None" if t is None else str(t) for t in in_types)
                    raise GraphError(
                        f"{_where(i, node)}: its types cannot be inferred from its inputs ({shown}): "
                        f"{type(e).__name__}: {e}"
                    ) from e
            out_types = inferred[key]
            if len(out_types) != len(node.outputs):
                raise GraphError(
                    f"{_where(i, node)}: records {len(node.outputs)} outputs, its op gives {len(out_types)}"
                )
            for name, want in zip(node.outputs, out_types):
                if not _same_type(self.types[name], want, scope):
                    raise GraphError(
                        f"{_where(i, node)}: output {name!r} is recorded as {self.types[name]}, "
                        f"but its inputs and attributes give {want}"
                    )
        return self

    # ---- printing ------------------------------------------------------------------------

    def __str__(self) -> str:
        def sig(names):
            return ", ".join(f"{n}: {self.types[n]}" for n in names)

        lines = [f"graph({sig(self.inputs)}) -> ({sig(self.outputs)}) {{"]
        for node in self.nodes:
            args = [n if n is not None else "None" for n in node.inputs]
            args += [f"{k}={_short(v)}" for k, v in node.attrs.items()]
            outs = ", ".join(f"{n}: {self.types[n]}" for n in node.outputs)
            comment = f"  # {node.source}" if node.source != Source() else ""
            lines.append(f"  {outs} = {node.op}({', '.join(args)}){comment}")
        lines.append("}")
        return "\n".join(lines)

    # ---- JSON --------------------------------------------------------------------------------

    def to_json(self, constant_store: dict[str, np.ndarray] | None = None) -> dict:
        """The graph as JSON-able data.

        Constants are written inline (base64) unless ``constant_store`` is
        given: then they are put there by name and the JSON refers to them.
        """
        constants = {}
        for name, array in self.constants.items():
            if constant_store is not None:
                constant_store[name] = array
                constants[name] = {"stored": True}
            else:
                data = base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")
                constants[name] = {"data": data}
        return {
            "format": "unigraph",
            "version": FORMAT_VERSION,
            "inputs": list(self.inputs),
            "outputs": list(self.outputs),
            "types": {n: t.to_json() for n, t in self.types.items()},
            "variables": {
                n: {"collection": v.collection, "path": list(v.path)}
                for n, v in self.variables.items()
            },
            "constants": constants,
            "nodes": [
                {
                    "op": node.op,
                    "inputs": list(node.inputs),
                    "outputs": list(node.outputs),
                    "attrs": _jsonable(node.attrs),
                    "source": dataclasses.asdict(node.source),
                }
                for node in self.nodes
            ],
            "input_tree": self.input_tree,
            "output_tree": self.output_tree,
        }

    @classmethod
    def from_json(cls, data: Mapping, constant_store: Mapping[str, np.ndarray] | None = None) -> Graph:
        """The graph ``to_json`` wrote; ``GraphError`` names the first thing that is malformed.

        The data may come from a damaged or hand-edited file: its structure
        is checked field by field before anything is built, and an inline
        constant's bytes must be exactly what its type says.
        """
        if not isinstance(data, Mapping) or data.get("format") != "unigraph":
            raise GraphError("not a unigraph graph (the 'format' field is missing)")
        version = data.get("version", 0)
        if not isinstance(version, int) or isinstance(version, bool):
            raise GraphError(f"graph format version {_short(version)} is not a number")
        if version > FORMAT_VERSION:
            raise GraphError(
                f"graph format version {data['version']} is newer than this unigraph "
                f"understands ({FORMAT_VERSION}); upgrade unigraph"
            )
        types = {n: _tensor_type(t, f"the type of {n!r}") for n, t in _field(data, "types", dict, "graph").items()}
        constants = {}
        for name, entry in _field(data, "constants", dict, "graph").items():
            where = f"constant {name!r}"
            if not isinstance(entry, Mapping):
                raise GraphError(f"{where}: not an object")
            if entry.get("stored"):
                if constant_store is None or name not in constant_store:
                    raise GraphError(f"constant {name!r} is stored outside the JSON but was not given")
                constants[name] = np.asarray(constant_store[name])
            else:
                constants[name] = _inline_constant(entry, types.get(name), where)
        return cls(
            inputs=_names(data, "inputs", "graph"),
            outputs=_names(data, "outputs", "graph"),
            nodes=tuple(_node(n, i) for i, n in enumerate(_field(data, "nodes", list, "graph"))),
            types=types,
            variables={n: _variable(v, f"variable {n!r}") for n, v in _field(data, "variables", dict, "graph").items()},
            constants=constants,
            input_tree=_tree_spec(data.get("input_tree"), "input_tree", optional=True),
            output_tree=_tree_spec(data.get("output_tree"), "output_tree", optional=True),
        ).validate()

    def dumps(self) -> str:
        return json.dumps(self.to_json(), allow_nan=False)


# ---- reading JSON: each field checked before it is used ----------------------------------------------------


def _field(data: Mapping, key: str, kind: type, where: str):
    value = data.get(key)
    if not isinstance(value, kind):
        raise GraphError(f"{where}: {key!r} should be a {_KIND_NAMES[kind]}, found {_short(value)}")
    return value


_KIND_NAMES = {dict: "JSON object", list: "JSON list", str: "string"}


def _names(data: Mapping, key: str, where: str, *, optional: bool = False) -> tuple[str | None, ...]:
    """A list of value names (``None`` allowed where ``optional``: a missing optional input)."""
    names = _field(data, key, list, where)
    for name in names:
        if not (isinstance(name, str) or optional and name is None):
            raise GraphError(f"{where}: {key!r} should list value names, found {_short(name)}")
    return tuple(names)


def _tensor_type(data, where: str) -> TensorType:
    if not isinstance(data, Mapping) or not isinstance(data.get("shape"), list) or not isinstance(data.get("dtype"), str):
        raise GraphError(f"{where}: should be {{'shape': [...], 'dtype': name}}, found {_short(data)}")
    try:
        dtype = numpy_dtype(data["dtype"])
    except (TypeError, ValueError):
        dtype = None
    if dtype is None or dtype.kind not in "biufc" and dtype_name(dtype) not in ("bfloat16", "float8_e4m3fn", "float8_e5m2"):
        raise GraphError(f"{where}: unknown dtype {_short(data['dtype'])}")
    if any(isinstance(d, int) and d < 0 for d in data["shape"]):
        raise GraphError(f"{where}: negative size in shape {_short(data['shape'])}")
    try:
        return TensorType.from_json(data)
    except (TypeError, ValueError, RecursionError) as e:
        raise GraphError(f"{where}: malformed shape {_short(data['shape'])} ({e})") from None


def _inline_constant(entry: Mapping, t: TensorType | None, where: str) -> np.ndarray:
    if t is None:
        raise GraphError(f"{where} has no type")
    if not all(isinstance(d, int) for d in t.shape):
        raise GraphError(f"{where}: a constant has a static shape, found {t}")
    if not isinstance(entry.get("data"), str):
        raise GraphError(f"{where}: 'data' should be base64 text")
    try:
        raw = base64.b64decode(entry["data"], validate=True)
    except ValueError:  # binascii.Error
        raise GraphError(f"{where}: 'data' is not base64") from None
    dtype = numpy_dtype(t.dtype)
    if len(raw) != math.prod(t.shape) * dtype.itemsize:
        raise GraphError(f"{where}: {len(raw)} bytes of data for {t}")
    return np.frombuffer(raw, dtype).reshape(t.shape).copy()


def _node(data, index: int) -> Node:
    where = f"node {index}"
    if not isinstance(data, Mapping):
        raise GraphError(f"{where}: not an object")
    source = data.get("source", {})
    if not isinstance(source, Mapping) or not set(source) <= {"module", "location", "origin"} or not all(
        isinstance(v, str) for v in source.values()
    ):
        raise GraphError(f"{where}: 'source' should be an object of module, location and origin strings")
    return Node(
        op=_field(data, "op", str, where),
        inputs=_names(data, "inputs", where, optional=True),
        outputs=_names(data, "outputs", where),
        attrs={k: _from_jsonable(v) for k, v in _field(data, "attrs", dict, where).items()},
        source=Source(**source),
    )


def _variable(data, where: str) -> Variable:
    if not isinstance(data, Mapping) or not isinstance(data.get("collection"), str):
        raise GraphError(f"{where}: should be {{'collection': name, 'path': [...]}}, found {_short(data)}")
    path = _field(data, "path", list, where)
    if not all(isinstance(p, str) for p in path):
        raise GraphError(f"{where}: 'path' should list strings, found {_short(path)}")
    return Variable(data["collection"], tuple(path))


def _tree_spec(spec, where: str, *, optional: bool = False) -> tree.Spec | None:
    """``spec`` checked to be a tree spec (``unigraph.tree``) all the way down."""
    if spec is None and optional:
        return None
    kind = spec.get("kind") if isinstance(spec, Mapping) else None
    if kind == "tensor":
        _field(spec, "name", str, where)
    elif kind in ("tuple", "list", "dict"):
        for i, item in enumerate(_field(spec, "items", list, where)):
            _tree_spec(item, f"{where}[{i}]")
        if kind == "dict":
            keys = _field(spec, "keys", list, where)
            if len(keys) != len(spec["items"]) or not all(isinstance(k, str) for k in keys):
                raise GraphError(f"{where}: 'keys' should be as many strings as there are items")
    elif kind != "const" or "value" not in spec:
        raise GraphError(f"{where}: not a tree spec (a tensor, const, tuple, list or dict): {_short(spec)}")
    return spec


def _where(index: int, node: Node) -> str:
    return f"node {index} ({node.op} -> {', '.join(node.outputs)}; {node.source})"


def _same_type(recorded: TensorType, inferred: TensorType, scope: dims.SymbolicScope) -> bool:
    if recorded == inferred:
        return True
    return (
        recorded.dtype == inferred.dtype
        and recorded.rank == inferred.rank
        and all(
            dims.same_dim(r, d, scope) or dims.equal_on_samples(r, d)
            for r, d in zip(recorded.shape, inferred.shape)
        )
    )


def _jsonable(value: Any) -> Any:
    """Attribute values as strict JSON: tuples as lists, inf/nan as ``{"float": "inf"}``."""
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return {"float": repr(value)}
    return value


def _from_jsonable(value: Any) -> Any:
    """The inverse of ``_jsonable``: lists back to tuples, tagged floats back to floats."""
    if isinstance(value, Mapping) and set(value) == {"float"}:
        return float(value["float"])
    if isinstance(value, list):
        return tuple(_from_jsonable(v) for v in value)
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "…"
