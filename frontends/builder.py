"""Builds a unigraph graph while a frontend translates a source program op by op.

Handlers see ``TensorRef``s and call ``Builder.emit`` to add nodes; the output
types of each node are inferred from its JAX lowering. Parameters stay
unmaterialized until a handler uses them: ``Builder.weight`` claims one in
the layout its op wants (a linear weight as a ``(in, out)`` kernel), so the
variables end up in Flax conventions and the ParamMap records the exact
transform. A parameter used in two layouts is stored in the first and
transposed in the graph for the second.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from unigraph import dims
from unigraph.dtypes import dtype_name, numpy_dtype
from unigraph.errors import LoweringError
from unigraph.interpreter import infer_types
from unigraph.ir import Graph, Node, Source, TensorType, Variable
from unigraph.names import unique_name
from unigraph.ops import REGISTRY
from unigraph.ops.registry import freeze
from unigraph.params import ParamEntry, ParamMap, leaf_name, module_path, nest_variables


@dataclasses.dataclass(eq=False)
class SourceTensor:
    """A parameter, buffer or constant of the source model, not yet in the graph.

    ``path`` is the variable path (leaf included) when the source already
    names its tensors the Flax way (JAX and Keras sources); without it the
    path is derived from the dotted ``name`` and the role (torch sources).
    """

    name: str
    collection: str  # "params", "batch_stats" (or another collection), or "constant"
    array: np.ndarray
    aliases: tuple[str, ...] = ()
    claims: dict = dataclasses.field(default_factory=dict)  # perm -> value name
    stored_perm: tuple[int, ...] | None = None
    path: tuple[str, ...] | None = None


@dataclasses.dataclass(frozen=True, eq=False)
class TensorRef:
    """A tensor value seen by a handler: a graph value, or a source tensor to claim."""

    name: str | None
    type: TensorType
    source: SourceTensor | None = None

    @property
    def shape(self) -> tuple[dims.Dim, ...]:
        return self.type.shape

    @property
    def dtype(self) -> str:
        return self.type.dtype

    @property
    def rank(self) -> int:
        return self.type.rank

    def __repr__(self) -> str:
        return f"TensorRef({self.name or self.source.name}: {self.type})"


class Builder:
    def __init__(self):
        self.nodes: list[Node] = []
        self.types: dict[str, TensorType] = {}
        self.inputs: list[str] = []
        self.variables: dict[str, Variable] = {}
        self.variable_arrays: dict[str, np.ndarray] = {}
        self.constants: dict[str, np.ndarray] = {}
        self.entries: list[ParamEntry] = []
        self.scope = dims.SymbolicScope()
        self.source = Source()
        self.name_hint = "v"
        self._used_paths: set[str] = set()
        self._scalar_cache: dict[tuple, str] = {}
        self._inferred: dict[tuple, tuple[TensorType, ...]] = {}  # (op, input types, attributes) -> output types

    # ---- naming --------------------------------------------------------------------------

    def fresh(self, hint: str | None = None) -> str:
        base = (hint or self.name_hint).replace("/", "_").replace(".", "_") or "v"
        return unique_name(base, self.types)

    # ---- values --------------------------------------------------------------------------

    def input(self, name: str, type: TensorType) -> TensorRef:
        name = self.fresh(name)
        self.types[name] = type
        self.inputs.append(name)
        return TensorRef(name, type)

    def source_tensor(self, st: SourceTensor) -> TensorRef:
        return TensorRef(None, TensorType(tuple(st.array.shape), dtype_name(st.array.dtype)), st)

    def const(self, value: Any, dtype: str) -> TensorRef:
        """A 0-d constant (shared between uses of the same value and dtype)."""
        key = (repr(value), dtype)
        if key not in self._scalar_cache:
            array = np.asarray(value, dtype=numpy_dtype(dtype))
            name = self.fresh("c")
            self.constants[name] = array
            self.types[name] = TensorType((), dtype)
            self._scalar_cache[key] = name
        name = self._scalar_cache[key]
        return TensorRef(name, self.types[name])

    def const_array(self, array: np.ndarray, hint: str = "c") -> TensorRef:
        name = self.fresh(hint)
        self.constants[name] = array
        self.types[name] = TensorType(tuple(array.shape), dtype_name(array.dtype))
        return TensorRef(name, self.types[name])

    def value(self, t: TensorRef) -> str:
        """The graph value name of ``t``, claiming a source tensor as is if needed."""
        return t.name if t.source is None else self.weight(t, None).name

    def retype(self, t: TensorRef, type: TensorType) -> TensorRef:
        """``t`` declared with an equivalent type (the same sizes, written otherwise)."""
        self.types[t.name] = type
        return TensorRef(t.name, type, t.source)

    # ---- parameters ----------------------------------------------------------------------

    def weight(self, t: TensorRef, role: str | None, perm: Sequence[int] | None = None) -> TensorRef:
        """``t`` permuted by ``perm``, storing a source tensor in that layout under ``role``.

        The first use of a source tensor decides its stored layout; later uses
        in another layout get a ``transpose`` node. Activations (not source
        tensors) are transposed in the graph.
        """
        perm = None if perm is None or tuple(perm) == tuple(range(len(perm))) else tuple(perm)
        if t.source is None:
            return t if perm is None else self.emit("transpose", t, perm=perm)
        st = t.source
        if not st.claims:
            name = self._claim(st, perm, role)
        elif perm in st.claims:
            name = st.claims[perm]
        else:
            name = self._permuted(st, perm, self.types[st.claims[st.stored_perm]])
        return TensorRef(name, self.types[name])

    def _permuted(self, st: SourceTensor, perm, stored: TensorType) -> str:
        """A transpose node from the stored layout of ``st`` to ``perm`` (relative to the source)."""
        stored_perm = st.stored_perm or tuple(range(st.array.ndim))
        want = perm or tuple(range(st.array.ndim))
        inverse = np.argsort(stored_perm)
        relative = tuple(int(inverse[i]) for i in want)
        ref = self.emit("transpose", TensorRef(st.claims[st.stored_perm], stored), perm=relative)
        st.claims[perm] = ref.name
        return ref.name

    def _claim(self, st: SourceTensor, perm, role: str | None) -> str:
        array = st.array if perm is None else transposed(st.array, perm)
        st.stored_perm = perm
        if st.collection == "constant":
            ref = self.const_array(array, hint="c_" + st.name)
            st.claims[perm] = ref.name
            return ref.name
        path = self._variable_path(st.name, role) if st.path is None else self._explicit_path(st)
        var = Variable(st.collection, path)
        name = var.key
        self.types[name] = TensorType(tuple(array.shape), dtype_name(array.dtype))
        self.variables[name] = var
        self.variable_arrays[name] = array
        self.entries.append(
            ParamEntry(
                collection=st.collection,
                path=path,
                source_name=st.name,
                source_shape=tuple(st.array.shape),
                source_dtype=dtype_name(st.array.dtype),
                perm=perm,
                role=role,
                node=self.name_hint if role is not None else None,
                aliases=st.aliases,
            )
        )
        st.claims[perm] = name
        return name

    def _variable_path(self, source_name: str, role: str | None) -> tuple[str, ...]:
        prefix, leaf = module_path(source_name)
        candidates = [leaf_name(leaf, role), leaf] + [f"{leaf}_{i}" for i in range(1, 100)]
        for candidate in candidates:
            path = (*prefix, candidate)
            if "/".join(path) not in self._used_paths:
                self._used_paths.add("/".join(path))
                return path
        raise AssertionError(f"no free variable path for {source_name}")

    def _explicit_path(self, st: SourceTensor) -> tuple[str, ...]:
        key = Variable(st.collection, tuple(st.path)).key
        if key in self.variables:
            raise ValueError(f"two source tensors have the variable path {key!r}")
        return tuple(st.path)

    def claim_unused(self, st: SourceTensor) -> None:
        """Stores a source tensor no node used (kept so the state dict round-trips)."""
        if not st.claims and st.collection != "constant":
            self._claim(st, None, None)

    # ---- nodes ---------------------------------------------------------------------------

    def emit(self, op: str, *inputs: TensorRef | None, n_out: int = 1, **attrs):
        """Adds a node; returns its output ``TensorRef`` (a tuple when ``n_out > 1``)."""
        opdef = REGISTRY[op]
        attrs = {k: freeze(v) for k, v in attrs.items()}
        problems = opdef.check_attrs(attrs)
        if problems:
            raise LoweringError(f"{op} ({self.source}): " + "; ".join(problems))
        names = [None if t is None else self.value(t) for t in inputs]
        in_types = [None if n is None else self.types[n] for n in names]
        out_types = self._infer(op, in_types, attrs)
        if len(out_types) != n_out:
            raise LoweringError(f"{op} returns {len(out_types)} values, the handler expected {n_out}")
        outs = []
        for t in out_types:
            name = self.fresh()
            self.types[name] = t
            outs.append(name)
        self.nodes.append(Node(op, tuple(names), tuple(outs), attrs, self.source))
        refs = tuple(TensorRef(n, self.types[n]) for n in outs)
        return refs[0] if n_out == 1 else refs

    def _infer(self, op: str, in_types: list[TensorType | None], attrs: dict) -> tuple[TensorType, ...]:
        """The node's output types; models repeat the same op on the same types (every block of a
        ResNet, every layer of a transformer), so each signature is inferred once."""
        key = (op, tuple(in_types), _typed(tuple(sorted(attrs.items()))))
        try:
            return self._inferred[key]
        except KeyError:
            pass
        except TypeError:  # an unhashable attribute
            key = None
        try:
            out_types = infer_types(op, in_types, attrs, self.scope)
        except Exception as e:
            shown = ", ".join(str(t) for t in in_types)
            raise LoweringError(
                f"cannot type {op}({shown}) with {attrs} ({self.source}): {type(e).__name__}: {e}"
            ) from e
        if key is not None:
            self._inferred[key] = out_types
        return out_types

    # ---- result ------------------------------------------------------------------------------

    def graph(self, outputs: Sequence[str], input_tree, output_tree) -> Graph:
        """The finished graph, without nodes and constants no output depends on."""
        nodes = _live_nodes(self.nodes, outputs)
        used = {n for node in nodes for n in node.inputs} | set(outputs)
        values = set(self.inputs) | set(self.variables) | {n for node in nodes for n in node.outputs}
        constants = {n: a for n, a in self.constants.items() if n in used}
        return Graph(
            inputs=tuple(self.inputs),
            outputs=tuple(outputs),
            nodes=nodes,
            types={n: t for n, t in self.types.items() if n in values or n in constants},
            variables=dict(self.variables),
            constants=constants,
            input_tree=input_tree,
            output_tree=output_tree,
        ).validate()

    def variable_tree(self) -> dict:
        """The variables, nested, as JAX arrays (copies: the source's tensors may change later).

        One ``jax.device_put`` of the whole tree: converting leaf by leaf
        (``jnp.asarray``) takes several times as long.
        """
        arrays = {var.key: self.variable_arrays[name] for name, var in self.variables.items()}
        return nest_variables(jax.device_put(arrays))

    def param_map(self) -> ParamMap:
        return ParamMap(self.entries)


def _live_nodes(nodes: Sequence[Node], outputs: Sequence[str]) -> tuple[Node, ...]:
    """``nodes`` that some output depends on (functionalized in-place code leaves dead ones)."""
    needed = set(outputs)
    live = []
    for node in reversed(nodes):
        if needed.intersection(node.outputs):
            live.append(node)
            needed.update(n for n in node.inputs if n is not None)
    return tuple(reversed(live))


_TILE = 64


def transposed(array: np.ndarray, perm: Sequence[int]) -> np.ndarray:
    """``np.transpose(array, perm)`` as a C-contiguous array, fast for large arrays.

    NumPy copies a transpose in the output's order, reading the input with a
    large stride (a 768x3072 linear weight takes about 60 ms). Here the
    output's last axis is moved to the end first, in tiles that fit the
    cache, and the rest of the permutation then copies whole rows: about ten
    times faster.
    """
    perm = tuple(perm)
    last = perm[-1]
    if array.size < 1 << 16 or last == array.ndim - 1:
        return np.ascontiguousarray(np.transpose(array, perm))
    shape = array.shape
    outer, size, inner = math.prod(shape[:last]), shape[last], math.prod(shape[last + 1 :])
    source = array.reshape(outer, size, inner)
    moved = np.empty((outer, inner, size), array.dtype)
    for i in range(0, size, _TILE):
        for j in range(0, inner, _TILE):
            moved[:, j : j + _TILE, i : i + _TILE] = source[:, i : i + _TILE, j : j + _TILE].transpose(0, 2, 1)
    rest = [a for a in range(array.ndim) if a != last]  # the axes of ``moved``, then ``last``
    moved = moved.reshape(*(shape[a] for a in rest), size)
    return np.ascontiguousarray(np.transpose(moved, [rest.index(a) for a in perm[:-1]] + [len(rest)]))


def _typed(value: Any) -> Any:
    """``value`` with the type of every scalar in it, so that ``1``, ``1.0`` and ``True`` differ as keys."""
    if isinstance(value, tuple):
        return tuple(_typed(v) for v in value)
    return (type(value), value)


def short_path(path: str) -> str:
    """A source file as node sources show it: relative to site-packages or to the working directory."""
    marker = "site-packages" + os.sep
    if marker in path:
        return path.split(marker, 1)[1]
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return rel if not rel.startswith("..") else path
