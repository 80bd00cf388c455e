"""Channels-last: a graph pass that runs a channels-first model's image ops in ``(N, *spatial, C)``.

Why: TensorFlow's CPU kernels (hence Keras on TensorFlow, and TFLite) have
no channels-first convolution or pool; without XLA, a torch-origin graph,
NCHW throughout, fails there or needs a transpose around every such op.
``to_channels_last`` gives an equivalent graph in which every conv,
conv_transpose, pool, resize and group norm runs with ``channels_last=True``
and the transposes this takes at layout boundaries are carried through the
layout-agnostic ops in between until they cancel.

How: every value ``v`` of the original graph lives in the new graph under a
*layout*, a permutation ``p`` with ``new = transpose(v, p)`` (NumPy's
convention). The nodes are rewritten in order, each by its op's rule (the
``_RULES`` table):

- channels-first image ops ask for their input channels-last and produce
  channels-last outputs;
- layout-agnostic ops carry the layout of their inputs through, their axis
  attributes remapped: elementwise ops (constants and parameters that
  broadcast against a permuted tensor, a ``(C, 1, 1)`` layer scale say, are
  folded or reshaped to match; parameters themselves never change),
  activations, batch/layer/RMS norms, reductions (a global mean over
  ``(2, 3)`` needs no transpose after it), concat/split/slice/pad/flip/roll/tile,
  squeeze/expand_dims, dense over a last axis that stays last, and reshapes
  that only regroup axes the layout keeps together (``(N, C, 1, 1) -> (N, C)``,
  ``(N, C, H, W) -> (N, C, H*W)``);
- a ``transpose`` node is absorbed into the layout of its output (ConvNeXt's
  permutes around its LayerNorm cancel against the channels-last layout);
- any other op (matmul, attention, indexing, ...), and a rule that cannot
  keep the layout, gets its inputs transposed back to their original layout
  first: correctness never rests on an op this pass does not know.

A value is transposed at most once into each layout it is needed in, only
where an op needs it (a transpose that moves only size-1 axes is written as
a reshape). For ordinary CNNs (ResNet, MobileNet, EfficientNet, ConvNeXt)
none remain. One remains before a reshape that mixes channel and spatial
axes, a flatten of ``(N, C, H, W)`` into ``(N, C*H*W)`` before a Linear
layer: the Linear's weights expect the NCHW element order, so the reshape
must see it. Layouts are chosen node by node, not by a global search: in a
graph that mixes layouts (a transformer after a conv stem) the transposes a
transformer has of its own reappear before the ops that need them, no more
of them than before in the zoo's models.

Graph inputs are taken channels-last where that leaves fewer transposes (an
image fed to a conv, maybe through a normalization first); outputs still in
a channels-last layout (a feature map, a segmentation map) are returned that
way. ``Layout`` says which, so callers transpose example inputs and expected
outputs.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from unigraph.converted import Converted
from unigraph.ir import Graph, Node, Source, TensorType
from unigraph.names import unique_name
from unigraph.ops import REGISTRY, elementwise

Perm = tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class Layout:
    """The graph inputs and outputs (by value name in the new graph) that became channels-last.

    Each maps to its permutation in NumPy's convention: the new graph takes
    ``np.transpose(x, perm)`` for an original input ``x``, and an original
    output is ``np.transpose(y, np.argsort(perm))`` of the new output ``y``.
    """

    inputs: Mapping[str, Perm] = dataclasses.field(default_factory=dict)
    outputs: Mapping[str, Perm] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict:
        """The form kept in ``Converted.metadata["layout"]`` (and so in ``.ug`` bundles)."""
        return {
            "inputs": {name: list(perm) for name, perm in self.inputs.items()},
            "outputs": {name: list(perm) for name, perm in self.outputs.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping) -> Layout:
        """The ``Layout`` that ``to_json`` wrote (a loaded bundle's ``metadata["layout"]``)."""
        return cls(
            {name: tuple(perm) for name, perm in data["inputs"].items()},
            {name: tuple(perm) for name, perm in data["outputs"].items()},
        )


def to_channels_last(conv: Converted) -> tuple[Converted, Layout]:
    """``conv`` with its image ops channels-last (see the module's docstring), and the inputs and outputs that changed.

    The new ``Converted`` shares ``conv``'s variables and ParamMap (no
    parameter changes layout: a convolution kernel is ``(*k, in, out)`` in
    either layout) and records the layout in ``metadata["layout"]``
    (``Layout.to_json``). A graph with no channels-first image op (a
    Keras-origin one, a transformer, a graph this pass already rewrote) is
    returned as it is, ``conv`` itself, with an empty ``Layout``. The new graph
    is typechecked. The frontend's trace (node-by-node checks against the
    source model) is not carried over: the source's values are in the old layout.
    """
    graph = conv.graph
    if not any(_channels_first(node) for node in graph.nodes):
        return conv, Layout()
    new_graph, layout = _Rewriter(graph, _input_layouts(graph)).rewrite()
    new_graph.typecheck()
    metadata = {**conv.metadata, "layout": layout.to_json()}
    return Converted(new_graph, conv.variables, conv.param_map, metadata, precision=conv.precision), layout


def _input_layouts(graph: Graph) -> dict[str, Perm]:
    """The layout each graph input is taken in: the one that leaves the fewest transposes, the original on a tie.

    Tried input by input, each with the choices made before it; only rank 3-5
    inputs are candidates, with channels after a batch axis or, unbatched, first.
    """
    chosen: dict[str, Perm] = {}
    for name in graph.inputs:
        rank = graph.types[name].rank
        options = [_identity(rank), *_image_layouts(rank)]
        best = min(options, key=lambda perm: _transposes(_Rewriter(graph, {**chosen, name: perm}).rewrite()[0]))
        if not _is_identity(best):
            chosen[name] = best
    return chosen


def _transposes(graph: Graph) -> int:
    return sum(node.op == "transpose" for node in graph.nodes)


# ---- permutations ------------------------------------------------------------------------------


def _identity(rank: int) -> Perm:
    return tuple(range(rank))


def _inverse(perm: Perm) -> Perm:
    return tuple(int(i) for i in np.argsort(perm))


def _then(first: Perm, second: Perm) -> Perm:
    """The permutation of ``transpose(transpose(x, first), second)``."""
    return tuple(first[i] for i in second)


def _to_last(rank: int, axis: int) -> Perm:
    """The layout with ``axis`` moved last, the others in order: channels-last for channel axis ``axis``."""
    return (*(a for a in range(rank) if a != axis), axis)


def _image_layouts(rank: int) -> tuple[Perm, ...]:
    """The channels-last layouts a graph input or output may take: channels after a batch axis, or first."""
    return (_to_last(rank, 1), _to_last(rank, 0)) if 3 <= rank <= 5 else ()


def _permuted(shape: Sequence, perm: Perm) -> tuple:
    return tuple(shape[p] for p in perm)


def _moves_only_units(shape: Sequence, perm: Perm) -> bool:
    """Whether ``transpose(x, perm)`` keeps ``x``'s element order (a reshape does it): only size-1 axes move."""
    kept = [a for a in perm if shape[a] != 1]
    return kept == sorted(kept)


def _is_identity(perm: Perm) -> bool:
    return perm == _identity(len(perm))


def _all_units(shape: Sequence) -> bool:
    return all(d == 1 for d in shape)


# ---- the rewrite ------------------------------------------------------------------------------

# What a node's input must be supplied as: a layout of the input's own rank; a longer
# one for an input that broadcasts against a higher-rank tensor (leading size-1 axes
# added first, as broadcasting adds them); _AS_IS for an all-size-1 input, whose
# layouts are all alike; None for an absent optional input.
_AS_IS = "as is"
_Target = Perm | str | None


@dataclasses.dataclass(frozen=True)
class _Plan:
    """How a node is rewritten: the layouts its inputs are supplied in, its attributes, its outputs' layouts."""

    inputs: tuple[_Target, ...]
    attrs: Mapping
    outputs: tuple[Perm, ...]


class _Rewriter:
    """One rewrite of ``graph`` with its inputs taken in ``input_layouts`` (the others as they are)."""

    def __init__(self, graph: Graph, input_layouts: Mapping[str, Perm]):
        self.old = graph
        self.nodes: list[Node] = []
        self.types: dict[str, TensorType] = {}
        self.constants = dict(graph.constants)
        self.values: dict[str, tuple[str, Perm]] = {}  # original value -> (new value, its layout)
        self.made: dict[tuple, str] = {}  # (new value, op, attrs) -> the value that op made of it
        self.taken = set(graph.types)
        self.source = Source()
        for name in (*graph.variables, *graph.constants):
            self._define(name, _identity(graph.types[name].rank))
        for name in graph.inputs:
            self._define(name, input_layouts.get(name, _identity(graph.types[name].rank)))

    # ---- what rules see -----------------------------------------------------------------

    def type(self, name: str) -> TensorType:
        """The original type of an original value."""
        return self.old.types[name]

    def layout(self, name: str) -> Perm:
        return self.values[name][1]

    def movable(self, name: str) -> bool:
        """Whether a value costs nothing to permute: a parameter (reshaped) or a constant (folded)."""
        return name in self.old.variables or name in self.old.constants

    # ---- the pass -------------------------------------------------------------------------

    def rewrite(self) -> tuple[Graph, Layout]:
        for node in self.old.nodes:
            self.source = node.source
            if node.op == "transpose":
                self._absorb(node)
            else:
                self._apply(node, _RULES.get(node.op, _keep)(node, self) or _keep(node, self))
        outputs, output_layouts = self._outputs()
        used = {n for node in self.nodes for n in node.inputs} | set(outputs.values())
        unused = {n for n in self.constants if n not in used}
        graph = Graph(
            inputs=self.old.inputs,
            outputs=tuple(outputs[n] for n in self.old.outputs),
            nodes=tuple(self.nodes),
            types={n: t for n, t in self.types.items() if n not in unused},
            variables=self.old.variables,
            constants={n: a for n, a in self.constants.items() if n not in unused},
            input_tree=self.old.input_tree,
            output_tree=_renamed(self.old.output_tree, outputs),
        )
        input_layouts = {n: self.layout(n) for n in self.old.inputs}
        return graph, Layout({n: p for n, p in input_layouts.items() if not _is_identity(p)}, output_layouts)

    def _outputs(self) -> tuple[dict[str, str], dict[str, Perm]]:
        """The new value of each graph output, and the layouts of those that stay channels-last.

        An output in a layout that is not channels-last is transposed back. An
        output that the original graph computes as a transpose is the value it
        transposes (no copy), under that value's name.
        """
        self.source = Source(origin="channels_last: an output in its original layout")
        names, layouts = {}, {}
        for name in self.old.outputs:
            new, perm = self.values[name]
            if not _is_identity(perm) and perm not in _image_layouts(len(perm)):
                new, perm = self.supply(name, _identity(len(perm))), _identity(len(perm))
            names[name] = new
            if not _is_identity(perm):
                layouts[new] = perm
        return names, layouts

    def _define(self, name: str, perm: Perm) -> None:
        self.values[name] = (name, perm)
        self.types[name] = TensorType(_permuted(self.type(name).shape, perm), self.type(name).dtype)

    def _apply(self, node: Node, plan: _Plan) -> None:
        inputs = tuple(None if n is None else self.supply(n, t) for n, t in zip(node.inputs, plan.inputs))
        self.nodes.append(dataclasses.replace(node, inputs=inputs, attrs=dict(plan.attrs)))
        for name, perm in zip(node.outputs, plan.outputs):
            self._define(name, perm)

    def _absorb(self, node: Node) -> None:
        """A transpose costs nothing: its output is its input's new value, seen in another layout.

        The input ``v`` is held as ``transpose(v, p)``; the output is
        ``transpose(v, q)``, so the same new value holds it in layout ``q⁻¹`` then ``p``.
        """
        new, perm = self.values[node.inputs[0]]
        self.values[node.outputs[0]] = (new, _then(_inverse(node.attrs["perm"]), perm))

    def supply(self, name: str, target: _Target) -> str:
        """The new value holding original value ``name`` as ``target`` asks (see ``_Target``)."""
        new, have = self.values[name]
        if target == _AS_IS:
            return new
        if len(target) == len(have):
            return self._permute(new, _then(_inverse(have), target))
        return self._broadcast(self._permute(new, _inverse(have)), target)

    def _permute(self, new: str, perm: Perm) -> str:
        """``transpose(new, perm)``, as a reshape where only size-1 axes move."""
        shape = self.types[new].shape
        if _is_identity(perm):
            return new
        if _moves_only_units(shape, perm):
            return self._derived(new, "reshape", shape=_permuted(shape, perm))
        return self._derived(new, "transpose", perm=perm)

    def _broadcast(self, new: str, perm: Perm) -> str:
        """``new`` with leading size-1 axes up to ``len(perm)`` axes (as it broadcasts), then permuted.

        One reshape where only size-1 axes move (a ``(C, 1, 1)`` scale to ``(1, 1, 1, C)``).
        """
        shape = (1,) * (len(perm) - self.types[new].rank) + tuple(self.types[new].shape)
        if _moves_only_units(shape, perm):
            return self._derived(new, "reshape", shape=_permuted(shape, perm))
        return self._permute(self._derived(new, "reshape", shape=shape), perm)

    def _derived(self, new: str, op: str, **attrs) -> str:
        """``op(new, **attrs)`` (a reshape or transpose), made once; of a constant, a folded constant."""
        key = (new, op, *attrs.items())
        if key not in self.made:
            t = self.types[new]
            shape = attrs["shape"] if op == "reshape" else _permuted(t.shape, attrs["perm"])
            out = self._name(f"{new}_{op}d")
            self.types[out] = TensorType(shape, t.dtype)
            if new in self.constants:
                array = self.constants[new]
                array = np.reshape(array, shape) if op == "reshape" else np.transpose(array, attrs["perm"])
                self.constants[out] = np.ascontiguousarray(array)
            else:
                self.nodes.append(Node(op, (new,), (out,), attrs, self.source))
            self.made[key] = out
        return self.made[key]

    def _name(self, base: str) -> str:
        name = unique_name(base.replace("/", "_"), self.taken)
        self.taken.add(name)
        return name


def _renamed(spec: dict, names: Mapping[str, str]) -> dict:
    """A tree spec with its tensor leaves renamed."""
    if spec["kind"] == "tensor":
        return {**spec, "name": names.get(spec["name"], spec["name"])}
    if "items" in spec:
        return {**spec, "items": [_renamed(item, names) for item in spec["items"]]}
    return spec


# ---- rules: how each op keeps a layout ---------------------------------------------------------
#
# A rule takes the node and the rewriter (the inputs' original types and current
# layouts) and returns a _Plan, or None where it cannot keep the layout: the node
# then runs on its inputs in their original layout (_keep).

_Rule = Callable[[Node, _Rewriter], "_Plan | None"]


def _keep(node: Node, rw: _Rewriter) -> _Plan:
    """The node as it is, on its inputs in their original layout."""
    inputs = tuple(None if n is None else _identity(rw.type(n).rank) for n in node.inputs)
    outputs = tuple(_identity(rw.type(n).rank) for n in node.outputs)
    return _Plan(inputs, node.attrs, outputs)


def _attr(node: Node, name: str):
    return REGISTRY[node.op].with_defaults(node.attrs)[name]


# The channels-first image ops: how many spatial axes each has (conv.layout_axes: they
# are the trailing ones, the channel axis just before them).
_SPATIAL_AXES: dict[str, Callable[[Node, _Rewriter], int]] = {
    "conv": lambda node, rw: rw.type(node.inputs[1]).rank - 2,
    "conv_transpose": lambda node, rw: rw.type(node.inputs[1]).rank - 2,
    "max_pool": lambda node, rw: len(node.attrs["window"]),
    "avg_pool": lambda node, rw: len(node.attrs["window"]),
    "adaptive_avg_pool": lambda node, rw: len(node.attrs["output_size"]),
    "adaptive_max_pool": lambda node, rw: len(node.attrs["output_size"]),
    "resize": lambda node, rw: len(node.attrs["sizes"]),
    "group_norm": lambda node, rw: rw.type(node.inputs[0]).rank - 2,  # channels at axis 1, whatever the rank
}


def _channels_first(node: Node) -> bool:
    return node.op in _SPATIAL_AXES and not _attr(node, "channels_last")


def _image_op(node: Node, rw: _Rewriter) -> _Plan | None:
    """A channels-first image op runs channels-last; its outputs of the input's rank (indices too) are channels-last."""
    if not _channels_first(node):
        return None
    rank = rw.type(node.inputs[0]).rank
    perm = _to_last(rank, rank - 1 - _SPATIAL_AXES[node.op](node, rw))
    inputs = (perm, *(None if n is None else _identity(rw.type(n).rank) for n in node.inputs[1:]))
    outputs = tuple(perm if rw.type(n).rank == rank else _identity(rw.type(n).rank) for n in node.outputs)
    return _Plan(inputs, {**node.attrs, "channels_last": True}, outputs)


def _elementwise(node: Node, rw: _Rewriter) -> _Plan:
    """Elementwise ops (broadcasting ones, concat too) run in the layout most of their full-rank activations have.

    Lower-rank inputs broadcast against the permuted tensor once permuted the
    same way; all-size-1 inputs (scalars) broadcast as they are.
    """
    present = [n for n in node.inputs if n is not None]
    rank = max(rw.type(n).rank for n in present)
    full = [n for n in present if rw.type(n).rank == rank and not _all_units(rw.type(n).shape)]
    perm = _vote([rw.layout(n) for n in full if not rw.movable(n)], rank)
    inputs = tuple(None if n is None else _AS_IS if _all_units(rw.type(n).shape) else perm for n in node.inputs)
    attrs = dict(node.attrs)
    if "axis" in attrs:  # concat, slice_update
        attrs["axis"] = _inverse(perm)[attrs["axis"] % rank]
    return _Plan(inputs, attrs, (perm,) * len(node.outputs))


def _vote(layouts: list[Perm], rank: int) -> Perm:
    """The layout that needs the fewest of ``layouts`` transposed; on a tie a permuted one (an image op's)."""
    options = dict.fromkeys(layouts) or {_identity(rank): None}
    return min(options, key=lambda p: (sum(q != p for q in layouts), p == _identity(rank)))


def _same_layout(node: Node, rw: _Rewriter) -> tuple[Perm, Perm, int]:
    """The first input's layout, its inverse (new axis of each original axis) and its rank."""
    perm = rw.layout(node.inputs[0])
    return perm, _inverse(perm), len(perm)


def _unary(node: Node, rw: _Rewriter) -> _Plan:
    """Elementwise ops of one tensor keep its layout."""
    perm = rw.layout(node.inputs[0])
    return _Plan((perm,), node.attrs, (perm,) * len(node.outputs))


def _along_axis(node: Node, rw: _Rewriter) -> _Plan:
    """Ops along one ``axis`` (softmax, cumulative ops, sort, top_k, slice, split) keep the layout, the axis moved."""
    perm, inverse, rank = _same_layout(node, rw)
    attrs = {**node.attrs, "axis": inverse[node.attrs["axis"] % rank]}
    return _Plan((perm,), attrs, (perm,) * len(node.outputs))


def _along_axes(node: Node, rw: _Rewriter) -> _Plan:
    """``flip``/``roll`` keep the layout, each axis moved (``roll``'s shifts stay paired with theirs)."""
    perm, inverse, rank = _same_layout(node, rw)
    attrs = {**node.attrs, "axes": tuple(inverse[a % rank] for a in node.attrs["axes"])}
    return _Plan((perm,), attrs, (perm,))


def _per_axis(*names: str) -> _Rule:
    """Ops with an entry per axis in attributes ``names`` (pad's low/high, tile's reps, broadcast_to's shape)."""

    def rule(node: Node, rw: _Rewriter) -> _Plan | None:
        perm = rw.layout(node.inputs[0])
        if any(len(node.attrs[name]) != len(perm) for name in names):
            return None  # tile and broadcast_to may add leading axes
        return _Plan((perm,), {**node.attrs, **{n: _permuted(node.attrs[n], perm) for n in names}}, (perm,))

    return rule


def _reduction(node: Node, rw: _Rewriter) -> _Plan | None:
    """Reductions over ``axes`` (or ``axis``; ``squeeze`` too) keep the layout of the axes that remain."""
    perm, inverse, rank = _same_layout(node, rw)
    single = "axis" in node.attrs
    axes = (node.attrs["axis"],) if single else node.attrs["axes"]
    if axes == (None,):  # argmax over the flattened tensor: an index into the original order
        return None
    axes = {a % rank for a in axes}
    moved = sorted(inverse[a] for a in axes)
    attrs = {**node.attrs, **({"axis": moved[0]} if single else {"axes": tuple(moved)})}
    if node.op == "squeeze" or not _attr(node, "keepdims"):
        remaining = [a for a in range(rank) if a not in axes]
        return _Plan((perm,), attrs, (tuple(remaining.index(a) for a in perm if a not in axes),))
    return _Plan((perm,), attrs, (perm,))


def _expand_dims(node: Node, rw: _Rewriter) -> _Plan:
    """New size-1 axes go where they went; the input's axes around them keep their layout."""
    perm = rw.layout(node.inputs[0])
    rank = len(perm) + len(node.attrs["axes"])
    added = {a % rank for a in node.attrs["axes"]}
    kept = [a for a in range(rank) if a not in added]  # where input axis i lands
    out = list(range(rank))
    for i, p in enumerate(perm):
        out[kept[i]] = kept[p]
    return _Plan((perm,), node.attrs, (tuple(out),))


def _normalization(node: Node, rw: _Rewriter) -> _Plan | None:
    """Norms over ``axes`` (layer, RMS) keep the layout if the axes keep their order (scale and bias follow it)."""
    perm, inverse, rank = _same_layout(node, rw)
    moved = [inverse[a % rank] for a in sorted(a % rank for a in node.attrs["axes"])]
    if moved != sorted(moved):
        return None
    params = tuple(None if n is None else _identity(rw.type(n).rank) for n in node.inputs[1:])
    return _Plan((perm, *params), {**node.attrs, "axes": tuple(moved)}, (perm,) * len(node.outputs))


def _batch_norm(node: Node, rw: _Rewriter) -> _Plan:
    """Batch norm normalizes along ``axis`` in any layout; its statistics are per channel ``(C,)``."""
    perm, inverse, rank = _same_layout(node, rw)
    params = tuple(None if n is None else _identity(1) for n in node.inputs[1:])
    outputs = (perm,) + (_identity(1),) * (len(node.outputs) - 1)
    return _Plan((perm, *params), {**node.attrs, "axis": inverse[_attr(node, "axis") % rank]}, outputs)


def _dense(node: Node, rw: _Rewriter) -> _Plan | None:
    """``dense`` contracts the last axis: any layout that keeps it last is kept."""
    perm = rw.layout(node.inputs[0])
    if perm[-1] != len(perm) - 1:
        return None
    params = tuple(None if n is None else _identity(rw.type(n).rank) for n in node.inputs[1:])
    return _Plan((perm, *params), node.attrs, (perm,))


def _reshape(node: Node, rw: _Rewriter) -> _Plan | None:
    """A reshape applies to the permuted tensor as it is when the layout moves whole groups of axes it merges or splits.

    Size-1 axes are left out of the grouping (they go anywhere); the output's
    layout moves the corresponding output groups the same way, its size-1 axes
    staying where they are. ``(N, C, 1, 1) -> (N, C)`` and ``(N, C, H, W) -> (N, C, H*W)``
    qualify from NHWC; ``(N, C, H, W) -> (N, C*H*W)`` does not.
    """
    perm = rw.layout(node.inputs[0])
    shape, out_shape = rw.type(node.inputs[0]).shape, rw.type(node.outputs[0]).shape
    sources = [a for a in range(len(shape)) if shape[a] != 1]
    targets = [a for a in range(len(out_shape)) if out_shape[a] != 1]
    groups = _groups([shape[a] for a in sources], [out_shape[a] for a in targets])
    if groups is None:
        return None
    group_of = {i: g for g, (ins, _) in enumerate(groups) for i in ins}
    order = [sources.index(a) for a in perm if shape[a] != 1]  # non-size-1 input axes, as now laid out
    moved, i = [], 0
    while i < len(order):
        ins, outs = groups[group_of[order[i]]]
        if order[i : i + len(ins)] != ins:
            return None
        moved += [targets[j] for j in outs]
        i += len(ins)
    laid = iter(moved)
    out = tuple(a if out_shape[a] == 1 else next(laid) for a in range(len(out_shape)))
    if _is_identity(out):
        return _Plan((perm,), node.attrs, (out,))
    return _Plan((perm,), {**node.attrs, "shape": _permuted(out_shape, out)}, (out,))


def _groups(src: Sequence, dst: Sequence) -> list[tuple[list[int], list[int]]] | None:
    """``src`` and ``dst`` (sizes without 1s) cut into consecutive groups of equal products, or None.

    A symbolic size only pairs with the same symbol, alone.
    """
    groups, i, j = [], 0, 0
    while i < len(src) and j < len(dst):
        if isinstance(src[i], str) or isinstance(dst[j], str):
            if src[i] != dst[j]:
                return None
            groups.append(([i], [j]))
            i, j = i + 1, j + 1
            continue
        ins, outs, a, b = [i], [j], src[i], dst[j]
        i, j = i + 1, j + 1
        while a != b:
            if a < b and i < len(src) and isinstance(src[i], int):
                ins.append(i)
                a, i = a * src[i], i + 1
            elif a > b and j < len(dst) and isinstance(dst[j], int):
                outs.append(j)
                b, j = b * dst[j], j + 1
            else:
                return None
        groups.append((ins, outs))
    return groups if i == len(src) and j == len(dst) else None


# The elementwise op tables are the ops' own (unigraph/ops/elementwise.py), so a new
# activation there is carried through without a transpose.
_RULES: dict[str, _Rule] = {
    **dict.fromkeys(_SPATIAL_AXES, _image_op),
    **dict.fromkeys([*elementwise._UNARY, "cast", "gelu", "leaky_relu", "elu", "softplus"], _unary),
    **dict.fromkeys([*elementwise._BINARY, "trunc_divide", "where", "clip", "concat", "slice_update"], _elementwise),
    **dict.fromkeys(
        ["softmax", "log_softmax", "cumsum", "cumprod", "cummax", "cummin", "sort", "top_k", "slice", "split"],
        _along_axis,
    ),
    **dict.fromkeys(["flip", "roll"], _along_axes),
    **dict.fromkeys(
        [
            "reduce_sum", "reduce_mean", "reduce_prod", "reduce_max", "reduce_min", "reduce_any", "reduce_all",
            "variance", "logsumexp", "vector_norm", "argmax", "argmin", "squeeze",
        ],
        _reduction,
    ),
    "pad": _per_axis("low", "high"),
    "tile": _per_axis("reps"),
    "broadcast_to": _per_axis("shape"),
    "expand_dims": _expand_dims,
    "layer_norm": _normalization,
    "rms_norm": _normalization,
    "batch_norm": _batch_norm,
    "dense": _dense,
    "reshape": _reshape,
}
