"""Calls and control flow: inlined calls, unrolled loops, conditionals.

- Call-like primitives (``jit``, ``custom_jvp_call``, ``custom_vjp_call``,
  ``remat2`` from ``jax.checkpoint``) are inlined: their body is translated
  in place, its nodes keeping the call's name in their source
  (``relu/max``). Custom derivative rules do not matter to a forward graph.
- ``scan`` is unrolled ``length`` times (a static trip count; Keras RNN
  layers and ``nn.scan`` run under ``lax.scan``, so their sequence length
  is fixed at conversion). A scan over a symbolic length is unsupported.
- ``while`` is unrolled while its condition is a constant at conversion
  time (``fori_loop`` with static bounds); a condition that depends on the
  inputs is unsupported.
- ``cond`` with a constant index inlines that branch; otherwise every branch
  is translated and the results are selected by the index (branches are
  pure, so computing them all is exact).
"""

from __future__ import annotations

from unigraph.frontends.jax_ops import handles
from unigraph.frontends.jax_ops.common import select
from unigraph.frontends.jax_ops.context import Context, Unsupported

#: Iterations after which a ``while`` loop is refused rather than unrolled.
MAX_UNROLL = 10_000


def _call_name(cx: Context, default: str) -> str:
    return str(cx.eqn.params.get("name") or default)


@handles("jit")
def jit(cx: Context, *args, jaxpr, **_):
    return cx.inline(jaxpr, args, _call_name(cx, "jit"))


@handles("custom_jvp_call", "custom_vjp_call")
def custom_derivative_call(cx: Context, *args, call_jaxpr, **_):
    return cx.inline(call_jaxpr, args, _call_name(cx, cx.primitive))


@handles("remat2")
def remat(cx: Context, *args, jaxpr, **_):
    """``jax.checkpoint``: recomputation in the backward pass only."""
    return cx.inline(jaxpr, args, "checkpoint")


@handles("scan")
def scan(cx: Context, *args, jaxpr, length, reverse, num_consts, num_carry, **_):
    if not isinstance(length, int) or length == 0:
        raise Unsupported(f"scan of length {length}; only static, nonzero trip counts are unrolled")
    consts, carry = args[:num_consts], list(args[num_consts : num_consts + num_carry])
    xs = args[num_consts + num_carry :]
    steps = [_unstack(cx, x, length) for x in xs]
    ys: list[list] = []
    order = range(length - 1, -1, -1) if reverse else range(length)
    for i in order:
        out = cx.inline(jaxpr, [*consts, *carry, *(s[i] for s in steps)], "scan")
        carry, y = out[:num_carry], out[num_carry:]
        ys.append(y)
    if reverse:
        ys.reverse()
    stacked = [_stack(cx, [y[k] for y in ys]) for k in range(len(cx.out_types) - num_carry)]
    return [*carry, *stacked]


def _unstack(cx: Context, x, length: int) -> list:
    """The ``length`` slices of ``x`` along axis 0."""
    if length == 1:
        return [cx.emit("squeeze", x, axes=(0,))]
    pieces = cx.emit("split", x, n_out=length, sizes=(1,) * length, axis=0)
    return [cx.emit("squeeze", p, axes=(0,)) for p in pieces]


def _stack(cx: Context, values: list):
    expanded = [cx.emit("expand_dims", v, axes=(0,)) for v in values]
    return expanded[0] if len(expanded) == 1 else cx.emit("concat", *expanded, axis=0)


@handles("while")
def while_(cx: Context, *args, cond_jaxpr, body_jaxpr, cond_nconsts, body_nconsts, **_):
    cond_consts, body_consts = args[:cond_nconsts], args[cond_nconsts : cond_nconsts + body_nconsts]
    carry = list(args[cond_nconsts + body_nconsts :])
    for _ in range(MAX_UNROLL):
        (go,) = cx.inline(cond_jaxpr, [*cond_consts, *carry], "while/cond")
        value = cx.constant(go)
        if value is None:
            raise Unsupported(
                "while loop whose condition depends on the inputs; only loops with a trip count "
                "known at conversion time (fori_loop with static bounds) are unrolled"
            )
        if not bool(value):
            return carry
        carry = cx.inline(body_jaxpr, [*body_consts, *carry], "while/body")
    raise Unsupported(f"while loop running more than {MAX_UNROLL} iterations")


@handles("cond")
def cond(cx: Context, index, *args, branches, **_):
    value = cx.constant(index)
    if value is not None:
        chosen = min(max(int(value), 0), len(branches) - 1)  # lax.cond clamps the index
        return cx.inline(branches[chosen], args, f"cond/branch{chosen}")
    outs = [cx.inline(branch, args, f"cond/branch{i}") for i, branch in enumerate(branches)]
    index = cx.emit("clip", index, cx.scalar(0, index.dtype), cx.scalar(len(branches) - 1, index.dtype))
    return [select(cx, index, [out[k] for out in outs]) for k in range(len(cx.out_types))]
