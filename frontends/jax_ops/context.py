"""What a handler sees of the equation it translates, and the driver services it may use."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import jax
import numpy as np

from unigraph import dims
from unigraph.frontends.builder import Builder, TensorRef
from unigraph.ir import TensorType

if TYPE_CHECKING:  # the driver; imported only for annotations (it imports this package)
    from unigraph.frontends.jaxpr import Frame, Translator


class Unsupported(Exception):
    """A form of a primitive that unigraph cannot express (reported like a primitive without a handler).

    Handlers raise it with the reason (``"gather with operand_batching_dims
    other than take_along_axis's"``); the driver turns it into an
    ``UnsupportedOpError`` naming the primitive and its source.
    """


def aval_type(aval) -> TensorType:
    """The unigraph type of a JAX abstract value (symbolic dimensions as expressions)."""
    dtype = aval.dtype
    if jax.dtypes.issubdtype(dtype, jax.dtypes.extended):
        raise Unsupported(f"values of the extended dtype {dtype} (PRNG keys and the like)")
    if jax.dtypes.issubdtype(dtype, np.complexfloating):
        raise Unsupported(f"complex values ({np.dtype(dtype).name})")
    return TensorType(tuple(dims.from_jax(d) for d in aval.shape), np.dtype(dtype).name)


class Context:
    """One equation under translation: its types, the builder, and lookups into its jaxpr.

    ``frame`` is the jaxpr being translated (the top-level one or an inlined
    body), which knows each variable's producer and consumers: handlers use
    it to group a primitive with its neighbours (a ``dot_general`` with the
    bias ``add`` that follows it) and ``absorb`` the neighbour they took in.
    """

    def __init__(self, translator: Translator, frame: Frame, eqn):
        self._translator = translator
        self._frame = frame
        self.eqn = eqn
        self.b: Builder = translator.b

    @property
    def primitive(self) -> str:
        return self.eqn.primitive.name

    @functools.cached_property
    def out_types(self) -> tuple[TensorType, ...]:
        return tuple(aval_type(v.aval) for v in self.eqn.outvars)

    @property
    def out_type(self) -> TensorType:
        return self.out_types[0]

    # ---- building ---------------------------------------------------------------------------

    def emit(self, op: str, *inputs: TensorRef | None, n_out: int = 1, **attrs):
        return self.b.emit(op, *inputs, n_out=n_out, **attrs)

    def scalar(self, value: Any, dtype: str) -> TensorRef:
        """A 0-d constant."""
        return self.b.const(value, dtype)

    def array(self, array: np.ndarray) -> TensorRef:
        return self.b.const_array(np.asarray(array))

    def cast(self, x: TensorRef, dtype: str) -> TensorRef:
        return x if x.dtype == dtype else self.emit("cast", x, dtype=dtype)

    def same_dim(self, a: dims.Dim, b: dims.Dim) -> bool:
        return dims.same_dim(a, b, self.b.scope)

    def arith(self, a: dims.Dim, op: str, b: dims.Dim) -> dims.Dim:
        """``a op b`` for ``op`` in ``+ - *`` on dimensions, simplified by JAX (an int where constant)."""
        x, y = self.b.scope.dim(a), self.b.scope.dim(b)
        return dims.from_jax(x + y if op == "+" else x - y if op == "-" else x * y)

    def same_shape(self, a: Sequence[dims.Dim], b: Sequence[dims.Dim]) -> bool:
        return len(a) == len(b) and all(self.same_dim(x, y) for x, y in zip(a, b))

    # ---- values -----------------------------------------------------------------------------

    def constant(self, x: TensorRef) -> np.ndarray | None:
        """The value of ``x`` when it is a graph constant (a literal, a jaxpr const or folded), else None."""
        return self.b.constants.get(x.name) if x.name is not None else None

    def role(self, x: TensorRef) -> str | None:
        """The role (``kernel``, ``bias``, …) of a variable; None for other values and unknown roles."""
        return self._translator.roles.get(x.name)

    def is_variable(self, x: TensorRef) -> bool:
        return x.name in self.b.variables

    def inline(self, jaxpr, args: Sequence[TensorRef], name: str) -> list[TensorRef]:
        """The outputs of a sub-jaxpr (``Jaxpr`` or ``ClosedJaxpr``) translated in place on ``args``.

        Its nodes take the sources of their own equations, inside this
        equation's module path, with ``name`` added to the call path.
        """
        return self._translator.inline(jaxpr, list(args), self._frame, self.eqn, name)

    # ---- neighbours (grouping) --------------------------------------------------------------

    def sole_consumer(self, var):
        """The one equation that reads ``var`` (once), or None (several readers, or a jaxpr output)."""
        return self._frame.sole_consumer(var)

    def uses(self, var) -> int:
        """How many times ``var`` is read in this jaxpr (an output of the jaxpr counts once)."""
        return self._frame.uses(var)

    def producer(self, var):
        """The equation of this jaxpr that computes ``var`` (None for inputs and literals)."""
        return self._frame.producer(var)

    def known(self, var) -> TensorRef | None:
        """``var``'s value if it is translated already (or is a literal), else None."""
        return self._frame.known(var)

    def absorb(self, eqn, result: TensorRef) -> None:
        """Marks a later equation of this jaxpr as translated by this one, its output being ``result``."""
        self._frame.absorb(eqn, result)
