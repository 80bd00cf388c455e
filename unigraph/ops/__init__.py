"""The unigraph op set, one module per family; importing this package registers every op."""

from unigraph.ops.registry import REGISTRY, DType, OpDef, SymDim, SymShape, op

from unigraph.ops import elementwise, linalg  # noqa: E402,F401  (registers ops)

__all__ = ["REGISTRY", "DType", "OpDef", "SymDim", "SymShape", "op"]
