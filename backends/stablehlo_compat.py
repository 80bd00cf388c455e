"""The StableHLO inside a SavedModel, rewritten into what the installed TensorFlow reads.

jax serializes the StableHLO of an ``XlaCallModule`` op at the version it
deems four weeks old (StableHLO 1.15 for jax 0.10), and lowers some
primitives to StableHLO *composites* (``lax.top_k`` becomes the composite
``chlo.top_k``, whose ``vhlo.composite_v2`` encoding is newer still).
TensorFlow's ``XlaCallModule`` reads only the StableHLO it was built with
(1.13.7 in TensorFlow 2.21): a module from jax then fails when the signature
is first called (``unregistered operation 'vhlo.composite_v2'``), and even
re-encoded, a composite keeps TensorFlow from refining the shapes of its
decomposition when the model has dynamic dimensions (``'stablehlo.sort' op
has dynamic shapes``).

So every module of a written SavedModel is rewritten before it is used:
each composite becomes a plain call of its decomposition (the function that
defines it, which any StableHLO consumer runs), and the module is serialized
at the version of the StableHLO that the installed TensorFlow was built with.
This covers every op that lowers to a composite, now or after a jax upgrade;
a module that needs a feature the older version lacks fails to serialize,
naming the op.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

from unigraph.native_order import before_tensorflow

before_tensorflow()

import tensorflow as tf  # noqa: E402
from jax.extend import mlir as jax_mlir  # noqa: E402
from jax.extend.mlir import ir  # noqa: E402
from jax.extend.mlir.dialects import func, stablehlo  # noqa: E402
from jax.interpreters.mlir import make_ir_context  # noqa: E402
from tensorflow.compiler.mlir.stablehlo import stablehlo as tf_stablehlo  # noqa: E402
from tensorflow.core.protobuf import saved_model_pb2  # noqa: E402
from tensorflow.python.saved_model import fingerprinting_utils  # noqa: E402

from unigraph.errors import LoweringError, first_line  # noqa: E402

#: The op that holds a jax2tf module, and its attribute with the serialized StableHLO.
XLA_CALL_MODULE, MODULE_ATTR = "XlaCallModule", "module"


def tensorflow_version() -> str:
    """The StableHLO version the installed TensorFlow reads (and writes): ``"1.13.7"`` for 2.21."""
    return tf_stablehlo.get_current_version()


def target_version() -> str:
    """The version modules are written at: TensorFlow's, or jax's own when that is older."""
    return min(stablehlo.get_current_version(), tensorflow_version(), key=_version_key)


def rewrite_savedmodel(directory: str | os.PathLike) -> int:
    """Rewrites the modules of the SavedModel at ``directory`` (see the module docstring); returns how many.

    ``saved_model.pb`` is rewritten in place and its fingerprint
    (``fingerprint.pb``, a hash of it) written again. ``LoweringError`` if a
    module cannot be written at TensorFlow's version.
    """
    path = Path(directory) / "saved_model.pb"
    saved = saved_model_pb2.SavedModel.FromString(path.read_bytes())
    version = target_version()
    attrs = list(_module_attrs(saved))
    with make_ir_context():
        for attr in attrs:
            attr.s = _rewrite(attr.s, version)
    if attrs:
        path.write_bytes(saved.SerializeToString())
        fingerprinting_utils.write_fingerprint(str(directory))
    return len(attrs)


def locations(directory: str | os.PathLike, name: str) -> list[str]:
    """The source locations (as MLIR prints them) of the ops in the SavedModel's StableHLO that are named
    ``name`` (``stablehlo.sort``) or call the custom call target ``name`` (``lapack_ssyevd_ffi``), each
    followed by those of the calls that lead to the function it is in, nearest first: jax puts a
    primitive's custom call in functions of their own (``eigvalsh`` calls ``eigh``), whose ops may carry
    only the primitive's name."""
    saved = saved_model_pb2.SavedModel.FromString((Path(directory) / "saved_model.pb").read_bytes())
    found, calls = [], {}

    def visit(op):
        if op.name == "func.call":
            callee = ir.FlatSymbolRefAttr(op.attributes["callee"]).value
            calls.setdefault(callee, []).append((str(op.location), _function(op)))
        target = op.attributes["call_target_name"] if "call_target_name" in op.attributes else None
        if op.name == name or (target is not None and ir.StringAttr(target).value == name):
            found.append((str(op.location), _function(op)))
        return ir.WalkResult.ADVANCE

    with make_ir_context():
        for attr in _module_attrs(saved):
            jax_mlir.deserialize_portable_artifact(attr.s).operation.walk(visit)
    result = []
    for location, function in found:
        result.append(location)
        callers, seen = [function], {function}
        while callers:  # breadth first: the nearest calls first
            callee = callers.pop(0)
            for where, caller in calls.get(callee, ()):
                result.append(where)
                if caller not in seen:
                    seen.add(caller)
                    callers.append(caller)
    return result


def _function(op) -> str:
    """The name of the function an op is in."""
    while op.name != "func.func":
        op = op.parent
    return ir.StringAttr(op.attributes["sym_name"]).value


def _module_attrs(saved) -> Iterator:
    """The ``module`` attribute of every ``XlaCallModule`` op of a SavedModel proto (forward and gradient)."""
    for meta_graph in saved.meta_graphs:
        graph = meta_graph.graph_def
        for nodes in (graph.node, *(f.node_def for f in graph.library.function)):
            yield from (node.attr[MODULE_ATTR] for node in nodes if node.op == XLA_CALL_MODULE)


def _rewrite(serialized: bytes, version: str) -> bytes:
    module = jax_mlir.deserialize_portable_artifact(serialized)
    for op in _composites(module):
        with ir.InsertionPoint(op), op.location:
            call = func.CallOp([r.type for r in op.results], op.attributes["decomposition"], list(op.operands))
        for old, new in zip(op.results, call.results):
            old.replace_all_uses_with(new)
        op.erase()
    try:  # mixed serialization, as jax writes it: ops of other dialects (Shardy's) kept as they are
        return jax_mlir.serialize_portable_artifact(module, version, True)
    except RuntimeError as error:  # jax.errors.JaxRuntimeError, its MLIR error on a later line
        said = re.search(r"error: ([^\n]+)", str(error))
        raise LoweringError(
            f"the model's StableHLO cannot be written at version {version}, the one TensorFlow "
            f"{tf.__version__} reads: {said.group(1) if said else first_line(error)}"
        ) from error


def _composites(module) -> list:
    found = []

    def visit(op):
        if op.name == "stablehlo.composite":
            found.append(op)
        return ir.WalkResult.ADVANCE

    module.operation.walk(visit)
    return found


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))
