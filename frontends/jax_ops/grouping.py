"""Softmax and log-softmax recognized in the primitives ``jax.nn`` spells them with.

``jax.nn.softmax(x, axis)`` traces into nine equations (max-shifted
``exp``, its sum, a division) and ``jax.nn.log_softmax`` into ten. unigraph's
``softmax`` and ``log_softmax`` are defined as those very functions, so
where the equations match, the last one is translated as the op (the
earlier ones, left without readers, are dropped with the graph's dead
nodes). The pattern is matched backwards from the last equation and only
when every intermediate value is read by the pattern alone, so nothing is
computed twice; half-precision inputs are left alone (unigraph's ops
compute them in float32, ``jax.nn`` does not).
"""

from __future__ import annotations

import numpy as np

from unigraph.frontends.builder import TensorRef
from unigraph.frontends.jax_ops.context import Context


def softmax(cx: Context) -> TensorRef | None:
    """``div(e, sum(e))`` with ``e = exp(x - max(x))``: ``softmax(x)``, else None."""
    numerator, denominator = cx.eqn.invars
    total = _total(cx, denominator, numerator)
    if total is None or cx.uses(numerator) != 2:
        return None
    shifted, axis = total
    return _emit(cx, "softmax", shifted, axis, shifted_uses=1)


def log_softmax(cx: Context) -> TensorRef | None:
    """``sub(s, log(sum(exp(s))))`` with ``s = x - max(x)``: ``log_softmax(x)``, else None."""
    shifted, log = cx.eqn.invars
    log_eqn = _single(cx, log, "log")
    if log_eqn is None:
        return None
    exp_var = _sum_source(cx, log_eqn.invars[0])
    exp_eqn = None if exp_var is None else _single(cx, exp_var[0], "exp")
    if exp_eqn is None or exp_eqn.invars[0] is not shifted:
        return None
    return _emit(cx, "log_softmax", shifted, exp_var[1], shifted_uses=2)


def _total(cx: Context, denominator, numerator):
    """``(shifted, axis)`` when ``denominator`` is the broadcast sum of ``numerator = exp(shifted)``."""
    summed = _sum_source(cx, denominator)
    if summed is None or summed[0] is not numerator:
        return None
    exp_eqn = cx.producer(numerator)
    if exp_eqn is None or exp_eqn.primitive.name != "exp":
        return None
    return exp_eqn.invars[0], summed[1]


def _sum_source(cx: Context, var):
    """``(x, axis)`` when ``var`` is ``broadcast_in_dim(reduce_sum(x, axis))`` restoring that axis."""
    spread = _single(cx, var, "broadcast_in_dim")
    total = None if spread is None else _single(cx, spread.invars[0], "reduce_sum")
    if total is None or len(total.params["axes"]) != 1:
        return None
    axis = int(total.params["axes"][0])
    if not _restores(spread, axis):
        return None
    return total.invars[0], axis


def _emit(cx: Context, op: str, shifted, axis: int, shifted_uses: int) -> TensorRef | None:
    """The op on ``x`` when ``shifted`` is ``x - stop_gradient(broadcast(max(-inf, reduce_max(x, axis))))``."""
    sub = _single(cx, shifted, "sub", uses=shifted_uses)
    if sub is None:
        return None
    x, peak = sub.invars
    peak_eqn = _single(cx, peak, "stop_gradient")
    spread = _single(cx, peak_eqn.invars[0] if peak_eqn else peak, "broadcast_in_dim")
    floor = None if spread is None or not _restores(spread, axis) else _single(cx, spread.invars[0], "max")
    if floor is None:
        return None
    maximum = _max_with_minus_inf(cx, floor)
    if maximum is None or maximum.invars[0] is not x or tuple(maximum.params["axes"]) != (axis,):
        return None
    source = cx.known(x)
    if source is None or source.dtype not in ("float32", "float64"):
        return None
    return cx.emit(op, source, axis=axis)


def _max_with_minus_inf(cx: Context, floor):
    """The ``reduce_max`` equation ``floor = max(-inf, reduce_max(x))`` reads (either operand order)."""
    for bound, value in (floor.invars, floor.invars[::-1]):
        constant = cx.known(bound)
        limit = None if constant is None else cx.constant(constant)
        if limit is not None and limit.ndim == 0 and limit == -np.inf:
            return _single(cx, value, "reduce_max")
    return None


def _single(cx: Context, var, primitive: str, uses: int = 1):
    """The equation of ``primitive`` computing ``var``, when ``var`` has exactly ``uses`` readers."""
    eqn = cx.producer(var)
    if eqn is None or eqn.primitive.name != primitive or cx.uses(var) != uses:
        return None
    return eqn


def _restores(spread, axis: int) -> bool:
    """Whether a ``broadcast_in_dim`` puts back exactly the reduced ``axis`` (as size 1)."""
    rank = len(spread.outvars[0].aval.shape)
    dims = tuple(int(d) for d in spread.params["broadcast_dimensions"])
    return dims == tuple(a for a in range(rank) if a != axis) and spread.outvars[0].aval.shape[axis] == 1
