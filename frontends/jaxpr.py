"""JAX frontend: a jaxpr translated primitive by primitive; ``from_jax`` and ``from_flax`` on top.

Any program JAX can trace converts: the function is traced with
``jax.make_jaxpr`` on abstract inputs whose dimension 0 is one symbolic
``batch`` (so the graph is batch-dynamic, like torch conversions), and every
equation of the jaxpr is translated by a handler in ``frontends/jax_ops``:

- calls (``jit``, ``custom_jvp_call``, ``jax.checkpoint``, …) are inlined;
  loops with static trip counts are unrolled (Flax ``nn.RNN`` and Keras RNN
  layers run under ``lax.scan``, so their sequence length is fixed at
  conversion), ``cond`` on a computed predicate selects between branches;
- computations on constants only (index arithmetic, ``iota``, masks of
  static shape) are folded into graph constants at conversion time;
- handlers group primitives back into mid-level ops where that is exact:
  ``dot_general`` with a kernel and its bias ``add`` is ``dense``, a
  convolution and its bias ``add`` one ``conv``, a window sum and its
  division by the window size ``avg_pool``, ``jax.nn``'s softmax equations
  ``softmax``;
- equations the outputs do not depend on are dropped first;
- primitives without a handler are reported all at once, with their module
  path (Flax module names, Keras layer names: JAX's name stack) and the
  user's source line, before anything is translated.

``translate`` is the reusable part: the Keras frontend traces a model under
Keras's JAX backend into a jaxpr and calls it with the model's variables.

The result keeps a ``JaxprTrace``: the jaxpr, the source's variable values and,
per graph value, the jaxpr variable it holds. The checker's ``locate``
evaluates the jaxpr on its inputs with every variable's value kept
(``JaxprTrace.intermediate_values``) and names the first graph node whose
value differs from its variable's.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np
from jax.extend.core import ClosedJaxpr, DropVar, Jaxpr, Literal, jaxprs_in_params

import unigraph
from unigraph import dims, tree
from unigraph.converted import Converted
from unigraph.errors import (
    ExportError,
    TranslationError,
    UnigraphError,
    UnsupportedOp,
    UnsupportedOpError,
    first_line,
)
from unigraph.frontends.builder import Builder, SourceTensor, TensorRef, short_path
from unigraph.frontends.jax_ops import HANDLERS
from unigraph.frontends.jax_ops.context import Context, Unsupported, aval_type
from unigraph.ir import Source
from unigraph.params import ParamMap

#: Default ``polymorphic_shapes``: dimension 0 of every batched input is one symbolic "batch".
BATCH = "batch"

#: Constant computations producing at most this many elements are folded into graph constants.
FOLD_LIMIT = 1 << 16

#: Flax leaf names and the parameter role each one is.
FLAX_ROLES = {name: name for name in ("kernel", "bias", "scale", "embedding", "mean", "var")}


class JaxVariable(NamedTuple):
    """One variable leaf given to ``translate``: its path, collection, role and value.

    ``collection`` is ``params``, ``batch_stats``, another Flax collection
    (kept as its own), or ``constant`` for a value that belongs in the graph.
    ``path`` becomes the variable's path in that collection; its source name
    in the ParamMap is ``source_name``, by default the path joined with "/"
    (the Keras frontend renames leaves, ``gamma`` → ``scale``, and keeps the
    Keras name there). Layouts are kept as they are.
    """

    path: tuple[str, ...]
    collection: str
    role: str | None
    array: Any
    source_name: str | None = None


# ---- the entry points ------------------------------------------------------------------------


def from_flax(
    module,
    variables: Mapping,
    *example_inputs,
    kwargs: Mapping | None = None,
    method: str | Callable | None = None,
    polymorphic_shapes: Any = BATCH,
) -> Converted:
    """Converts a ``flax.linen`` module with its variables, traced on ``example_inputs``.

    ``module.apply(variables, *example_inputs, method=method, **kwargs)`` is
    traced; non-array arguments (``deterministic=True``) are fixed at their
    example values. Every leaf of ``variables`` is kept under its own path
    and collection (``params``, ``batch_stats``, …), its role read from the
    Flax leaf name. ``polymorphic_shapes`` as in ``from_jax``.
    """
    import flax

    def fn(variables, *args, **kw):
        return module.apply(variables, *args, method=method, **kw)

    if isinstance(method, str):  # a bound method: no self
        names = _positional_names(getattr(module, method), skip=0)
    else:  # __call__ or a function taking the module first
        names = _positional_names(method or type(module).__call__, skip=1)
    metadata = {
        "source_framework": "flax",
        "source_version": flax.__version__,
        "source_model": type(module).__name__,
    }
    variable_list = flax_variables(variables)
    return _convert(fn, variable_list, variables, example_inputs, kwargs, polymorphic_shapes, names, metadata)


def from_jax(
    fn: Callable,
    params: Any,
    *example_inputs,
    kwargs: Mapping | None = None,
    polymorphic_shapes: Any = BATCH,
) -> Converted:
    """Converts ``fn(params, *inputs, **kwargs)``, a JAX function of its parameters and inputs.

    ``params`` is any pytree of arrays: a Flax variable dict (``{"params":
    …, "batch_stats": …}``) keeps its collections, anything else is the
    ``params`` collection. Leaves are named by their pytree paths, their
    roles read from Flax leaf names (``kernel``, ``bias``, ``scale``, …).

    ``polymorphic_shapes``: ``"batch"`` (the default) makes dimension 0 of
    every array input whose leading size is the first input's one symbolic
    ``batch`` (falling back to static shapes, with a warning, where the
    function fixes it); ``None`` traces static shapes; or one entry per
    positional input, each a JAX shape spec like ``"(batch, seq, 16)"`` or
    ``"(b, _, _)"`` (``_`` keeps the example's size) or None. Keyword inputs
    are batch-dynamic under ``"batch"`` and static otherwise.
    """
    metadata = {
        "source_framework": "jax",
        "source_version": jax.__version__,
        "source_model": getattr(fn, "__name__", type(fn).__name__),
    }
    variables = _pytree_variables(params)
    return _convert(fn, variables, params, example_inputs, kwargs, polymorphic_shapes,
                    _positional_names(fn, skip=1), metadata)


def _convert(fn, variables, params, args, kwargs, polymorphic_shapes, names, metadata) -> Converted:
    leaves, treedef = jax.tree_util.tree_flatten(params)

    def call(leaves, *args, **kwargs):
        return fn(jax.tree_util.tree_unflatten(treedef, leaves), *args, **kwargs)

    traced = trace(call, [v.array for v in variables], args, kwargs or {},
                   polymorphic_shapes=polymorphic_shapes, positional_names=names,
                   what=metadata["source_model"])
    return translate(
        traced.jaxpr,
        variables=variables,
        input_names=traced.input_names,
        in_tree=traced.in_tree,
        static_inputs=traced.static,
        out_tree=traced.out_tree,
        metadata=metadata,
    )


def flax_variables(variables: Mapping) -> list[JaxVariable]:
    """Every leaf of a Flax variable dict, in flattening order: collection, path, role from the leaf name."""
    return [JaxVariable(path[1:], path[0], _role(path), leaf) for path, leaf in _leaves_with_paths(variables)]


def _pytree_variables(params: Any) -> list[JaxVariable]:
    """The leaves of ``from_jax``'s parameters: a Flax variable dict, or any pytree as ``params``."""
    if isinstance(params, Mapping) and "params" in params:
        return flax_variables(params)
    return [JaxVariable(path or ("param",), "params", _role(path), leaf) for path, leaf in _leaves_with_paths(params)]


def _role(path: tuple[str, ...]) -> str | None:
    return FLAX_ROLES.get(path[-1]) if path else None


def _leaves_with_paths(tree_: Any) -> list[tuple[tuple[str, ...], Any]]:
    flat, _ = jax.tree_util.tree_flatten_with_path(tree_)
    return [(tuple(_key_name(k) for k in path), leaf) for path, leaf in flat]


def _key_name(key) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


# ---- tracing ---------------------------------------------------------------------------------


@dataclasses.dataclass
class Traced:
    """A traced function: its jaxpr (variables first, then inputs), structures and input names."""

    jaxpr: ClosedJaxpr
    in_tree: Any  # the PyTreeDef of (args, kwargs), array leaves as inputs, other leaves static
    out_tree: Any
    input_names: list[str]
    static: dict[int, Any]  # non-array leaves of (args, kwargs), fixed at their values


def trace(
    fn: Callable,
    variables: Sequence,
    args: Sequence,
    kwargs: Mapping,
    *,
    polymorphic_shapes: Any = BATCH,
    positional_names: Sequence[str] = (),
    what: str = "the function",
) -> Traced:
    """``jax.make_jaxpr`` of ``fn(variables, *args, **kwargs)`` on abstract values.

    ``variables`` (a list of arrays) and the array leaves of ``args`` and
    ``kwargs`` become the jaxpr's inputs, in that order; other leaves (bools,
    ints, strings) are fixed. Array inputs get symbolic dimensions from
    ``polymorphic_shapes`` (see ``from_jax``).
    """
    leaves, in_tree = jax.tree_util.tree_flatten((tuple(args), dict(kwargs)))
    arrays = [i for i, leaf in enumerate(leaves) if _is_array(leaf)]
    static = {i: leaf for i, leaf in enumerate(leaves) if not _is_array(leaf)}
    names = _input_names(in_tree, arrays, positional_names)
    var_specs = [jax.ShapeDtypeStruct(_shape(v), _dtype(v)) for v in variables]

    def flat(var_leaves, *inputs):
        values = dict(static)
        values.update(zip(arrays, inputs))
        call_args, call_kwargs = jax.tree_util.tree_unflatten(in_tree, [values[i] for i in range(len(leaves))])
        return fn(list(var_leaves), *call_args, **call_kwargs)

    def run(specs):
        closed, shape = jax.make_jaxpr(flat, return_shape=True)(var_specs, *specs)
        return closed, jax.tree_util.tree_structure(shape)

    specs = _input_specs(leaves, arrays, in_tree, polymorphic_shapes)
    try:
        closed, out_tree = run(specs)
    except Exception as error:
        if polymorphic_shapes != BATCH or specs == _static_specs(leaves, arrays):
            raise ExportError(_trace_failure(what, error)) from error
        try:
            closed, out_tree = run(_static_specs(leaves, arrays))
        except Exception as static_error:
            raise ExportError(_trace_failure(what, static_error)) from static_error
        warnings.warn(
            f"{what}: the batch dimension could not be symbolic ({type(error).__name__}: "
            f"{first_line(error)}); the conversion has static shapes. "
            "Pass polymorphic_shapes=None to ask for static shapes.",
            stacklevel=3,
        )
    return Traced(closed, in_tree, out_tree, names, static)


def _is_array(x) -> bool:
    return hasattr(x, "shape") and hasattr(x, "dtype") and not isinstance(x, (str, bytes))


def _shape(x) -> tuple:
    """The shape of an array or a ``jax.ShapeDtypeStruct`` (which NumPy cannot read)."""
    return tuple(x.shape)


def _dtype(x):
    """The dtype JAX traces ``x`` with (64-bit types shrink unless x64 is on)."""
    return jax.dtypes.canonicalize_dtype(x.dtype)


def _static_specs(leaves, arrays) -> list:
    return [jax.ShapeDtypeStruct(_shape(leaves[i]), _dtype(leaves[i])) for i in arrays]


def _input_specs(leaves, arrays, in_tree, polymorphic_shapes) -> list:
    """Abstract inputs, their shapes symbolic as ``polymorphic_shapes`` says (one symbol scope)."""
    if polymorphic_shapes is None:
        return _static_specs(leaves, arrays)
    scope = jax.export.SymbolicScope()
    if isinstance(polymorphic_shapes, str) and polymorphic_shapes == BATCH:
        shapes = [_shape(leaves[i]) for i in arrays]
        size = next((s[0] for s in shapes if len(s)), None)
        specs = [None if not len(s) or s[0] != size else f"({BATCH}, ...)" for s in shapes]
    else:
        specs = _per_leaf_specs(polymorphic_shapes, in_tree, leaves, arrays)
    out = []
    for i, spec in zip(arrays, specs):
        shape = _shape(leaves[i])
        if spec is not None:
            try:
                shape = jax.export.symbolic_shape(spec, scope=scope, like=shape)
            except Exception as e:
                raise ValueError(f"polymorphic shape {spec!r} does not fit an input of shape {list(shape)}: {e}") from e
        out.append(jax.ShapeDtypeStruct(shape, _dtype(leaves[i])))
    return out


def _per_leaf_specs(polymorphic_shapes, in_tree, leaves, arrays) -> list:
    """One shape spec (or None) per array leaf from one entry per positional input (a spec or a pytree of them)."""
    args, kwargs = jax.tree_util.tree_unflatten(in_tree, leaves)
    entries = list(polymorphic_shapes)
    if len(entries) != len(args):
        raise ValueError(f"polymorphic_shapes has {len(entries)} entries for {len(args)} positional inputs")
    per_arg = []
    for entry, arg in zip(entries, args):
        spread = jax.tree_util.tree_map(
            lambda spec, sub: jax.tree_util.tree_map(lambda _: spec, sub),
            entry,
            arg,
            is_leaf=lambda s: s is None or isinstance(s, str),
        )
        per_arg.append(spread)
    spec_leaves = jax.tree_util.tree_leaves(
        (tuple(per_arg), jax.tree_util.tree_map(lambda _: None, kwargs)), is_leaf=lambda s: s is None
    )
    return [spec_leaves[i] for i in arrays]


def _input_names(in_tree, arrays: Sequence[int], positional: Sequence[str]) -> list[str]:
    """A name for each array input: the parameter it is passed as, with its path inside that argument."""
    marks = jax.tree_util.tree_unflatten(in_tree, list(range(in_tree.num_leaves)))
    names = {}
    for path, i in jax.tree_util.tree_flatten_with_path(marks)[0]:
        keys = [_key_name(k) for k in path]
        which, first, rest = keys[0], keys[1], keys[2:]
        if which == "0":
            first = positional[int(first)] if int(first) < len(positional) else f"input_{first}"
        names[i] = "_".join([first, *rest])
    return [names[i] for i in arrays]


def _positional_names(fn: Callable, skip: int) -> list[str]:
    """The names of ``fn``'s positional parameters after the first ``skip`` (params, or self)."""
    import inspect

    try:
        parameters = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return []
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [p.name for p in parameters[skip:] if p.kind in kinds]


def _trace_failure(what: str, error: Exception) -> str:
    lines = str(error).strip().splitlines()
    summary = "\n".join(f"    {line}" for line in lines[:12])
    if len(lines) > 12:
        summary += f"\n    … ({len(lines) - 12} more lines)"
    return (
        f"JAX could not trace {what}: {type(error).__name__}\n{summary}\n"
        "What to try:\n"
        "  - pass non-array arguments (flags like deterministic=True) as Python values, not arrays\n"
        "  - polymorphic_shapes=None traces static shapes if the code depends on concrete sizes"
    )


# ---- translation -----------------------------------------------------------------------------

#: Call primitives the handlers inline, and the parameter holding the body: it runs once, on the
#: equation's operands, so its variables have values of their own (loop and branch bodies do not).
CALL_BODIES = {"jit": "jaxpr", "custom_jvp_call": "call_jaxpr", "custom_vjp_call": "call_jaxpr", "remat2": "jaxpr"}


def translate(
    closed_jaxpr: ClosedJaxpr,
    *,
    variables: Sequence[JaxVariable | tuple] = (),
    input_names: Sequence[str],
    in_tree: Any = None,
    static_inputs: Mapping[int, Any] | None = None,
    out_tree: Any = None,
    source_of: Callable[[Any, Source], Source] | None = None,
    metadata: Mapping | None = None,
) -> Converted:
    """A ``Converted`` from a jaxpr whose inputs are ``variables`` then the model inputs.

    - ``variables``: one ``JaxVariable`` (or ``(path, collection, role,
      array)`` tuple) per leading jaxpr input, in order.
    - ``input_names``: names of the remaining jaxpr inputs (types come from
      the jaxpr, symbolic dimensions included).
    - ``in_tree``: the PyTreeDef of ``(args, kwargs)`` whose array leaves are
      the inputs (other leaves are fixed values), so the converted model takes
      the source's call structure, ``static_inputs`` the fixed leaves by
      their flat position; ``out_tree``: the structure of the outputs.
      Without them the model takes the inputs positionally and returns a
      tuple (one output: the array itself).
    - ``source_of(eqn, source)``: the ``Source`` of the nodes of an equation,
      given the default one (module path from JAX's name stack, the first
      source line outside JAX, Flax, Keras and unigraph, the call path and
      primitive as origin).

    Raises ``UnsupportedOpError`` listing every primitive without a handler
    (or in a form unigraph cannot express), ``TranslationError`` when a
    handler fails.
    """
    variables = [JaxVariable(*v) for v in variables]
    jaxpr = closed_jaxpr.jaxpr
    if len(jaxpr.invars) != len(variables) + len(input_names):
        raise ValueError(
            f"the jaxpr has {len(jaxpr.invars)} inputs for {len(variables)} variables "
            f"and {len(input_names)} inputs"
        )
    translator = Translator(source_of)
    missing = translator.unsupported(closed_jaxpr)
    if missing:
        raise UnsupportedOpError(missing, framework="the JAX")
    var_refs = [translator.variable(v, var.aval) for v, var in zip(variables, jaxpr.invars)]
    b = translator.b
    try:
        in_refs = [b.input(name, aval_type(var.aval)) for name, var in zip(input_names, jaxpr.invars[len(variables):])]
    except Unsupported as e:
        raise UnsupportedOpError([UnsupportedOp(f"model input ({e})", tuple(input_names))], framework="the JAX") from None
    consts = [translator.constant(np.asarray(c)) for c in closed_jaxpr.consts]
    outs = translator.run(jaxpr, consts, var_refs + in_refs, Scope())
    out_names = [b.value(r) for r in outs]
    graph = b.graph(
        list(dict.fromkeys(out_names)),
        _call_spec(in_tree, [r.name for r in in_refs], static_inputs or {}) if in_tree is not None else None,
        _tree_spec(out_tree, out_names) if out_tree is not None else _flat_spec(out_names),
    )
    first_users = {}
    for node in graph.nodes:
        for name in node.inputs:
            first_users.setdefault(name, node.outputs[0])
    entries = [dataclasses.replace(e, node=first_users.get(e.key)) for e in b.entries]
    trace_ = JaxprTrace(closed_jaxpr, [v.array for v in variables], translator.origins)
    return Converted(graph, b.variable_tree(), ParamMap(entries), metadata, trace=trace_)


@dataclasses.dataclass(frozen=True)
class Scope:
    """Where a jaxpr runs: the module path of the call that inlined it and the call names on the way."""

    module: str = ""
    calls: tuple[str, ...] = ()
    location: str = ""  # the call's source line, for bodies traced without one of their own
    key: str | None = ""  # prefix of its variables' keys (JaxprTrace); None inside loop and branch bodies


def live_equations(jaxpr: Jaxpr) -> list:
    """The equations the outputs depend on, in order (a forward graph has no use for the others)."""
    needed = {v for v in jaxpr.outvars if not isinstance(v, Literal)}
    live = []
    for eqn in reversed(jaxpr.eqns):
        if any(v in needed for v in eqn.outvars if not isinstance(v, DropVar)):
            live.append(eqn)
            needed.update(v for v in eqn.invars if not isinstance(v, Literal))
    return live[::-1]


class Frame:
    """One jaxpr being translated: its live equations, its values so far, who produces and reads each variable."""

    def __init__(self, translator: Translator, jaxpr: Jaxpr, scope: Scope):
        self.translator = translator
        self.scope = scope
        self.env: dict = {}
        self.eqns = live_equations(jaxpr)
        self.index = {id(e): i for i, e in enumerate(jaxpr.eqns)}
        self.producers = {v: e for e in self.eqns for v in e.outvars if not isinstance(v, DropVar)}
        self.readers: dict = {}
        for e in self.eqns:
            for v in e.invars:
                if not isinstance(v, Literal):
                    self.readers.setdefault(v, []).append(e)
        self.outputs = {v for v in jaxpr.outvars if not isinstance(v, Literal)}
        self.absorbed: dict[int, TensorRef] = {}

    def read(self, var) -> TensorRef:
        if isinstance(var, Literal):
            return self.translator.literal(var)
        return self.env[var]

    def known(self, var) -> TensorRef | None:
        return self.translator.literal(var) if isinstance(var, Literal) else self.env.get(var)

    def uses(self, var) -> int:
        if isinstance(var, Literal):
            return 0
        return len(self.readers.get(var, ())) + (var in self.outputs)

    def producer(self, var):
        return None if isinstance(var, Literal) else self.producers.get(var)

    def sole_consumer(self, var):
        return self.readers[var][0] if self.uses(var) == 1 and var in self.readers else None

    def absorb(self, eqn, result: TensorRef) -> None:
        self.absorbed[id(eqn)] = result

    def key(self, eqn) -> str | None:
        """The key of ``eqn`` (``"3/5"``: equation 5 in the body of equation 3), None in a loop or branch body."""
        return None if self.scope.key is None else f"{self.scope.key}{self.index[id(eqn)]}"


class Translator:
    """Translates jaxprs into one ``Builder``, equation by equation."""

    def __init__(self, source_of: Callable | None = None):
        self.b = Builder()
        self.roles: dict[str, str | None] = {}
        self.origins: dict[str, str] = {}  # graph value -> key of the jaxpr variable it holds (the last bound)
        self.source_of = source_of
        self._library = _library_dirs()

    # ---- values -----------------------------------------------------------------------------

    def variable(self, v: JaxVariable, aval) -> TensorRef:
        """A variable stored as is (identity layout) under its path; ``constant`` ones become graph constants."""
        want = aval_type(aval)
        array = np.asarray(v.array)
        if tuple(array.shape) != want.shape:
            raise ValueError(f"variable {'/'.join(v.path)}: shape {list(array.shape)} but the jaxpr reads {want}")
        array = array.astype(np.dtype(aval.dtype), copy=False)
        st = SourceTensor(v.source_name or "/".join(v.path), v.collection, array, path=tuple(v.path))
        ref = self.b.weight(self.b.source_tensor(st), v.role)
        self.roles[ref.name] = v.role
        return ref

    def constant(self, array: np.ndarray) -> TensorRef:
        if array.ndim == 0:
            return self.b.const(array.item(), array.dtype.name)
        return self.b.const_array(array)

    def literal(self, lit) -> TensorRef:
        return self.constant(np.asarray(lit.val, dtype=np.dtype(lit.aval.dtype)))

    # ---- jaxprs -----------------------------------------------------------------------------

    def run(self, jaxpr: Jaxpr, consts: Sequence[TensorRef], args: Sequence[TensorRef], scope: Scope) -> list:
        frame = Frame(self, jaxpr, scope)
        frame.env.update(zip(jaxpr.constvars, consts))
        frame.env.update(zip(jaxpr.invars, args))
        for eqn in frame.eqns:
            if id(eqn) in frame.absorbed:
                outs = [frame.absorbed[id(eqn)]]
            else:
                outs = self.equation(frame, eqn)
            key = frame.key(eqn)
            for i, (var, ref) in enumerate(zip(eqn.outvars, outs)):
                if not isinstance(var, DropVar):
                    frame.env[var] = ref
                    if key is not None and ref.name is not None:  # the last variable bound wins: an absorbed bias add's, not the matmul's
                        self.origins[ref.name] = f"{key}.{i}"
        return [frame.read(v) for v in jaxpr.outvars]

    def inline(self, jaxpr, args: list[TensorRef], frame: Frame, eqn, name: str) -> list[TensorRef]:
        closed = jaxpr if isinstance(jaxpr, ClosedJaxpr) else None
        consts = [self.constant(np.asarray(c)) for c in closed.consts] if closed else []
        source = self.source(eqn, frame.scope)
        key = frame.key(eqn)
        once = key is not None and eqn.params.get(CALL_BODIES.get(eqn.primitive.name, "")) is jaxpr
        scope = Scope(self._module(eqn, frame.scope), (*frame.scope.calls, name), source.location, f"{key}/" if once else None)
        return self.run(closed.jaxpr if closed else jaxpr, consts, args, scope)

    def equation(self, frame: Frame, eqn) -> list[TensorRef]:
        name = eqn.primitive.name
        source = self.source(eqn, frame.scope)
        self.b.source = source
        hint = "_".join(p for p in (source.module.rsplit("/", 1)[-1], name) if p)
        self.b.name_hint = re.sub(r"\W+", "_", hint).strip("_")
        ins = [frame.read(v) for v in eqn.invars]
        handler = HANDLERS.get(name)
        folded = self._fold(eqn, ins, must=handler is None)
        if folded is not None:
            return folded
        if handler is None:
            raise UnsupportedOpError([UnsupportedOp(name, (_where(source),))], framework="the JAX")
        try:
            result = handler(Context(self, frame, eqn), *ins, **eqn.params)
        except Unsupported as e:
            raise UnsupportedOpError([UnsupportedOp(f"{name}: {e}", (_where(source),))], framework="the JAX") from None
        except UnigraphError:
            raise  # from an inlined body: it names its own equation
        except Exception as e:
            raise TranslationError(
                f"translating {name} ({source}) failed: {type(e).__name__}: {e}\n"
                f"  operands: {', '.join(str(r.type) for r in ins)}\n  params: {_short_params(eqn.params)}"
            ) from e
        if not eqn.primitive.multiple_results or isinstance(result, TensorRef):
            result = [result]
        return self._reconcile(eqn, list(result), source)

    def _fold(self, eqn, ins: list[TensorRef], must: bool) -> list[TensorRef] | None:
        """The outputs of an equation on constants only, computed now (None where it cannot be)."""
        values = [self.b.constants.get(r.name) for r in ins]
        if any(v is None for v in values) or not _foldable(eqn):
            return None
        if not must and sum(math.prod(v.aval.shape) for v in eqn.outvars) > FOLD_LIMIT:
            return None
        try:  # as jax's eval_jaxpr evaluates an equation
            with eqn.ctx.manager:
                out = eqn.primitive.bind(*values, **eqn.primitive.get_bind_params(eqn.params))
            arrays = [np.asarray(o) for o in (out if eqn.primitive.multiple_results else [out])]
        except Exception:  # not evaluable here: the handler translates it
            return None
        return [self.constant(a) for a in arrays]

    def _reconcile(self, eqn, refs: list[TensorRef], source: Source) -> list[TensorRef]:
        """The handler's results, checked against the types JAX recorded (a mismatch is a unigraph bug)."""
        if len(refs) != len(eqn.outvars):
            raise TranslationError(
                f"the handler of {eqn.primitive.name} ({source}) returned {len(refs)} values for {len(eqn.outvars)}"
            )
        out = []
        for var, ref in zip(eqn.outvars, refs):
            want = aval_type(var.aval)
            same = ref.dtype == want.dtype and ref.rank == want.rank
            pairs = list(zip(ref.shape, want.shape))
            if same and all(dims.same_dim(h, w, self.b.scope) for h, w in pairs):
                out.append(ref)
            elif same and all(dims.equal_on_samples(h, w) for h, w in pairs) and ref.name not in self.b.inputs:
                out.append(self.b.retype(ref, want))  # JAX's simpler form of the same sizes
            else:
                raise TranslationError(
                    f"the translation of {eqn.primitive.name} ({source}) computes {ref.type}, but JAX "
                    f"computes {want}; this is a unigraph bug, please report it with this message"
                )
        return out

    # ---- sources ----------------------------------------------------------------------------

    def _module(self, eqn, scope: Scope) -> str:
        stack = str(eqn.source_info.name_stack)
        return "/".join(p for p in (scope.module, stack) if p)

    def source(self, eqn, scope: Scope) -> Source:
        source = Source(
            module=self._module(eqn, scope),
            location=self._location(eqn.source_info.traceback) or scope.location,
            origin="/".join((*scope.calls, eqn.primitive.name)),
        )
        return self.source_of(eqn, source) if self.source_of else source

    def _location(self, traceback) -> str:
        """The innermost source line outside JAX and the libraries models are built with."""
        from jax._src import source_info_util

        frames = list(source_info_util.user_frames(traceback))
        chosen = next((f for f in frames if not f.file_name.startswith(self._library)), frames[0] if frames else None)
        return "" if chosen is None else f"{short_path(chosen.file_name)}:{chosen.start_line}"

    # ---- unsupported primitives -------------------------------------------------------------

    def unsupported(self, closed: ClosedJaxpr) -> list[UnsupportedOp]:
        """Every primitive without a handler that will not be folded, with every place it is used."""
        found: dict[str, list[str]] = {}
        self._scan(closed.jaxpr, set(closed.jaxpr.constvars), Scope(), found)
        return [UnsupportedOp(name, tuple(places)) for name, places in sorted(found.items())]

    def _scan(self, jaxpr: Jaxpr, constant: set, scope: Scope, found: dict) -> None:
        for eqn in live_equations(jaxpr):
            if _foldable(eqn) and all(isinstance(v, Literal) or v in constant for v in eqn.invars):
                constant.update(eqn.outvars)
                continue
            if HANDLERS.get(eqn.primitive.name) is None:
                found.setdefault(eqn.primitive.name, []).append(_where(self.source(eqn, scope)))
                continue
            inner = Scope(self._module(eqn, scope), scope.calls, self.source(eqn, scope).location)
            for sub in jaxprs_in_params(eqn.params):
                self._scan(sub, set(sub.constvars), inner, found)


def _foldable(eqn) -> bool:
    """Whether an equation on constants can become constants: pure, with static shapes and plain dtypes."""
    avals = [v.aval for v in eqn.outvars]
    return not eqn.effects and all(
        all(isinstance(d, int) for d in a.shape) and not jax.dtypes.issubdtype(a.dtype, jax.dtypes.extended)
        for a in avals
    )


def _where(source: Source) -> str:
    if source.location and source.module:
        return f"{source.location} (in {source.module})"
    return source.location or source.module or source.origin


def _short_params(params: Mapping) -> str:
    text = ", ".join(f"{k}={v!r}" for k, v in params.items() if not isinstance(v, (Jaxpr, ClosedJaxpr)))
    return text if len(text) <= 400 else text[:397] + "…"


def _library_dirs() -> tuple[str, ...]:
    """Directories of the libraries whose frames are not the user's source line."""
    dirs = [os.path.dirname(os.path.abspath(unigraph.__file__)), os.path.dirname(os.path.abspath(__file__))]
    for name in ("flax", "keras", "jax"):
        module = sys.modules.get(name)
        if module is not None and getattr(module, "__file__", None):
            dirs.append(os.path.dirname(os.path.abspath(module.__file__)))
    return tuple(d + os.sep for d in dirs)




# ---- the reference values for locate ---------------------------------------------------------


@dataclasses.dataclass
class JaxprTrace:
    """What the checker needs to compare a conversion with its jaxpr node by node.

    ``origins`` maps a graph value to the key of the jaxpr variable it holds:
    ``"12.0"`` is output 0 of equation 12, ``"3/5.0"`` output 0 of equation 5
    in the body of call equation 3. Variables inside loop and branch bodies
    have no key (an unrolled body's variable holds one value per iteration).
    """

    jaxpr: ClosedJaxpr
    variables: list  # the source's values of the leading jaxpr inputs
    origins: dict[str, str]

    def intermediate_values(self, inputs: Sequence) -> dict[str, np.ndarray]:
        """Every variable's value when the jaxpr runs on ``inputs``, by key (extended dtypes left out).

        ``inputs`` are the graph's inputs, in its order: the jaxpr's inputs
        after the variables (the graph has one input per jaxpr input).

        The jaxpr is evaluated equation by equation, call bodies entered, as
        one function that returns every value; ``jax.export`` runs it, since
        equations traced with symbolic shapes carry symbolic sizes in their
        parameters and JAX binds those only through its shape refinement.
        """
        jaxpr = self.jaxpr.jaxpr
        invars = jaxpr.invars[len(self.variables):]
        inputs = [np.asarray(x, dtype=np.dtype(v.aval.dtype)) for x, v in zip(inputs, invars, strict=True)]

        def collect(*flat):
            values: dict[str, Any] = {}
            _evaluate(jaxpr, self.jaxpr.consts, flat, "", values)
            return values

        specs = [jax.ShapeDtypeStruct(v.aval.shape, v.aval.dtype) for v in jaxpr.invars]
        exported = jax.export.export(jax.jit(collect))(*specs)
        values = exported.call(*self.variables, *inputs)
        return {key: np.asarray(value) for key, value in values.items()}


def _evaluate(jaxpr: Jaxpr, consts: Sequence, args: Sequence, prefix: str, values: dict) -> list:
    """``jax.core.eval_jaxpr`` that records every live equation's outputs in ``values`` under their keys."""
    from jax._src import source_info_util

    env = dict(zip(jaxpr.constvars, consts))
    env.update(zip(jaxpr.invars, args))

    def read(v):
        return v.val if isinstance(v, Literal) else env[v]

    live = {id(e) for e in live_equations(jaxpr)}
    for i, eqn in enumerate(jaxpr.eqns):
        if id(eqn) not in live:
            continue
        ins = [read(v) for v in eqn.invars]
        body = eqn.params.get(CALL_BODIES.get(eqn.primitive.name, ""))
        if body is not None:
            closed = body if isinstance(body, ClosedJaxpr) else None
            outs = _evaluate(closed.jaxpr if closed else body, closed.consts if closed else (), ins, f"{prefix}{i}/", values)
        else:
            name_stack = source_info_util.current_name_stack() + eqn.source_info.name_stack
            with source_info_util.user_context(eqn.source_info.traceback, name_stack=name_stack), eqn.ctx.manager:
                outs = eqn.primitive.bind(*ins, **eqn.primitive.get_bind_params(eqn.params))
            outs = outs if eqn.primitive.multiple_results else [outs]
        for j, (var, out) in enumerate(zip(eqn.outvars, outs)):
            if isinstance(var, DropVar):
                continue
            env[var] = out
            if not jax.dtypes.issubdtype(var.aval.dtype, jax.dtypes.extended):
                values[f"{prefix}{i}.{j}"] = out
    return [read(v) for v in jaxpr.outvars]


# ---- structures ------------------------------------------------------------------------------


class _Slot:
    def __init__(self, name: str):
        self.name = name


def _tree_spec(treedef, names: Sequence[str]) -> tree.Spec:
    return _spec_of(jax.tree_util.tree_unflatten(treedef, [_Slot(n) for n in names]))


def _flat_spec(names: Sequence[str]) -> tree.Spec:
    """One output as itself, several as a tuple (repeats kept: the jaxpr may return a value twice)."""
    if len(names) == 1:
        return tree.tensor(names[0])
    return tree.sequence("tuple", [tree.tensor(n) for n in names])


def _call_spec(in_tree, input_names: Sequence[str], static: Mapping[int, Any]) -> tree.Spec:
    """The (args, kwargs) spec: array leaves are the graph inputs, other leaves constants."""
    names = iter(input_names)
    leaves = [static[i] if i in static else _Slot(next(names)) for i in range(in_tree.num_leaves)]
    return _spec_of(jax.tree_util.tree_unflatten(in_tree, leaves))


def _spec_of(obj) -> tree.Spec:
    if isinstance(obj, _Slot):
        return tree.tensor(obj.name)
    if isinstance(obj, Mapping):
        return tree.mapping([str(k) for k in obj], [_spec_of(v) for v in obj.values()])
    if isinstance(obj, list):
        return tree.sequence("list", [_spec_of(v) for v in obj])
    if isinstance(obj, tuple):
        return tree.sequence("tuple", [_spec_of(v) for v in obj])
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return tree.const(obj)
    raise ExportError(
        f"a value of type {type(obj).__name__} in the inputs or outputs: unigraph keeps tuples, "
        "lists and dicts of arrays, and fixed bools, numbers and strings"
    )


__all__ = ["BATCH", "JaxVariable", "JaxprTrace", "Traced", "flax_variables", "from_flax", "from_jax", "trace", "translate"]
