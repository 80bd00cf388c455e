"""A graph's nodes run one at a time by their torch lowerings: the checker's ``locate`` for torch outputs.

Each node's lowering (``backends/torch_ops``, the function the generated
module calls, or copies) runs on the JAX values of the node's inputs, so a
node is judged alone, without the error of the nodes before it. Inputs take
the dtypes the graph declares (JAX runs int64 as int32 unless x64 is on;
torch indexes with int64). Nodes the generated module writes as ``nn``
layers run by their lowering too: ``torch_layers`` picks a layer only where
it computes exactly what the lowering does.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import torch

from unigraph.backends.torch_ops import LOWERINGS
from unigraph.converted import Converted
from unigraph.dtypes import numpy_dtype
from unigraph.errors import LoweringError
from unigraph.frontends.torch_tensors import from_numpy, to_numpy
from unigraph.interpreter import bind_symbols
from unigraph.ir import Node
from unigraph.ops import REGISTRY


def lowered_values(conv: Converted, variables: Mapping, inputs: Sequence, values: Mapping) -> Iterator[tuple[Node, tuple | Exception]]:
    """Per node, in order: its torch outputs as NumPy arrays, or the error its lowering raised.

    ``values`` holds the JAX value of every graph value (``interpreter.run``
    with ``collect=True``); ``variables`` are already among them.
    """
    del variables  # the nodes read them from ``values``, as JAX ran them
    graph = conv.graph
    symbols = bind_symbols(graph, [tuple(np.shape(x)) for x in inputs])
    for node in graph.nodes:
        try:
            args = [None if n is None else from_numpy(np.asarray(values[n]).astype(numpy_dtype(graph.types[n].dtype))) for n in node.inputs]
            with torch.no_grad():
                result = LOWERINGS[node.op](*args, **REGISTRY[node.op].resolve(node.attrs, symbols))
        except Exception as e:  # a lowering can fail in any way: that is the divergence
            yield node, LoweringError(f"the torch lowering failed: {type(e).__name__}: {e}")
            continue
        results = tuple(result) if isinstance(result, (tuple, list)) else (result,)
        yield node, tuple(to_numpy(r) for r in results)
