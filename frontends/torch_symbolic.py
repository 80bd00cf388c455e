"""Symbolic sizes of an exported program as unigraph dimension expressions.

torch.export writes dynamic sizes as sympy expressions over its own symbols
(``s77``, ``2*s77``, ``FloorDiv(s43, 2)``). unigraph names each symbol after
the input dimension that introduces it (``batch``, or the ``torch.export.Dim``
name the caller chose) and writes expressions in JAX's symbolic syntax.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Mapping

import sympy
import torch
from torch.utils._sympy import functions as F

from unigraph import dims
from unigraph.names import unique_name


class SymbolNames:
    """Maps torch's sympy symbols to readable names, normalizing expressions through JAX."""

    def __init__(self, scope: dims.SymbolicScope):
        self._names: dict[sympy.Symbol, str] = {}
        self._scope = scope

    def name(self, symbol: sympy.Symbol, preferred: str) -> None:
        if symbol in self._names:
            return
        self._names[symbol] = unique_name(preferred, set(self._names.values()))

    @property
    def names(self) -> Mapping[sympy.Symbol, str]:
        return self._names

    def dim(self, value) -> dims.Dim:
        """An int, SymInt or sympy expression as a unigraph dimension."""
        if isinstance(value, int):
            return value
        expr = value.node.expr if isinstance(value, torch.SymInt) else value
        if expr.is_number:
            return int(expr)
        return dims.from_jax(self._jax(expr))

    def _jax(self, e):
        """The expression as a JAX dimension (int or symbolic), which normalizes it."""
        if e.is_Integer:
            return int(e)
        if e.is_Symbol:
            if e not in self._names:
                raise NotImplementedError(
                    f"the size {e} depends on tensor values (a data-dependent shape); "
                    "unigraph needs shapes that follow from the input shapes"
                )
            return self._scope.dim(self._names[e])
        args = [self._jax(a) for a in e.args]
        if isinstance(e, sympy.Add):
            return functools.reduce(operator.add, args)
        if isinstance(e, sympy.Mul):
            return functools.reduce(operator.mul, args)
        if isinstance(e, (F.FloorDiv, F.CleanDiv)):
            return args[0] // args[1]
        if isinstance(e, F.CeilDiv):
            return -((-args[0]) // args[1])
        if isinstance(e, (F.Mod, F.PythonMod)):
            return args[0] % args[1]
        if isinstance(e, (F.Max, sympy.Max)):
            return functools.reduce(dims.maximum, args)
        if isinstance(e, (F.Min, sympy.Min)):
            return functools.reduce(dims.minimum, args)
        if isinstance(e, (sympy.Pow, F.PowByNatural)) and e.args[1].is_Integer and int(e.args[1]) >= 0:
            return functools.reduce(operator.mul, [args[0]] * int(e.args[1]), 1)
        raise NotImplementedError(f"symbolic size {e} ({type(e).__name__}) has no unigraph form")
