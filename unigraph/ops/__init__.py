"""The unigraph op set, one module per family; importing this package registers every op."""

from unigraph.ops.registry import REGISTRY, DType, OpDef, SymDim, SymShape, op

from unigraph.ops import (  # noqa: E402,F401  (importing registers the ops)
    attention,
    conv,
    creation,
    elementwise,
    index,
    linalg,
    norm,
    pool,
    recurrent,
    reduce,
    resize,
    shape,
)

__all__ = ["REGISTRY", "DType", "OpDef", "SymDim", "SymShape", "op"]
