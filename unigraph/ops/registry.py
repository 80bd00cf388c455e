"""The op registry: each unigraph op defined once, its schema read from its signature.

An op is a plain function registered with ``@op("name")``::

    @op("leaky_relu")
    def leaky_relu(x, /, *, alpha: float = 0.01):
        '''aten::leaky_relu(Tensor self, Scalar negative_slope=0.01)'''
        return jnp.where(x >= 0, x, alpha * x)

- Positional-only parameters are the tensor inputs; one with a ``None``
  default is optional (a node passes ``None`` for it), ``*xs`` is variadic.
- Keyword-only parameters are the attributes; their annotations are the
  attribute schema, checked by ``Graph.validate()``. Attributes annotated
  ``SymDim`` / ``SymShape`` may hold dimension expressions (``"batch*16"``);
  they are evaluated before the lowering is called.
- The function body is the JAX lowering, written with ``jax.numpy``/``jax.lax``
  on arrays in the source layout. The output type of a node is inferred by
  abstract evaluation of this lowering (``infer_types``), so an op has one
  definition of its semantics, not a second shape rule to keep in sync.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal, Union

from unigraph import dims
from unigraph.registry import Registry

SYMBOLIC = "symbolic"
SymDim = Annotated[Union[int, str], SYMBOLIC]
SymShape = Annotated[tuple[Union[int, str], ...], SYMBOLIC]
DType = Annotated[str, "dtype"]


@dataclasses.dataclass(frozen=True)
class Attr:
    name: str
    annotation: Any
    default: Any
    required: bool
    symbolic: bool


@dataclasses.dataclass(frozen=True)
class OpDef:
    name: str
    jax: Callable
    inputs: tuple[str, ...]
    optional: frozenset[str]
    variadic: bool
    attrs: Mapping[str, Attr]
    doc: str

    def check_arity(self, n: int) -> str | None:
        lo = len(self.inputs) - len(self.optional)
        if self.variadic:
            return None if n >= lo else f"takes at least {lo} inputs, got {n}"
        if lo <= n <= len(self.inputs):
            return None
        want = str(lo) if lo == len(self.inputs) else f"{lo} to {len(self.inputs)}"
        return f"takes {want} inputs, got {n}"

    def check_attrs(self, attrs: Mapping[str, Any]) -> list[str]:
        """Problems with ``attrs`` against the schema (empty when they conform)."""
        problems = [f"unknown attribute {k!r}" for k in attrs if k not in self.attrs]
        for attr in self.attrs.values():
            if attr.name not in attrs:
                if attr.required:
                    problems.append(f"missing attribute {attr.name!r}")
                continue
            value = attrs[attr.name]
            if not conforms(value, attr.annotation):
                problems.append(
                    f"attribute {attr.name}={value!r} is not {_describe(attr.annotation)}"
                )
        return problems

    def with_defaults(self, attrs: Mapping[str, Any]) -> dict[str, Any]:
        """Every attribute of the op: its value in ``attrs``, else the schema's default.

        The schema is the one source of defaults: the torch code generator
        fills attributes from here too, not from its lowerings' signatures.
        """
        return {name: attrs.get(name, attr.default) for name, attr in self.attrs.items()}

    def resolve(self, attrs: Mapping[str, Any], env: Mapping[str, Any]) -> dict[str, Any]:
        """``attrs`` with defaults filled in and dimension expressions evaluated in ``env``."""
        return {
            name: _evaluate(value, env) if self.attrs[name].symbolic and value is not None else value
            for name, value in self.with_defaults(attrs).items()
        }


def _evaluate(value, env):
    if isinstance(value, tuple):
        return tuple(_evaluate(v, env) for v in value)
    return dims.evaluate(value, env) if isinstance(value, str) else value


REGISTRY: Registry[str, OpDef] = Registry("op")


def op(name: str, *aliases: str) -> Callable[[Callable], Callable]:
    """Registers the decorated JAX lowering as op ``name`` (and each alias)."""
    return REGISTRY.registers(name, *aliases, build=_opdef)


def _opdef(name: str, fn: Callable) -> OpDef:
    hints = typing.get_type_hints(fn, include_extras=True)
    inputs, optional, attrs, variadic = [], set(), {}, False
    for p in inspect.signature(fn).parameters.values():
        if p.kind is p.POSITIONAL_ONLY:
            inputs.append(p.name)
            if p.default is None:
                optional.add(p.name)
            elif p.default is not p.empty:
                raise TypeError(f"op {name}: tensor input {p.name} may only default to None")
        elif p.kind is p.VAR_POSITIONAL:
            variadic = True
        elif p.kind is p.KEYWORD_ONLY:
            if p.name not in hints:
                raise TypeError(f"op {name}: attribute {p.name} needs a type annotation")
            annotation = hints[p.name]
            attrs[p.name] = Attr(
                p.name,
                annotation,
                None if p.default is p.empty else p.default,
                p.default is p.empty,
                _is_symbolic(annotation),
            )
        else:
            raise TypeError(
                f"op {name}: parameter {p.name} must be positional-only (a tensor) "
                "or keyword-only (an attribute)"
            )
    return OpDef(
        name=name,
        jax=fn,
        inputs=tuple(inputs),
        optional=frozenset(optional),
        variadic=variadic,
        attrs=attrs,
        doc=inspect.getdoc(fn) or "",
    )


def _is_symbolic(annotation) -> bool:
    if typing.get_origin(annotation) is Annotated:
        return SYMBOLIC in annotation.__metadata__
    return any(_is_symbolic(a) for a in typing.get_args(annotation))


def conforms(value: Any, annotation: Any) -> bool:
    """Whether an attribute value fits its annotation (ints count as floats)."""
    if annotation is Any:
        return True
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Annotated:
        if not conforms(value, args[0]):
            return False
        if SYMBOLIC in annotation.__metadata__:
            return _dims_ok(value)
        if "dtype" in annotation.__metadata__:
            return _dtype_ok(value)
        return True
    if origin in (Union, types.UnionType):
        return any(conforms(value, a) for a in args)
    if origin is Literal:
        return any(value == a and type(value) is type(a) for a in args)
    if origin is tuple:
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(conforms(v, args[0]) for v in value)
        return len(value) == len(args) and all(conforms(v, a) for v, a in zip(value, args))
    if annotation is type(None) or annotation is None:
        return value is None
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    raise TypeError(f"unsupported attribute annotation {annotation!r}")


def _dims_ok(value) -> bool:
    values = value if isinstance(value, tuple) else (value,)
    try:
        for v in values:
            dims.check_dim(v)
    except ValueError:
        return False
    return True


def _dtype_ok(value) -> bool:
    from unigraph.dtypes import numpy_dtype

    try:
        numpy_dtype(value)
    except (ValueError, TypeError):
        return False
    return True


def _describe(annotation) -> str:
    text = repr(annotation).replace("typing.", "")
    return text.replace("Annotated[Union[int, str], 'symbolic']", "a dimension")


def freeze(value: Any) -> Any:
    """Attribute values as stored in a node: lists become tuples, recursively."""
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    return value
