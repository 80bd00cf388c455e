"""Nodes a generated torch module writes as ``nn`` layers instead of functional calls.

A node becomes ``nn.Linear``, ``nn.ConvNd``, ``nn.LayerNorm``,
``nn.Embedding`` or ``nn.BatchNormNd`` when its parameters are exactly that
layer's, in that layer's torch layout and names (``P.weight``, ``P.bias``, …),
used by this node alone, and its attributes are ones the layer expresses.
Anything else stays a call of the op's torch lowering, which is always right.

A channels-last convolution (Keras and Flax models are NHWC) is still an
``nn.Conv2d``, called between two permutes: ``self.conv(x.permute(0, 3, 1,
2)).permute(0, 2, 3, 1)``, which a PyTorch reader knows at a glance.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

from unigraph.backends.torch_params import TorchTensor
from unigraph.ir import Graph, Node


@dataclasses.dataclass(frozen=True)
class Layer:
    path: str  # where the layer sits: "layer1.0.conv1"
    constructor: str  # "nn.Conv2d(64, 64, 3, padding=1, bias=False)"
    input: str  # the activation it is called on
    values: frozenset[str]  # the variables it owns
    before: str = ""  # appended to the input expression: ".permute(0, 3, 1, 2)"
    after: str = ""  # appended to the call: ".permute(0, 2, 3, 1)"


def find_layers(graph: Graph, tensors: Mapping[str, TorchTensor]) -> dict[int, Layer]:
    """Node index → the layer that node is written as."""
    uses: dict[str, int] = {}
    for node in graph.nodes:
        for name in node.inputs:
            if name in tensors:
                uses[name] = uses.get(name, 0) + 1
    prefixes: dict[str, set[str]] = {}
    for t in tensors.values():
        for name in (t.name, *t.aliases):
            prefix, _, leaf = name.rpartition(".")
            prefixes.setdefault(prefix, set()).add(leaf)
    layers = {}
    for index, node in enumerate(graph.nodes):
        recognize = _RECOGNIZERS.get(node.op)
        owned = [n for n in node.inputs if n in tensors]
        activations = [n for n in node.inputs if n is not None and n not in tensors]
        if recognize is None or not owned or len(activations) != 1:
            continue
        if any(uses[n] != 1 or tensors[n].aliases for n in owned):
            continue
        paths = {tensors[n].name.rpartition(".")[0] for n in owned}
        if len(paths) != 1 or "" in paths:
            continue
        (path,) = paths
        by_leaf = {tensors[n].name.rpartition(".")[2]: tensors[n] for n in owned}
        recognized = recognize(graph, node, by_leaf, prefixes[path])
        if recognized is not None:
            constructor, before, after = (recognized, "", "") if isinstance(recognized, str) else recognized
            values = frozenset(owned) | _extra(tensors, path, by_leaf)
            layers[index] = Layer(path, constructor, activations[0], values, before, after)
    return layers


def _extra(tensors: Mapping[str, TorchTensor], path: str, by_leaf: Mapping[str, TorchTensor]) -> frozenset[str]:
    """Tensors under ``path`` the layer owns without the node using them (num_batches_tracked)."""
    owned = {t.value for t in by_leaf.values()}
    return frozenset(t.value for t in tensors.values() if t.name.rpartition(".")[0] == path and t.value not in owned)


def _dtype(t: TorchTensor) -> str:
    return "" if t.dtype == "float32" else f", dtype=torch.{t.dtype}"


def _linear(graph: Graph, node: Node, leaves: Mapping[str, TorchTensor], present: set[str]):
    weight, bias = leaves.get("weight"), leaves.get("bias")
    if weight is None or weight.perm != (1, 0) or present != set(leaves) or len(node.inputs) < 2:
        return None
    if node.inputs[1] != weight.value:
        return None
    out_features, in_features = weight.shape
    return f"nn.Linear({in_features}, {out_features}{'' if bias else ', bias=False'}{_dtype(weight)})"


def _conv(graph: Graph, node: Node, leaves: Mapping[str, TorchTensor], present: set[str]):
    weight, bias = leaves.get("weight"), leaves.get("bias")
    a = node.attrs
    rank = len(a["strides"])
    if weight is None or present != set(leaves) or not 1 <= rank <= 3:
        return None
    channels_last = a.get("channels_last", False)
    if channels_last and graph.types[node.inputs[0]].rank != rank + 2:
        return None  # leading axes besides the batch: the lowering moves the channels itself
    if node.inputs[1] != weight.value or weight.perm != (*range(2, rank + 2), 1, 0):
        return None
    if any(lo != hi for lo, hi in a["padding"]):
        return None
    out_channels, per_group, *kernel = weight.shape
    groups = a.get("groups", 1)
    options = [f"{per_group * groups}", f"{out_channels}", _compact(tuple(kernel))]
    for key, value, default in (
        ("stride", tuple(a["strides"]), 1),
        ("padding", tuple(lo for lo, _ in a["padding"]), 0),
        ("dilation", tuple(a["dilation"]), 1),
    ):
        if any(v != default for v in value):
            options.append(f"{key}={_compact(value)}")
    if groups != 1:
        options.append(f"groups={groups}")
    if bias is None:
        options.append("bias=False")
    constructor = f"nn.Conv{rank}d({', '.join(options)}{_dtype(weight)})"
    if not channels_last:
        return constructor
    first = (0, rank + 1, *range(1, rank + 1))  # NHWC -> NCHW
    last = (0, *range(2, rank + 2), 1)  # NCHW -> NHWC
    return constructor, f".permute{first}", f".permute{last}"


def _layer_norm(graph: Graph, node: Node, leaves: Mapping[str, TorchTensor], present: set[str]):
    weight, bias = leaves.get("weight"), leaves.get("bias")
    rank = graph.types[node.inputs[0]].rank
    axes = tuple(sorted(a % rank for a in node.attrs["axes"]))
    if weight is None or present != set(leaves) or axes != tuple(range(rank - len(axes), rank)):
        return None
    if node.inputs[1] != weight.value or (bias is not None and node.inputs[2] != bias.value):
        return None
    shape = _compact(weight.shape)
    eps = node.attrs["epsilon"]
    return f"nn.LayerNorm({shape}, eps={eps!r}{'' if bias else ', bias=False'}{_dtype(weight)})"


def _embedding(graph: Graph, node: Node, leaves: Mapping[str, TorchTensor], present: set[str]):
    weight = leaves.get("weight")
    if weight is None or present != {"weight"} or weight.perm is not None or node.inputs[0] != weight.value:
        return None
    return f"nn.Embedding({weight.shape[0]}, {weight.shape[1]}{_dtype(weight)})"


def _batch_norm(graph: Graph, node: Node, leaves: Mapping[str, TorchTensor], present: set[str]):
    wanted = {"weight", "bias", "running_mean", "running_var"}
    rank = graph.types[node.inputs[0]].rank
    if set(leaves) != wanted or present != wanted | {"num_batches_tracked"} or node.attrs.get("axis", 1) != 1:
        return None
    if node.attrs.get("return_stats") or not 2 <= rank <= 5:
        return None
    dim = {2: 1, 3: 1, 4: 2, 5: 3}[rank]
    features = leaves["weight"].shape[0]
    return f"nn.BatchNorm{dim}d({features}, eps={node.attrs['epsilon']!r}{_dtype(leaves['weight'])})"


def _compact(values: tuple) -> str:
    """``3`` for ``(3, 3)``, else the tuple."""
    if values and all(v == values[0] for v in values):
        return str(values[0])
    return repr(values)


_RECOGNIZERS: dict[str, Callable] = {
    "dense": _linear,
    "conv": _conv,
    "layer_norm": _layer_norm,
    "batch_norm": _batch_norm,
    "embedding": _embedding,
}
