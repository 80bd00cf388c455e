"""Nodes a converted Keras model runs as Keras's own layers: ``Dense``, ``ConvND``, norms, ``Embedding``, pools.

A node becomes a Keras layer when its parameters are exactly that layer's:
variables (not computed tensors) of one source module, all of that module's
variables the graph reads (torch's ``num_batches_tracked`` is read by none),
used by this node alone (a tied embedding stays an op on a
``Weights`` layer), float32, and attributes the layer expresses. Anything else
stays an ``Op`` layer running the op's Keras lowering, which is always right.
Pools have no parameters: an unpadded max or average pool is a Keras pooling
layer named after the source module that ran it.

Layouts: Flax kernels are Keras's (``Dense`` ``(in, out)``, ``ConvND``
``(*k, in/groups, out)``); a depthwise kernel ``(*k, 1, C*M)`` is reshaped to
Keras's ``(*k, C, M)``. Keras runs convolutions channels-last (TensorFlow's CPU
kernels have no channels-first ones), so a channels-first convolution is
called between two ``Permute`` layers; explicit padding that Keras's
``"same"`` does not express becomes a ``ZeroPaddingND`` layer before it. Norms
take any channel axis and need no permutes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from unigraph.converted import Converted
from unigraph.ir import Graph, Node

#: (suffix, Keras layer class, config): a layer called around the native one ("nhwc", "Permute", {...}).
Around = tuple[str, str, Mapping[str, Any]]


@dataclasses.dataclass(frozen=True)
class Native:
    module: str  # the source module that holds the parameters: "layer1_0_conv1"
    kind: str  # the keras.layers class
    config: Mapping[str, Any]
    input: str  # the activation it is called on
    weights: tuple[tuple[str, str, Callable[[Any], Any]], ...]  # (Keras weight name, graph value, layout transform)
    before: tuple[Around, ...] = ()
    after: tuple[Around, ...] = ()


def find_native(conv: Converted) -> dict[int, Native]:
    """Node index → the Keras layer that runs it."""
    graph = conv.graph
    uses: dict[str, int] = {}
    for node in graph.nodes:
        for name in node.inputs:
            if name in graph.variables:
                uses[name] = uses.get(name, 0) + 1
    modules: dict[tuple[str, ...], set[str]] = {}
    for value in uses:
        modules.setdefault(graph.variables[value].path[:-1], set()).add(value)
    torch_origin = conv.metadata.get("source_framework") == "torch"
    found = {}
    for index, node in enumerate(graph.nodes):
        pool = _POOLS.get(node.op)
        native = pool(graph, node) if pool is not None else None
        if native is not None:
            found[index] = dataclasses.replace(native, module=node.source.module.replace(".", "_").replace("/", "_") or node.op)
            continue
        recognize = _RECOGNIZERS.get(node.op)
        owned = {n for n in node.inputs if n in graph.variables}
        if recognize is None or not owned or len(node.outputs) != 1:
            continue
        paths = {graph.variables[n].path[:-1] for n in owned}
        if len(paths) != 1 or () in paths or modules[next(iter(paths))] != owned:
            continue
        if any(uses[n] != 1 or graph.types[n].dtype != "float32" for n in owned):
            continue
        native = recognize(graph, node, torch_origin)
        if native is not None:
            found[index] = dataclasses.replace(native, module="_".join(next(iter(paths))))
    return found


def _same(array):
    return array


def _parameters(graph: Graph, node: Node, count: int) -> list[str | None] | None:
    """The ``count`` inputs after the activation, each a variable or absent; None if one is computed.

    A computed parameter (a weight-normalized kernel) cannot be a Keras layer's weight.
    """
    values = [*node.inputs[1 : 1 + count], *[None] * (1 + count - len(node.inputs))]
    if any(v is not None and v not in graph.variables for v in values):
        return None
    return values


def _float_activation(graph: Graph, value: str) -> bool:
    return value not in graph.variables and graph.types[value].dtype == "float32"


def _dense(graph: Graph, node: Node, torch_origin: bool) -> Native | None:
    x, params = node.inputs[0], _parameters(graph, node, 2)
    if params is None or params[0] is None or not _float_activation(graph, x):
        return None
    kernel, bias = params
    weights = [("kernel", kernel, _same)] + ([("bias", bias, _same)] if bias else [])
    config = {"units": graph.types[kernel].shape[1], "use_bias": bias is not None}
    return Native("", "Dense", config, x, tuple(weights))


def _conv(graph: Graph, node: Node, torch_origin: bool) -> Native | None:
    x, params = node.inputs[0], _parameters(graph, node, 2)
    a = node.attrs
    n = len(a["strides"])
    if params is None or params[0] is None or not _float_activation(graph, x):
        return None
    kernel, bias = params
    if not 1 <= n <= 3 or graph.types[x].rank != n + 2:
        return None  # unbatched, or leading axes besides the batch: the lowering handles those
    strides, dilation, groups = tuple(a["strides"]), tuple(a["dilation"]), a.get("groups", 1)
    if any(s > 1 for s in strides) and any(d > 1 for d in dilation):
        return None  # TensorFlow runs no such convolution; the lowering subsamples
    if any(lo < 0 or hi < 0 for lo, hi in a["padding"]):
        return None
    *window, per_group, out = graph.types[kernel].shape
    padding, pads = _padding(tuple(a["padding"]), tuple(window), strides, dilation)
    common = {"strides": list(strides), "padding": padding, "data_format": "channels_last", "dilation_rate": list(dilation), "use_bias": bias is not None}
    if groups > 1 and per_group == 1 and n <= 2:
        multiplier = out // groups
        config = {"kernel_size": list(window), "depth_multiplier": multiplier, **common}
        kind, kernel_layout = f"DepthwiseConv{n}D", _reshape((*window, groups, multiplier))
    else:
        config = {"filters": out, "kernel_size": list(window), "groups": groups, **common}
        kind, kernel_layout = f"Conv{n}D", _same
    weights = [("kernel", kernel, kernel_layout)] + ([("bias", bias, _same)] if bias else [])
    pad = [("pad", f"ZeroPadding{n}D", {"padding": pads[0] if n == 1 else pads, "data_format": "channels_last"})] if pads else []
    if a.get("channels_last", False):
        return Native("", kind, config, x, tuple(weights), tuple(pad))
    to_last, to_first = _permutes(n)
    return Native("", kind, config, x, tuple(weights), (to_last, *pad), (to_first,))


def _permutes(n: int) -> tuple[Around, Around]:
    """The ``Permute`` layers that move the channels of an ``n``-d activation last, and back first."""
    return ("nhwc", "Permute", {"dims": [*range(2, n + 2), 1]}), ("nchw", "Permute", {"dims": [n + 1, *range(1, n + 1)]})


def _padding(pairs, window, strides, dilation):
    """Keras's ``padding`` for explicit ``(lo, hi)`` pairs, and the ``ZeroPaddingND`` amounts it leaves."""
    if all(pair == (0, 0) for pair in pairs):
        return "valid", ()
    totals = [d * (k - 1) for k, d in zip(window, dilation)]
    if all(s == 1 for s in strides) and all(pair == (t // 2, t - t // 2) for pair, t in zip(pairs, totals)):
        return "same", ()
    return "valid", [list(pair) for pair in pairs]


def _reshape(shape):
    def reshape(array):
        return np.reshape(np.asarray(array), shape)

    return reshape


def _batch_norm(graph: Graph, node: Node, torch_origin: bool) -> Native | None:
    params = _parameters(graph, node, 4)
    a = node.attrs
    if params is None or a.get("return_stats") or not _float_activation(graph, node.inputs[0]):
        return None
    roles = dict(zip(("scale", "bias", "mean", "var"), params))
    if roles["mean"] is None or roles["var"] is None:
        return None  # the batch's own statistics: batch norm as traced in training mode
    config = {
        "axis": a.get("axis", 1),
        "epsilon": a["epsilon"],
        "momentum": 0.9 if torch_origin else 0.99,  # torch's momentum=0.1 is Keras's 0.9
        "center": roles["bias"] is not None,
        "scale": roles["scale"] is not None,
    }
    keras_names = {"scale": "gamma", "bias": "beta", "mean": "moving_mean", "var": "moving_variance"}
    weights = tuple((keras_names[role], value, _same) for role, value in roles.items() if value is not None)
    return Native("", "BatchNormalization", config, node.inputs[0], weights)


def _layer_norm(graph: Graph, node: Node, torch_origin: bool) -> Native | None:
    x, params, a = node.inputs[0], _parameters(graph, node, 2), node.attrs
    if params is None or a.get("return_stats") or not _float_activation(graph, x):
        return None
    scale, bias = params
    rank = graph.types[x].rank
    axes = sorted(axis % rank - rank for axis in a["axes"])
    config = {"axis": axes[0] if len(axes) == 1 else axes, "epsilon": a["epsilon"], "center": bias is not None, "scale": scale is not None}
    weights = [("gamma", scale, _same)] * (scale is not None) + [("beta", bias, _same)] * (bias is not None)
    return Native("", "LayerNormalization", config, x, tuple(weights))


def _group_norm(graph: Graph, node: Node, torch_origin: bool) -> Native | None:
    x, params, a = node.inputs[0], _parameters(graph, node, 2), node.attrs
    if params is None or a.get("return_stats") or not _float_activation(graph, x):
        return None
    scale, bias = params
    axis = -1 if a.get("channels_last", False) else 1
    config = {"groups": a["groups"], "axis": axis, "epsilon": a["epsilon"], "center": bias is not None, "scale": scale is not None}
    weights = [("gamma", scale, _same)] * (scale is not None) + [("beta", bias, _same)] * (bias is not None)
    return Native("", "GroupNormalization", config, x, tuple(weights))


def _embedding(graph: Graph, node: Node, torch_origin: bool) -> Native | None:
    table, ids = node.inputs
    if table not in graph.variables or ids in graph.variables:
        return None
    vocabulary, width = graph.types[table].shape
    return Native("", "Embedding", {"input_dim": vocabulary, "output_dim": width}, ids, (("embeddings", table, _same),))


def _pool(graph: Graph, node: Node) -> Native | None:
    """``MaxPoolingND``/``AveragePoolingND`` for unpadded windows; a padded max pool pads with -inf, which no
    Keras layer does, and stays an op."""
    a, x = node.attrs, node.inputs[0]
    n = len(a["window"])
    if not 1 <= n <= 3 or graph.types[x].rank != n + 2 or not _float_activation(graph, x):
        return None
    if any(pair != (0, 0) for pair in a["padding"]) or a.get("ceil_mode") or a.get("return_indices"):
        return None
    if any(d != 1 for d in a.get("dilation", ())) or a.get("divisor_override") is not None:
        return None
    kind = f"MaxPooling{n}D" if node.op == "max_pool" else f"AveragePooling{n}D"
    config = {"pool_size": list(a["window"]), "strides": list(a["strides"]), "padding": "valid", "data_format": "channels_last"}
    if a.get("channels_last", False):
        return Native("", kind, config, x, ())
    to_last, to_first = _permutes(n)
    return Native("", kind, config, x, (), (to_last,), (to_first,))


def _global_average(graph: Graph, node: Node) -> Native | None:
    """``GlobalAveragePoolingND`` for an adaptive average pool to one position (a reduction: either layout runs)."""
    a, x = node.attrs, node.inputs[0]
    n = len(a["output_size"])
    if any(size != 1 for size in a["output_size"]) or not 1 <= n <= 3 or graph.types[x].rank != n + 2:
        return None
    if not _float_activation(graph, x):
        return None
    layout = "channels_last" if a.get("channels_last", False) else "channels_first"
    return Native("", f"GlobalAveragePooling{n}D", {"data_format": layout, "keepdims": True}, x, ())


_POOLS: dict[str, Callable[[Graph, Node], Native | None]] = {
    "max_pool": _pool,
    "avg_pool": _pool,
    "adaptive_avg_pool": _global_average,
}

_RECOGNIZERS: dict[str, Callable[[Graph, Node, bool], Native | None]] = {
    "dense": _dense,
    "conv": _conv,
    "batch_norm": _batch_norm,
    "layer_norm": _layer_norm,
    "group_norm": _group_norm,
    "embedding": _embedding,
}
