"""PyTorch frontend: any model ``torch.export`` can trace, translated op by op.

The model is exported (the batch dimension dynamic by default), and every
ATen op is translated by a handler in ``frontends/torch_ops``. A program with
ops without a handler, or with in-place writes that matter, is made
functional and decomposed with torch's own decompositions until only handled
ops remain; what still has no handler is
reported all at once, with source lines, before anything is translated.
``torch.cond`` is translated by the driver: its branches are subgraphs,
translated in place (see ``_cond``).
"""

from __future__ import annotations

import dataclasses
import os
import re
import traceback
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import sympy
import torch
import torch.fx
from torch.export import Dim, ExportedProgram
from torch.export.graph_signature import InputKind, OutputKind
from torch.utils import _pytree as pytree

from unigraph.frontends.builder import short_path
from unigraph.frontends.torch_ops import Builder, SourceTensor, TensorRef, handler_for
from unigraph.frontends.torch_ops.common import dtype_name
from unigraph.frontends.torch_symbolic import SymbolNames
from unigraph.frontends.torch_tensors import as_tensor, to_numpy
import unigraph
from unigraph import dims, tree
from unigraph.converted import Converted
from unigraph.errors import ExportError, TranslationError, UnsupportedOp, UnsupportedOpError, first_line
from unigraph.ir import Source, TensorType
from unigraph.native_order import triton_blocked

#: ``torch.cond`` in an exported program; the driver translates it (its branches are subgraphs).
_COND = torch.ops.higher_order.cond

#: ``dynamic_shapes`` default: dimension 0 of every tensor input is one dynamic "batch".
BATCH = "batch"

_TORCH_DIR = os.path.dirname(torch.__file__)
_OWN_DIRS = (os.path.dirname(os.path.abspath(__file__)), os.path.dirname(os.path.abspath(unigraph.__file__)))


@dataclasses.dataclass
class TorchTrace:
    """What the checker needs to compare a conversion with torch node by node."""

    program: ExportedProgram
    origins: dict[str, str]  # unigraph value name -> fx node name


@triton_blocked()  # torch.export imports torch._dynamo, which imports triton: see unigraph.native_order
def from_torch(
    model: torch.nn.Module | ExportedProgram,
    args: Sequence = (),
    kwargs: Mapping | None = None,
    *,
    dynamic_shapes: Any = BATCH,
    strict: bool = False,
) -> Converted:
    """Converts a PyTorch model (or an ``ExportedProgram``) into a unigraph ``Converted``.

    ``dynamic_shapes`` follows ``torch.export``'s conventions; the default
    makes dimension 0 of every tensor input one dynamic ``batch`` (falling back
    to whatever torch can keep dynamic), ``None`` traces fully static shapes.
    """
    kwargs = dict(kwargs or {})
    if not isinstance(args, (tuple, list)):
        args = (args,)
    if isinstance(model, ExportedProgram):
        program, names = model, []
    else:
        model = model.eval()
        program, names = export(model, tuple(args), kwargs, dynamic_shapes, strict)
    program = decompose(program)
    missing = unsupported_ops(program)
    if missing:
        raise UnsupportedOpError(missing, framework="the PyTorch")
    aliases = _aliases(model) if isinstance(model, torch.nn.Module) else {}
    graph, variables, param_map, origins = translate(program, names, aliases)
    metadata = {
        "source_framework": "torch",
        "source_version": torch.__version__,
        "source_model": type(model).__name__,
    }
    versions = _module_versions(model) if isinstance(model, torch.nn.Module) else {}
    if versions:
        metadata["torch_module_versions"] = versions
    return Converted(graph, variables, param_map, metadata, trace=TorchTrace(program, origins))


# ---- export --------------------------------------------------------------------------------


def export(model, args, kwargs, dynamic_shapes, strict) -> tuple[ExportedProgram, list[dict]]:
    """``torch.export.export`` with readable errors.

    Returns the program and, for each flattened input, the names the caller
    gave its dynamic dimensions (``{0: "batch"}``), to name symbols after.
    """
    with torch.no_grad():
        if isinstance(dynamic_shapes, str) and dynamic_shapes == BATCH:
            program = _export_batch_dynamic(model, args, kwargs, strict)
            return program, [{0: BATCH} for _ in pytree.tree_leaves((args, kwargs))]
        program = _export(model, args, kwargs, dynamic_shapes, strict)
        return program, _axis_names(model, args, kwargs, dynamic_shapes)


def _export_batch_dynamic(model, args, kwargs, strict):
    """Exports with dimension 0 dynamic as one ``batch``; where torch cannot, as much as it can.

    The batch size is dimension 0 of the first tensor input; every tensor
    input whose dimension 0 has that size shares the ``batch`` dimension. An
    example batch of 1 is repeated to 2 for tracing, since torch.export
    specializes size-1 dimensions. If torch cannot keep one shared batch, each
    input keeps what torch can leave dynamic (``Dim.AUTO``), with a warning.
    """
    tensors = [t for t in pytree.tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor) and t.ndim]
    if not tensors:
        return _export(model, args, kwargs, None, strict)
    size = tensors[0].shape[0]
    if size == 1:
        args, kwargs = pytree.tree_map_only(
            torch.Tensor, lambda t: torch.cat([t, t]) if t.ndim and t.shape[0] == 1 else t, (args, kwargs)
        )
        size = 2
    batch = Dim(BATCH)
    shared = _batch_spec(model, args, kwargs, size, lambda: batch)
    if shared is None:
        warnings.warn(
            f"{type(model).__name__}: the batch dimension stays static: the example inputs do not bind to "
            "forward()'s parameters, so dynamic_shapes cannot name them. Pass dynamic_shapes yourself.",
            stacklevel=3,
        )
        return _export(model, args, kwargs, None, strict)
    try:
        return _export(model, args, kwargs, shared, strict, quiet=True)
    except _Specialized as e:
        reason = e.reason
    program = _export(model, args, kwargs, _batch_spec(model, args, kwargs, size, lambda: Dim.AUTO), strict)
    warnings.warn(
        f"{type(model).__name__}: the batch dimension could not be one shared dynamic "
        f"dimension ({reason}); each input keeps whatever torch.export could leave dynamic. "
        "Pass dynamic_shapes=None for a static model.",
        stacklevel=3,
    )
    return program


def _batch_spec(model, args, kwargs, size: int, make_dim):
    """``dynamic_shapes`` keyed by forward()'s parameter names: dim 0 dynamic where it is ``size``."""
    import inspect

    def leaf(x):
        batched = isinstance(x, torch.Tensor) and x.ndim >= 1 and x.shape[0] == size
        return {0: make_dim()} if batched else None

    try:
        bound = inspect.signature(model.forward).bind(*args, **kwargs).arguments
    except TypeError:
        return None
    return {name: pytree.tree_map(leaf, value, is_leaf=lambda x: x is None) for name, value in bound.items()}


class _Specialized(Exception):
    def __init__(self, reason: str):
        self.reason = reason


@triton_blocked()
def _export(model, args, kwargs, dynamic_shapes, strict, quiet=False) -> ExportedProgram:
    try:
        with warnings.catch_warnings():
            # nn.LSTM/GRU re-assign their flattened weights while traced; harmless here
            warnings.filterwarnings("ignore", message=".*_flat_weights.*")
            return torch.export.export(model, args, kwargs, dynamic_shapes=dynamic_shapes, strict=strict)
    except Exception as e:  # torch raises many unrelated types; each is explained below
        text = str(e)
        if quiet and isinstance(e, torch._dynamo.exc.UserError):  # the dynamic shapes do not hold
            raise _Specialized(first_line(text)) from e
        raise ExportError(_explain_export_failure(model, e, strict)) from e


def _explain_export_failure(model, error: Exception, strict: bool) -> str:
    text = str(error).strip()
    lines = text.splitlines()
    summary = "\n".join(f"    {line}" for line in lines[:12])
    if len(lines) > 12:
        summary += f"\n    … ({len(lines) - 12} more lines)"
    where = _user_frame(error) or _forward_location(model)
    hints = []
    name = type(error).__name__
    if "data-dependent" in text or "DataDependent" in name:
        hints.append(
            "the model branches on or sizes tensors by their values; rewrite that code with "
            "torch.where / torch.cond, or use torch._check(...) to tell export the range"
        )
    if "specialized" in text or "Constraints violated" in text:
        hints.append(
            "a dimension marked dynamic is fixed by the model's code: pass dynamic_shapes=None "
            "(static shapes), or mark only the dimensions that really vary"
        )
    if "cache_utils" in text or "Cache" in text and "pytree" in text:
        hints.append("for Hugging Face models, pass use_cache=False (or set model.config.use_cache = False)")
    if strict:
        hints.append("try strict=False (non-strict export traces plain Python)")
    hints.append(
        "torch.export's own guidance: https://pytorch.org/docs/stable/export.html "
        "(torch.export.draft_export(model, args) reports every problem at once)"
    )
    return (
        f"torch.export could not trace {type(model).__name__}: {name}\n{summary}\n"
        f"  at {where}\n"
        "What to try:\n" + "\n".join(f"  - {h}" for h in hints)
    )


def _user_frame(error: Exception) -> str | None:
    """The innermost traceback frame outside torch and unigraph, as file:line."""
    frames = traceback.extract_tb(error.__traceback__)
    outside = [
        f for f in frames if not f.filename.startswith((_TORCH_DIR, *_OWN_DIRS))
    ]
    if not outside:
        return None
    frame = outside[-1]
    code = f": {frame.line.strip()}" if frame.line else ""
    return f"{frame.filename}:{frame.lineno} in {frame.name}{code}"


def _forward_location(model) -> str:
    import inspect

    try:
        forward = type(model).forward
        return f"{inspect.getsourcefile(forward)}:{inspect.getsourcelines(forward)[1]} ({type(model).__name__}.forward)"
    except (TypeError, OSError):
        return f"{type(model).__name__}.forward"


def _axis_names(model, args, kwargs, dynamic_shapes) -> list[dict]:
    """For each flattened input, ``{axis: name}`` of the named ``Dim``s covering it."""
    leaves = pytree.tree_leaves((args, kwargs))
    if dynamic_shapes is None:
        return [{} for _ in leaves]
    import inspect

    try:
        bound = inspect.signature(model.forward).bind(*args, **kwargs).arguments
    except (TypeError, ValueError):
        return [{} for _ in leaves]
    if isinstance(dynamic_shapes, Mapping):
        pairs = [(bound[k], v) for k, v in dynamic_shapes.items() if k in bound]
    else:
        pairs = list(zip(bound.values(), dynamic_shapes))
    named: dict[int, dict] = {}
    for value, spec in pairs:
        _collect_axis_names(value, spec, named)
    return [named.get(id(leaf), {}) for leaf in leaves]


def _collect_axis_names(value, spec, named: dict) -> None:
    if isinstance(value, torch.Tensor):
        axes = spec.items() if isinstance(spec, Mapping) else enumerate(spec or ())
        named[id(value)] = {
            axis: d.__name__ for axis, d in axes if isinstance(getattr(d, "__name__", None), str)
        }
    elif isinstance(value, Mapping) and isinstance(spec, Mapping):
        for key, item in value.items():
            _collect_axis_names(item, spec.get(key), named)
    elif isinstance(value, (list, tuple)) and isinstance(spec, (list, tuple)):
        for item, sub in zip(value, spec):
            _collect_axis_names(item, sub, named)


# ---- decomposition -------------------------------------------------------------------------


def decompose(program: ExportedProgram) -> ExportedProgram:
    """A program whose ops all have handlers, where torch can decompose them.

    A program that translates as it is (see ``translatable_as_is``) is
    returned unchanged: decomposing it retraces the whole model, which costs
    more than exporting it. Otherwise torch makes it functional and decomposes
    the ops without handlers.
    """
    if translatable_as_is(program):
        return program
    program = program.run_decompositions({})
    table = torch.export.default_decompositions()
    for _ in range(8):
        wanted = {}
        for target in _targets_without_handler(program):
            try:
                wanted[target] = table[target]
            except KeyError:
                decomposition = torch._decomp.decomposition_table.get(target)
                if decomposition is not None:
                    wanted[target] = decomposition
        if not wanted:
            break
        program = program.run_decompositions(wanted)
    return program


def translatable_as_is(program: ExportedProgram) -> bool:
    """Whether translating ``program`` op by op, each op as its functional form, is exact.

    ``torch.export`` leaves in-place ops (``relu_``, ``add_``) in the program.
    Translated functionally, the result of an in-place op is a new value, so
    this holds when every op has a handler and every in-place op writes a
    tensor that nothing reads afterwards, either directly or through a view:
    a fresh result (not an input, parameter, buffer or view) whose other
    uses all come before the write. Anything else (writes to buffers or
    inputs, or to views) goes through torch's functionalization.
    """
    sig = program.graph_signature
    if any(s.kind != OutputKind.USER_OUTPUT for s in sig.output_specs):
        return False
    if any(s.kind in (InputKind.CUSTOM_OBJ, InputKind.TOKEN) for s in sig.input_specs):
        return False
    for graph in _graphs(program.graph_module):
        order = {node: i for i, node in enumerate(graph.nodes)}
        for node in graph.nodes:
            if node.op != "call_function" or not _needs_handler(node):
                continue
            if handler_for(node.target) is None or _updates_statistics(node):
                return False
            schema = getattr(node.target, "_schema", None)
            if schema is not None and schema.is_mutable and not _writes_dead_value(node, schema, order):
                return False
    return True


def _writes_dead_value(node: torch.fx.Node, schema, order: Mapping[torch.fx.Node, int]) -> bool:
    """Whether the in-place ``node`` writes only its first argument, a fresh tensor read by nothing after it."""
    written = [i for i, a in enumerate(schema.arguments) if a.alias_info is not None and a.alias_info.is_write]
    if written != [0] or not node.args:
        return False
    target = node.args[0]
    if not isinstance(target, torch.fx.Node) or not _fresh(target):
        return False
    return all(user is node or (order[user] < order[node] and not _aliasing(user)) for user in target.users)


def _fresh(node: torch.fx.Node) -> bool:
    """A tensor no other value shares: an op's new result, or the result of an in-place op
    (``translatable_as_is`` checks those in order, so an earlier write to it has been accepted)."""
    schema = getattr(node.target, "_schema", None)
    return node.op == "call_function" and schema is not None and (schema.is_mutable or not _aliasing(node))


def _aliasing(node: torch.fx.Node) -> bool:
    """Whether ``node``'s result may share memory with an argument (views; anything without an ATen schema)."""
    schema = getattr(node.target, "_schema", None)
    return node.op != "call_function" or schema is None or any(r.alias_info is not None for r in schema.returns)


#: Ops whose schema does not say that in training mode they update the running statistics they are given.
_STATISTICS_OPS = {"aten::batch_norm", "aten::instance_norm", "aten::native_batch_norm", "aten::_batch_norm_impl_index"}


def _updates_statistics(node: torch.fx.Node) -> bool:
    schema = getattr(node.target, "_schema", None)
    if schema is None or schema.name not in _STATISTICS_OPS:
        return False
    running_mean, training = (  # the same positions in each of these schemas
        node.args[i] if len(node.args) > i else node.kwargs.get(schema.arguments[i].name) for i in (3, 5)
    )
    return bool(training) and running_mean is not None


def _targets_without_handler(program: ExportedProgram) -> set:
    return {
        n.target
        for graph in _graphs(program.graph_module)
        for n in graph.nodes
        if n.op == "call_function" and _needs_handler(n) and handler_for(n.target) is None
    }


def _graphs(module: torch.fx.GraphModule):
    """The module's graph and the branch graphs of its ``torch.cond`` calls, nested ones included."""
    yield module.graph
    for node in module.graph.nodes:
        if node.op == "get_attr" and isinstance(sub := _submodule(module, node.target), torch.fx.GraphModule):
            yield from _graphs(sub)


def _submodule(module: torch.nn.Module, target: str):
    for part in target.split("."):
        module = getattr(module, part)
    return module


def _needs_handler(node: torch.fx.Node) -> bool:
    """Nodes computing sizes (SymInt arithmetic) and tuple access need none; the driver translates ``cond``."""
    import operator

    if node.target is operator.getitem or node.target is _COND:
        return False
    val = node.meta.get("val")
    return not isinstance(val, (torch.SymInt, torch.SymBool, torch.SymFloat, int, bool, float))


def unsupported_ops(program: ExportedProgram) -> list[UnsupportedOp]:
    """Every op of the program without a handler, with every place it is used."""
    found: dict[str, list[str]] = {}
    for node in (n for graph in _graphs(program.graph_module) for n in graph.nodes):
        if node.op == "call_function" and _needs_handler(node) and handler_for(node.target) is None:
            source = _source(node)
            found.setdefault(_op_name(node.target), []).append(source.location or source.module or node.name)
    for spec in program.graph_signature.input_specs:
        if spec.kind in (InputKind.CUSTOM_OBJ, InputKind.TOKEN):
            found.setdefault(f"input of kind {spec.kind.name}", []).append(spec.arg.name)
    return [UnsupportedOp(op, tuple(locs)) for op, locs in sorted(found.items())]


def _op_name(target) -> str:
    return str(target) if hasattr(target, "overloadpacket") else getattr(target, "__name__", str(target))


# ---- translation ---------------------------------------------------------------------------


def translate(program: ExportedProgram, axis_names: Sequence[dict], aliases: Mapping[str, tuple[str, ...]]):
    """The graph, variables, ParamMap and value origins of a decomposed program."""
    b = Builder()
    symbols = SymbolNames(b.scope)
    sig = program.graph_signature
    specs = {s.arg.name: s for s in sig.input_specs}
    user_inputs = [n for n in program.graph.nodes if n.op == "placeholder" and specs[n.name].kind == InputKind.USER_INPUT]
    _name_symbols(symbols, user_inputs, axis_names)

    env: dict[torch.fx.Node, Any] = {}
    origins: dict[str, str] = {}
    source_tensors: list[SourceTensor] = []
    by_name: dict[str, SourceTensor] = {}  # tied tensors: every name to one SourceTensor
    for node in program.graph.nodes:
        if node.op == "placeholder":
            spec = specs[node.name]
            if spec.kind == InputKind.USER_INPUT:
                val = node.meta.get("val")
                env[node] = b.input(node.name, _type(val, symbols)) if isinstance(val, torch.Tensor) else val
            else:
                st = by_name.get(spec.target) or _source_tensor(program, spec, aliases)
                if st.name not in by_name:
                    source_tensors.append(st)
                    by_name.update(dict.fromkeys((st.name, *st.aliases), st))
                env[node] = b.source_tensor(st)
        elif node.op == "get_attr":
            env[node] = _submodule(program.graph_module, node.target)
        elif node.op == "call_function":
            env[node] = _translate_node(b, node, env, symbols, origins)
        elif node.op == "output":
            outputs = _outputs(node, sig, env, b)
    for st in source_tensors:
        b.claim_unused(st)
    names = [b.value(t) if isinstance(t, TensorRef) else t for t in outputs]
    input_tree = _spec(program.call_spec.in_spec, iter(env[n] for n in user_inputs), b)
    output_tree = _spec(program.call_spec.out_spec, iter(outputs), b)
    graph = b.graph([n for n in names if isinstance(n, str)], input_tree, output_tree)
    return graph, b.variable_tree(), b.param_map(), origins


def _name_symbols(symbols: SymbolNames, user_inputs, axis_names: Sequence[dict]) -> None:
    import sympy

    for i, node in enumerate(user_inputs):
        val = node.meta.get("val")
        if not isinstance(val, torch.Tensor):
            continue
        names = axis_names[i] if i < len(axis_names) else {}
        for axis, d in enumerate(val.shape):
            if isinstance(d, torch.SymInt) and isinstance(d.node.expr, sympy.Symbol):
                default = BATCH if axis == 0 else f"{node.name}_{axis}"
                symbols.name(d.node.expr, names.get(axis, default))


def _type(val: torch.Tensor, symbols: SymbolNames) -> TensorType:
    return TensorType(tuple(symbols.dim(d) for d in val.shape), dtype_name(val.dtype))


def _source_tensor(program: ExportedProgram, spec, aliases) -> SourceTensor:
    if spec.kind == InputKind.PARAMETER:
        tensor, collection = program.state_dict[spec.target], "params"
    elif spec.kind == InputKind.BUFFER and spec.persistent:
        tensor, collection = program.state_dict[spec.target], "batch_stats"
    else:  # non-persistent buffers and lifted tensor constants
        tensor, collection = program.constants[spec.target], "constant"
    return SourceTensor(spec.target, collection, to_numpy(tensor), aliases.get(spec.target, ()))


def _translate_node(b: Builder, node: torch.fx.Node, env: dict, symbols: SymbolNames, origins: dict):
    import operator

    val = node.meta.get("val")
    if node.target is operator.getitem:
        container, index = node.args
        ref = env[container][index]
        if isinstance(ref, TensorRef) and ref.name is not None:
            origins[ref.name] = node.name  # the tensor itself, not the tuple (batch_norm's): what locate compares
        return ref
    if node.target is _COND:
        return _cond(b, node, env, symbols)
    if isinstance(val, (torch.SymInt, int)) and not isinstance(val, bool):
        return symbols.dim(val)
    if isinstance(val, (torch.SymBool, torch.SymFloat, bool, float)):
        return val
    handler = handler_for(node.target)
    b.source = _source(node)
    b.name_hint = node.name
    args = [_arg(a, env) for a in node.args]
    kwargs = {k: _arg(v, env) for k, v in node.kwargs.items()}
    try:
        result = handler(b, *args, **kwargs)
    except Exception as e:
        raise TranslationError(
            f"translating {_op_name(node.target)} ({b.source}) failed: {type(e).__name__}: {e}\n"
            f"  arguments: {_describe_args(args, kwargs)}"
        ) from e
    result = _reconcile(node, result, val, b, symbols)
    for ref in result if isinstance(result, (tuple, list)) else (result,):
        if isinstance(ref, TensorRef) and ref.name is not None:
            origins.setdefault(ref.name, node.name)
    return result


def _cond(b: Builder, node: torch.fx.Node, env: dict, symbols: SymbolNames) -> list:
    """``torch.cond``: the branch taken when the predicate is known, else both branches and a ``where`` per output.

    torch.cond's branches are pure and return the same types, so computing
    both and selecting is exact (as the JAX frontend does for ``lax.cond``).
    Branch values get no origins: the checker's trace records only the top graph.
    """
    pred, true_branch, false_branch, operands = (_arg(a, env) for a in node.args)
    taken = _static_bool(pred)
    if taken is not None:
        return _inline(b, true_branch if taken else false_branch, operands, symbols)
    on_true = _inline(b, true_branch, operands, symbols)
    on_false = _inline(b, false_branch, operands, symbols)
    b.source, b.name_hint = _source(node), node.name
    pred = _predicate(b, pred, symbols)
    return [_select(b, pred, t, f) for t, f in zip(on_true, on_false)]


def _inline(b: Builder, branch: torch.fx.GraphModule, operands: Sequence, symbols: SymbolNames) -> list:
    """The outputs of a branch graph translated in place, its placeholders bound to ``operands``."""
    env: dict[torch.fx.Node, Any] = {}
    bound = iter(operands)
    for node in branch.graph.nodes:
        if node.op == "placeholder":
            env[node] = next(bound)
        elif node.op == "get_attr":
            env[node] = _submodule(branch, node.target)
        elif node.op == "call_function":
            env[node] = _translate_node(b, node, env, symbols, {})
        elif node.op == "output":
            (values,) = node.args
            return [_arg(v, env) for v in values]
    raise TranslationError(f"a torch.cond branch without an output node:\n{branch.graph}")


def _static_bool(pred) -> bool | None:
    """A predicate's value when it is known at conversion time (a Python bool, a SymBool torch decided)."""
    if isinstance(pred, bool):
        return pred
    if isinstance(pred, torch.SymBool) and pred.node.expr in (sympy.true, sympy.false):
        return bool(pred.node.expr)
    return None


#: sympy relations over sizes to unigraph comparison ops.
_RELATIONS = {
    sympy.Gt: "greater",
    sympy.Ge: "greater_equal",
    sympy.Lt: "less",
    sympy.Le: "less_equal",
    sympy.Eq: "equal",
    sympy.Ne: "not_equal",
}
_CONNECTIVES = {sympy.And: "logical_and", sympy.Or: "logical_or"}


def _predicate(b: Builder, pred, symbols: SymbolNames) -> TensorRef:
    """The predicate as a 0-d bool tensor: a one-element tensor reshaped, or a SymBool computed from sizes."""
    if isinstance(pred, TensorRef):
        if pred.dtype != "bool":
            pred = b.emit("not_equal", pred, b.const(0, pred.dtype))
        return pred if pred.rank == 0 else b.emit("reshape", pred, shape=())
    return _size_relation(b, pred.node.expr, symbols)


def _size_relation(b: Builder, expr, symbols: SymbolNames) -> TensorRef:
    if isinstance(expr, sympy.Not):
        return b.emit("logical_not", _size_relation(b, expr.args[0], symbols))
    for kind, op in _CONNECTIVES.items():
        if isinstance(expr, kind):
            terms = [_size_relation(b, a, symbols) for a in expr.args]
            result = terms[0]
            for term in terms[1:]:
                result = b.emit(op, result, term)
            return result
    for kind, op in _RELATIONS.items():
        if isinstance(expr, kind):
            lhs, rhs = (_size_value(b, symbols.dim(side)) for side in expr.args)
            return b.emit(op, lhs, rhs)
    raise TranslationError(f"the torch.cond predicate {expr} ({type(expr).__name__}, {b.source}) has no unigraph form")


def _size_value(b: Builder, dim) -> TensorRef:
    return b.const(dim, "int32") if isinstance(dim, int) else b.emit("dim_value", dim=dim, dtype="int32")


def _select(b: Builder, pred: TensorRef, on_true, on_false):
    if isinstance(on_true, TensorRef) and isinstance(on_false, TensorRef):
        return b.emit("where", pred, on_true, on_false)
    if on_true == on_false:
        return on_true
    raise TranslationError(
        f"torch.cond ({b.source}) returns {on_true!r} or {on_false!r} by a predicate known only at run time; "
        "unigraph selects between tensors only"
    )


def _arg(a, env):
    if isinstance(a, torch.fx.Node):
        return env[a]
    if isinstance(a, (list, tuple)):
        return [_arg(x, env) for x in a]
    if isinstance(a, torch.dtype):
        return dtype_name(a)
    return a


def _describe_args(args, kwargs) -> str:
    parts = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
    return ", ".join(parts)


def _reconcile(node: torch.fx.Node, result, val, b: Builder, symbols: SymbolNames):
    """The handler's result, checked against the type torch recorded for the node.

    A dimension JAX cannot prove equal to torch's (``floordiv(floordiv(h - 1, 2), 2)``
    against ``floordiv(h - 1, 4)``) is compared on sample sizes; when they agree, the
    value takes torch's simpler form, so later broadcasts see one expression.
    """
    if isinstance(val, torch.Tensor):
        return _reconcile_one(node, result, val, b, symbols)
    if not isinstance(val, (tuple, list)):
        return result
    if not isinstance(result, (tuple, list)) or len(result) != len(val):
        raise TranslationError(f"handler for {_op_name(node.target)} returned {result!r} for {len(val)} outputs")
    return type(result)(
        _reconcile_one(node, r, v, b, symbols) if isinstance(v, torch.Tensor) and r is not None else r
        for r, v in zip(result, val)
    )


def _reconcile_one(node: torch.fx.Node, ref, val: torch.Tensor, b: Builder, symbols: SymbolNames):
    if not isinstance(ref, TensorRef):
        raise TranslationError(f"handler for {_op_name(node.target)} returned {ref!r}, not a tensor ({b.source})")
    want = tuple(symbols.dim(d) for d in val.shape)
    ok = ref.dtype == dtype_name(val.dtype) and len(ref.shape) == len(want)
    provable = ok and all(dims.same_dim(h, w, b.scope) for h, w in zip(ref.shape, want))
    if provable:
        return ref
    if ok and all(dims.equal_on_samples(h, w) for h, w in zip(ref.shape, want)) and ref.name is not None:
        return b.retype(ref, TensorType(want, ref.dtype))
    raise TranslationError(
        f"the translation of {_op_name(node.target)} ({b.source}) computes {ref.type}, "
        f"but torch computes {dtype_name(val.dtype)}{list(want)}; this is a unigraph bug, "
        "please report it with this message"
    )


def _outputs(node: torch.fx.Node, sig, env, b: Builder) -> list:
    (values,) = node.args
    outputs = []
    for spec, value in zip(sig.output_specs, values):
        if spec.kind == OutputKind.USER_OUTPUT:
            outputs.append(env[value] if isinstance(value, torch.fx.Node) else value)
        elif spec.kind == OutputKind.USER_INPUT_MUTATION:
            continue  # an in-place op on an input: the converted model returns the same outputs
        else:
            raise ExportError(
                f"the model writes {spec.kind.name.lower().replace('_', ' ')} "
                f"{spec.target or spec.arg.name!r} while running; unigraph converts models "
                "whose forward() has no side effects (call model.eval(); "
                "BatchNorm updates its statistics in training mode)"
            )
    return outputs


def _spec(torch_spec, leaves, b: Builder) -> tree.Spec:
    """A unigraph tree spec from a torch TreeSpec, consuming ``leaves`` in order."""
    if torch_spec.is_leaf():
        value = next(leaves)
        if isinstance(value, TensorRef):
            return tree.tensor(b.value(value))
        return tree.const(value if isinstance(value, (int, float, bool, str, type(None))) else repr(value))
    children = [_spec(c, leaves, b) for c in torch_spec.children()]
    kind = torch_spec.type
    if kind is type(None):
        return tree.const(None)
    if isinstance(torch_spec.context, (list, tuple)) and all(isinstance(k, str) for k in torch_spec.context) and (
        issubclass(kind, Mapping) or len(torch_spec.context) == len(children)
    ) and kind not in (tuple, list):
        return tree.mapping(list(torch_spec.context), children)
    return tree.sequence("list" if kind is list else "tuple", children)


# ---- sources and tensors -------------------------------------------------------------------


_FRAME = re.compile(r'File "([^"]+)", line (\d+)')


def _source(node: torch.fx.Node) -> Source:
    stack = node.meta.get("nn_module_stack") or {}
    module = ""
    if stack:
        path, _kind = list(stack.values())[-1]
        module = re.sub(r"\[(\d+)\]", r".\1", re.sub(r"^L\['self'\]\.?", "", str(path)))
    frames = _FRAME.findall(node.meta.get("stack_trace") or "")
    location = ""
    if frames:
        # ``<eval_with_key>``: code torch generated (torch.cond's call and branches), not the user's
        outside = [f for f in frames if not f[0].startswith((_TORCH_DIR, "<"))]
        file, line = (outside or frames)[-1]
        location = f"{short_path(file)}:{line}"
    return Source(module=module, location=location, origin=_op_name(node.target))




def _aliases(model: torch.nn.Module) -> dict[str, tuple[str, ...]]:
    """Other state-dict names of tied tensors (``lm_head.weight`` of ``wte.weight``)."""
    by_id: dict[int, list[str]] = {}
    for name, t in list(model.named_parameters(remove_duplicate=False)) + list(
        model.named_buffers(remove_duplicate=False)
    ):
        by_id.setdefault(id(t), []).append(name)
    return {names[0]: tuple(names[1:]) for names in by_id.values() if len(names) > 1}


def _module_versions(model: torch.nn.Module) -> dict[str, int]:
    """The modules whose state-dict format has a version other than 1 (``BatchNorm2d``: 2), by prefix.

    torch's ``state_dict()`` carries every module's ``_version`` in its
    ``_metadata``, and some modules refuse a state dict without theirs
    (torchvision's MNASNet: "version should be set to 1 or 2"); the state
    dict unigraph writes carries them too.
    """
    return {prefix: type(m)._version for prefix, m in model.named_modules() if getattr(type(m), "_version", 1) != 1}


def describe_reference(model) -> str:
    """How the checker names a torch model in its report."""
    return f"{type(model).__name__} (torch {torch.__version__})"


@triton_blocked()
def run_reference(model, args: Sequence, kwargs: Mapping | None = None):
    """Runs a torch model without gradients; outputs as NumPy in plain containers."""
    def convert(x):
        if isinstance(x, torch.Tensor):
            return to_numpy(x).copy()
        if isinstance(x, Mapping):  # ModelOutput included
            return {k: convert(v) for k, v in x.items()}
        if isinstance(x, (tuple, list)):
            return type(x)(convert(v) for v in x) if type(x) in (tuple, list) else tuple(convert(v) for v in x)
        return x

    args = tuple(as_tensor(a) for a in args)
    kwargs = {k: as_tensor(v) for k, v in (kwargs or {}).items()}
    with torch.no_grad():
        if isinstance(model, ExportedProgram):
            model = model.module()
        return convert(model(*args, **kwargs))


@triton_blocked()
def intermediate_values(program: ExportedProgram, args: Sequence, kwargs: Mapping) -> dict[str, np.ndarray]:
    """Every tensor the program computes on these inputs, by fx node name (for ``locate``)."""
    user = iter(pytree.tree_leaves((tuple(as_tensor(a) for a in args), {k: as_tensor(v) for k, v in kwargs.items()})))
    values = []
    for spec in program.graph_signature.input_specs:
        if spec.kind == InputKind.USER_INPUT:
            values.append(next(user))
        elif spec.target in program.state_dict:
            values.append(program.state_dict[spec.target])
        else:
            values.append(program.constants[spec.target])
    recorded: dict[str, np.ndarray] = {}

    class Recorder(torch.fx.Interpreter):
        def run_node(self, n):
            result = super().run_node(n)
            if isinstance(result, torch.Tensor) and n.op == "call_function":
                recorded[n.name] = to_numpy(result).copy()
            return result

    with torch.no_grad():
        Recorder(program.graph_module).run(*values)
    return recorded
