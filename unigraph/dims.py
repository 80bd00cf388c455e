"""Dimension expressions: the dynamic part of shapes.

A dimension is an ``int`` or a string expression over named symbols written in
the syntax of ``jax.export.symbolic_shape``: ``"batch"``, ``"2*seq + 1"``,
``"floordiv(seq, 2)"``, ``"mod(n, 4)"``, ``"max(a, b)"``. Symbols are bound
from the shapes of a graph's inputs when it runs; expressions are evaluated
with plain Python arithmetic, so the same code works for concrete ints under
``jax.jit`` and for JAX's symbolic dimensions under shape-polymorphic export.
"""

from __future__ import annotations

import ast
import functools
import operator
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Union

Dim = Union[int, str]

_BINOPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}


def _core_minmax(fn: str, a, b):
    """max/min where one side is a JAX symbolic dimension (JAX has no public API for it)."""
    from jax._src import core

    return core.max_dim(a, b) if fn == "max" else core.min_dim(a, b)


def maximum(a, b):
    """max of two dimensions, ints or JAX symbolic dimensions."""
    if isinstance(a, int) and isinstance(b, int):
        return max(a, b)
    return _core_minmax("max", a, b)


def minimum(a, b):
    """min of two dimensions, ints or JAX symbolic dimensions."""
    if isinstance(a, int) and isinstance(b, int):
        return min(a, b)
    return _core_minmax("min", a, b)


_CALLS = {
    "floordiv": operator.floordiv,
    "mod": operator.mod,
    "max": maximum,
    "min": minimum,
}


@functools.lru_cache(maxsize=4096)
def _parse(expr: str) -> ast.expr:
    try:
        tree = ast.parse(expr, mode="eval").body
    except SyntaxError as e:
        raise ValueError(f"not a dimension expression: {expr!r}") from e
    for node in ast.walk(tree):
        ok = isinstance(
            node,
            (ast.BinOp, ast.UnaryOp, ast.USub, ast.UAdd, ast.Constant, ast.Name, ast.Call, ast.Load),
        ) or type(node) in _BINOPS
        if isinstance(node, ast.Constant) and not isinstance(node.value, int):
            ok = False
        if isinstance(node, ast.Call) and not (
            isinstance(node.func, ast.Name) and node.func.id in _CALLS and not node.keywords
        ):
            ok = False
        if not ok:
            raise ValueError(f"not a dimension expression: {expr!r}")
    return tree


def _eval(node: ast.expr, env: Mapping[str, Any]):
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id in _CALLS:
            raise ValueError(f"{node.id!r} is a function, not a dimension")
        try:
            return env[node.id]
        except KeyError:
            raise KeyError(node.id) from None
    if isinstance(node, ast.BinOp):
        return _BINOPS[type(node.op)](_eval(node.left, env), _eval(node.right, env))
    if isinstance(node, ast.UnaryOp):
        value = _eval(node.operand, env)
        return -value if isinstance(node.op, ast.USub) else value
    assert isinstance(node, ast.Call)
    return _CALLS[node.func.id](*(_eval(a, env) for a in node.args))


def evaluate(dim: Dim, env: Mapping[str, Any]):
    """The value of ``dim`` with its symbols bound by ``env``.

    Raises ``KeyError`` naming the first unbound symbol.
    """
    if isinstance(dim, int):
        return dim
    return _eval(_parse(dim), env)


def evaluate_shape(shape: Iterable[Dim], env: Mapping[str, Any]) -> tuple:
    return tuple(evaluate(d, env) for d in shape)


def symbols(dim: Dim) -> set[str]:
    """The symbol names a dimension depends on."""
    if isinstance(dim, int):
        return set()
    return {
        n.id
        for n in ast.walk(_parse(dim))
        if isinstance(n, ast.Name) and n.id not in _CALLS
    }


def is_symbol(dim: Dim) -> bool:
    """True for a bare symbol such as ``"batch"`` (not an expression)."""
    return isinstance(dim, str) and isinstance(_parse(dim), ast.Name)


def check_dim(dim: Any) -> Dim:
    """``dim`` itself if it is a valid dimension, else ``ValueError``."""
    if isinstance(dim, bool) or not isinstance(dim, (int, str)):
        raise ValueError(f"a dimension is an int or an expression string, not {dim!r}")
    if isinstance(dim, str):
        _parse(dim)
    return dim


def from_jax(dim) -> Dim:
    """A JAX dimension (int or symbolic) as a unigraph dimension."""
    if isinstance(dim, int):
        return dim
    try:
        return operator.index(dim)
    except TypeError:  # symbolic: its expression
        return str(dim)


class SymbolicScope:
    """Builds JAX symbolic shapes for unigraph shapes, all in one scope.

    JAX compares symbolic dimensions only within one scope; a graph's type
    inference creates one ``SymbolicScope`` and passes every shape through it.
    """

    def __init__(self):
        from jax import export as jax_export

        self._jax_export = jax_export
        self._scope = jax_export.SymbolicScope()
        self._cache: dict[str, Any] = {}

    def dim(self, dim: Dim):
        if isinstance(dim, int):
            return dim
        if dim not in self._cache:
            (self._cache[dim],) = self._jax_export.symbolic_shape(dim, scope=self._scope)
        return self._cache[dim]

    def shape(self, shape: Sequence[Dim]) -> tuple:
        return tuple(self.dim(d) for d in shape)


def same_dim(a: Dim, b: Dim, scope: SymbolicScope | None = None) -> bool:
    """Whether two dimensions are provably equal (expressions are normalized by JAX)."""
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    if a == b:
        return True
    from jax.errors import InconclusiveDimensionOperation

    scope = scope or SymbolicScope()
    try:
        return bool(scope.dim(a) == scope.dim(b))
    except InconclusiveDimensionOperation:  # not provably equal
        return False


_SAMPLE_SIZES = (2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 127, 128, 255, 1000, 1023)


def equal_on_samples(a: Dim, b: Dim) -> bool:
    """Whether two dimensions agree on many sample sizes: a numeric test for forms JAX cannot prove equal.

    The frontends use it to accept a source framework's shape that ``same_dim``
    cannot prove equal to the translation's (``floor`` and ``mod`` forms).
    """
    names = sorted(symbols(a) | symbols(b))
    for i in range(len(_SAMPLE_SIZES)):
        env = {n: _SAMPLE_SIZES[(i + 5 * j) % len(_SAMPLE_SIZES)] for j, n in enumerate(names)}
        try:
            if evaluate(a, env) != evaluate(b, env):
                return False
        except ZeroDivisionError:  # a sample outside the expressions' domain (floordiv(n, m - 2) at m = 2)
            continue
    return True
