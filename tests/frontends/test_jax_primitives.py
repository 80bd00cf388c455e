"""Per-primitive tests of the jaxpr frontend: plain JAX functions through ``ug.from_jax``.

Each ``Case`` is a function ``fn(params, *inputs)``, converted once with the
batch dimension symbolic (unless the case says otherwise) and compared with
JAX itself at two batch sizes, run by JAX and by the torch backend's module. ``ops`` names unigraph ops the graph must
contain (the grouping the frontend promises). ``test_every_handler_is_exercised``
fails when a registered primitive handler appears in no case's jaxpr.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from jax import lax

import unigraph as ug
from unigraph.backends.torch import to_module
from unigraph.frontends.jax_ops import HANDLERS
from unigraph.frontends.jaxpr import trace

B = "B"  # marks the batch dimension in an input shape


@dataclasses.dataclass(frozen=True)
class In:
    """A seeded random input; ``B`` in ``shape`` is the batch size."""

    shape: tuple
    dtype: str = "float32"
    low: float = -2.0
    high: float = 2.0

    def make(self, batch: int, rng: np.random.Generator) -> np.ndarray:
        shape = tuple(batch if d == B else d for d in self.shape)
        if self.dtype == "bool":
            return rng.random(shape) > 0.5
        if np.issubdtype(np.dtype(self.dtype), np.integer):
            return rng.integers(int(self.low), int(self.high), shape).astype(self.dtype)
        return rng.uniform(self.low, self.high, shape).astype(self.dtype)


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    fn: Callable[..., Any]  # fn(params, *inputs)
    inputs: Sequence[In]
    params: Any = None
    ops: tuple[str, ...] = ()  # unigraph ops the graph must contain
    batches: tuple[int, ...] = (2, 5)  # converted at the first, checked at each
    shapes: Any = "batch"  # polymorphic_shapes
    rtol: float = 1e-5
    atol: float = 1e-6


X = In((B, 6))
POS = In((B, 6), low=0.1, high=3.0)
UNIT = In((B, 6), low=-0.9, high=0.9)
INT = In((B, 6), "int32", -20, 20)
BOOL = In((B, 6), "bool")
IMG = In((B, 8, 8, 3))
rng0 = np.random.default_rng(0)
DENSE = {"dense": {"kernel": rng0.normal(size=(6, 4)).astype("float32"), "bias": rng0.normal(size=(4,)).astype("float32")}}
CONV = {"conv": {"kernel": rng0.normal(size=(3, 3, 3, 5)).astype("float32"), "bias": rng0.normal(size=(5,)).astype("float32")}}
TABLE = {"embed": {"embedding": rng0.normal(size=(10, 4)).astype("float32")}}


def unary(name: str, fn, x: In = X, ops: tuple[str, ...] = ()) -> Case:
    return Case(name, lambda p, x: fn(x), [x], ops=ops)


def _conv(x, kernel, dims=("NHWC", "HWIO", "NHWC"), **kw):
    return lax.conv_general_dilated(x, kernel, kw.pop("strides", (1, 1)), kw.pop("padding", "SAME"),
                                    dimension_numbers=dims, **kw)


@jax.custom_vjp
def _clipped_sin(x):
    return jnp.sin(x)


_clipped_sin.defvjp(lambda x: (jnp.sin(x), x), lambda x, g: (g * jnp.cos(x),))


CASES = [
    # ---- elementwise -------------------------------------------------------------------------
    unary("neg", jnp.negative),
    unary("abs", jnp.abs),
    unary("sign", jnp.sign),
    unary("floor", jnp.floor),
    unary("ceil", jnp.ceil),
    unary("round-half-even", jnp.round, ops=("round",)),
    unary("round-away", lambda x: lax.round(x * 2) / 2, ops=("trunc",)),
    unary("exp", jnp.exp),
    unary("exp2", jnp.exp2),
    unary("expm1", jnp.expm1),
    unary("log", jnp.log, POS),
    unary("log1p", jnp.log1p, POS),
    unary("sqrt", jnp.sqrt, POS),
    unary("rsqrt", lax.rsqrt, POS),
    unary("square", jnp.square),
    unary("sin-cos-tan", lambda x: jnp.sin(x) + jnp.cos(x) + jnp.tan(x / 2)),
    unary("asin-acos-atan", lambda x: jnp.arcsin(x) + jnp.arccos(x) + jnp.arctan(x), UNIT),
    unary("sinh-cosh-tanh", lambda x: jnp.sinh(x) + jnp.cosh(x) + jnp.tanh(x)),
    unary("logistic", jax.nn.sigmoid, ops=("sigmoid",)),
    unary("erf-erf_inv", lambda x: jax.scipy.special.erf(x) + jax.scipy.special.erfinv(x), UNIT, ops=("erfinv",)),
    unary("is_finite", lambda x: jnp.isfinite(jnp.log(x))),
    unary("integer_pow", lambda x: x**3 + x**-2 + x**1, POS),
    unary("reduce_precision", lambda x: lax.reduce_precision(x, 8, 7)),
    unary("stop_gradient-copy-barrier",
          lambda x: lax.stop_gradient(x) + jnp.array(x, copy=True) + lax.optimization_barrier(x)),
    unary("sharding_constraint",
          lambda x: lax.with_sharding_constraint(x, jax.sharding.SingleDeviceSharding(jax.devices()[0])) * 2),
    unary("relu", jax.nn.relu, ops=("relu",)),
    unary("gelu-tanh", jax.nn.gelu),
    unary("gelu-erf", lambda x: jax.nn.gelu(x, approximate=False), ops=("erfc",)),
    unary("erfc-tail", lambda x: jnp.log(jax.scipy.special.erfc(x)), In((B, 6), low=2.0, high=9.0),
          ops=("erfc",)),  # log(1 - erf(x)) would be -inf there
    unary("softmax", lambda x: jax.nn.softmax(x, axis=-1) + jax.nn.softmax(x, axis=0), ops=("softmax",)),
    unary("log_softmax", lambda x: jax.nn.log_softmax(x, axis=1), ops=("log_softmax",)),
    unary("softmax-shared-exp", lambda x: jnp.exp(x - x.max(1, keepdims=True)) / jnp.exp(x).sum()),
    unary("convert_element_type", lambda x: x.astype(jnp.int32) + (x > 0).astype(jnp.int32), ops=("cast",)),
    Case("add-sub-mul-div", lambda p, x, y: (x + y) * (x - y) / y, [X, POS]),
    Case("div-rem-int", lambda p, x, y: (lax.div(x, y), lax.rem(x, y)), [INT, In((B, 6), "int32", 1, 7)],
         ops=("trunc_divide", "fmod")),
    Case("rem-float", lambda p, x, y: lax.rem(x, y), [X, POS]),
    Case("pow-atan2", lambda p, x, y: x**y + jnp.arctan2(x, y), [POS, X]),
    Case("max-min", lambda p, x, y: jnp.maximum(x, y) - jnp.minimum(x, y), [X, X]),
    Case("compare", lambda p, x, y: ((x == y) | (x != y)) & (x < y) ^ (x <= y) | (x > y) & ~(x >= y), [X, X]),
    Case("logic-int", lambda p, x, y: (x & y) | (x ^ y) | ~x, [INT, INT], ops=("bitwise_and", "bitwise_not")),
    Case("select_n-bool", lambda p, c, x, y: jnp.where(c, x, y), [BOOL, X, X]),
    Case("select_n-int", lambda p, i, x, y, z: lax.select_n(i, x, y, z), [In((B, 6), "int32", 0, 3), X, X, X]),
    unary("clamp", lambda x: lax.clamp(-0.5, x, 0.5), ops=("clip",)),
    unary("dim_as_value", lambda x: jnp.mean(x, axis=0), ops=("dim_value",)),
    unary("grad-inside", lambda x: jax.grad(lambda y: jnp.sum(jnp.sin(y) ** 2))(x)),
    unary("add_any", lambda x: jax.jvp(lambda y: y * jnp.sin(y), (x,), (x,))[1]),
    # ---- shape ------------------------------------------------------------------------------
    Case("broadcast_in_dim", lambda p, x, y: x[:, :, None] * y[:, None, :] + 1.0, [X, In((B, 4))],
         ops=("expand_dims",)),
    unary("broadcast-zeros", lambda x: x + jnp.zeros((x.shape[0], 6))),
    unary("reshape-transpose", lambda x: x.reshape(x.shape[0], 2, 3).transpose(0, 2, 1).reshape(-1)),
    unary("squeeze-expand", lambda x: jnp.squeeze(x[:, None, :, None], axis=(1, 3))),
    Case("concatenate", lambda p, x, y: jnp.concatenate([x, y, x], axis=1), [X, In((B, 2))]),
    Case("stack", lambda p, x, y: jnp.stack([x, y * 2, x], axis=-1) + jnp.stack([y, x])[1, :, :, None], [X, X],
         ops=("concat",)),
    unary("tile", lambda x: jnp.tile(x, (2, 1, 3)), ops=("tile",)),
    unary("tile-batch", lambda x: jnp.tile(x[:, :2], (2, 3)) + jnp.tile(x[:1, :4], (x.shape[0], 1))[:, :2].sum()),
    unary("slice", lambda x: x[:, 1:5:2] + x[:, :2]),
    unary("slice-batch", lambda x: x[1:] - x[:-1]),
    unary("split", lambda x: jnp.split(x, 3, axis=1)),
    unary("rev", lambda x: jnp.flip(x, axis=(0, 1))),
    unary("pad", lambda x: jnp.pad(x, ((1, 2), (0, 3)), constant_values=0.5)),
    unary("pad-negative-interior", lambda x: lax.pad(x, 0.0, ((0, 0, 0), (-1, 2, 2)))),
    unary("pad-interior-batch", lambda x: lax.pad(x, 1.0, ((1, 0, 1), (0, 0, 0)))),
    unary("iota-static", lambda x: x + jnp.arange(6)),
    unary("iota-symbolic", lambda x: x * jnp.arange(x.shape[0])[:, None], ops=("arange",)),
    Case("dynamic_slice", lambda p, x, i: lax.dynamic_slice(x, (0, i[0]), (x.shape[0], 3)),
         [X, In((1,), "int32", -2, 8)], shapes=("(batch, 6)", None), ops=("take",)),
    unary("dynamic_slice-const", lambda x: lax.dynamic_slice_in_dim(x, 4, 3, axis=1)),
    unary("index-scalar", lambda x: x[-1] + x[:, 2][:, None]),
    Case("dynamic_update_slice", lambda p, x, u, i: lax.dynamic_update_slice(x, u, (0, i[0])),
         [X, In((B, 2)), In((1,), "int32", -2, 8)], shapes=("(batch, 6)", "(batch, 2)", None),
         ops=("index_update",)),
    Case("dynamic_update_slice-const", lambda p, x, u: lax.dynamic_update_slice(x, u, (0, 3)),
         [X, In((B, 2))], ops=("slice_update",)),
    Case("dynamic_update_slice-2d", lambda p, x, u, i: lax.dynamic_update_slice(x, u, (i[0], 0, i[1])),
         [In((5, 4, 6)), In((2, 4, 3)), In((2,), "int32", 0, 4)], shapes=None, batches=(5,)),
    # ---- reductions, cumulative ops, sorting -----------------------------------------------------
    unary("reduce_sum-max-min", lambda x: x.sum(1) + x.max(0).sum() + x.min(axis=(0, 1))),
    unary("reduce_prod", lambda x: jnp.prod(x, axis=1)),
    Case("reduce_and-or", lambda p, x: (jnp.all(x, axis=1), jnp.any(x, axis=0)), [BOOL]),
    unary("argmax-argmin", lambda x: jnp.argmax(x, axis=1) + jnp.argmin(x, axis=0).sum()),
    unary("cumsum-cumprod", lambda x: jnp.cumsum(x, axis=1) + lax.cumprod(x, axis=0, reverse=True)),
    unary("cummax-cummin", lambda x: lax.cummax(x, axis=1) + lax.cummin(x, axis=1, reverse=True)),
    unary("sort", lambda x: jnp.sort(x, axis=1) + jnp.sort(x, axis=0, descending=True)),
    unary("argsort", lambda x: jnp.argsort(x, axis=1)),
    Case("sort-two-operands", lambda p, k, v: lax.sort((k, v), dimension=1, num_keys=1), [X, X],
         ops=("take_along_axis",)),
    unary("top_k", lambda x: lax.top_k(x, 3)),
    # ---- linear algebra ---------------------------------------------------------------------
    Case("dense", lambda p, x: x @ p["dense"]["kernel"] + p["dense"]["bias"].reshape(1, -1), [X],
         params=DENSE, ops=("dense",)),
    Case("matmul-batched", lambda p, x, y: x @ y, [In((B, 3, 4)), In((B, 4, 5))], ops=("matmul",)),
    Case("matmul-vector", lambda p, x, y: x @ y[0], [X, In((B, 6))], ops=("matmul",)),
    Case("einsum", lambda p, x, y: jnp.einsum("bij,bkj->bik", x, y), [In((B, 3, 4)), In((B, 5, 4))],
         ops=("einsum",)),
    Case("dot-int8-preferred", lambda p, x, y: lax.dot(x, y, preferred_element_type=jnp.int32),
         [In((B, 6), "int8", -5, 5), In((6, 3), "int8", -5, 5)], shapes=("(batch, 6)", None)),
    Case("bfloat16", lambda p, x, w: (x.astype(jnp.bfloat16) @ w.astype(jnp.bfloat16)).astype(jnp.float32),
         [X, In((6, 3))], shapes=("(batch, 6)", None), rtol=1e-2, atol=2e-2),  # bfloat16 has 3 significant digits
    # ---- convolutions -----------------------------------------------------------------------------
    Case("conv-nhwc", lambda p, x: _conv(x, p["conv"]["kernel"]) + p["conv"]["bias"].reshape(1, 1, 1, -1),
         [IMG], params=CONV, ops=("conv",)),
    Case("conv-nchw-oihw", lambda p, x: _conv(x, p["conv"]["kernel"].transpose(3, 2, 0, 1), ("NCHW", "OIHW", "NCHW")),
         [In((B, 3, 8, 8))], params=CONV),
    Case("conv-strided-dilated-groups",
         lambda p, x, k: _conv(x, k, strides=(2, 1), padding=((1, 2), (0, 1)), rhs_dilation=(1, 2), feature_group_count=2),
         [In((B, 9, 9, 4)), In((3, 2, 2, 6))], shapes=("(batch, _, _, _)", None)),
    Case("conv-transpose", lambda p, x, k: lax.conv_transpose(x, k, (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")),
         [In((B, 5, 5, 3)), In((3, 3, 3, 4))], shapes=("(batch, _, _, _)", None), ops=("conv_transpose",)),
    Case("conv-1d-nwc-out-ncw", lambda p, x, k: lax.conv_general_dilated(x, k, (1,), "VALID", dimension_numbers=("NWC", "WIO", "NCW")),
         [In((B, 7, 3)), In((3, 3, 2))], shapes=("(batch, _, _)", None)),
    # ---- pooling ---------------------------------------------------------------------------------
    unary("max_pool", lambda x: lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "SAME"), IMG,
          ops=("max_pool",)),
    unary("avg_pool", lambda x: lax.reduce_window(x, 0.0, lax.add, (1, 3, 3, 1), (1, 2, 2, 1), "SAME") / 9.0, IMG,
          ops=("avg_pool",)),
    unary("sum_pool-nchw", lambda x: lax.reduce_window(x, 0.0, lax.add, (1, 1, 2, 2), (1, 1, 1, 1), "VALID"),
          In((B, 3, 5, 5)), ops=("avg_pool",)),
    unary("min_pool", lambda x: lax.reduce_window(x, jnp.inf, lax.min, (1, 2, 2, 1), (1, 1, 1, 1), "VALID"), IMG),
    unary("reduce_window-generic", lambda x: lax.reduce_window(x, 0.0, lambda a, b: a + b, (1, 2), (1, 2), "VALID")),
    # ---- indexing ----------------------------------------------------------------------------------
    Case("take-embedding", lambda p, i: jnp.take(p["embed"]["embedding"], i, axis=0), [In((B, 3), "int32", 0, 10)],
         params=TABLE, ops=("embedding",)),
    Case("take-out-of-range", lambda p, x, i: jnp.take(x, i, axis=1), [X, In((B, 3), "int32", -8, 8)]),
    Case("getitem-array", lambda p, x, i: x[i[0]], [X, In((3,), "int32", -2, 2)], shapes=("(batch, 6)", None)),
    Case("getitem-columns", lambda p, x, i: x[:, i], [X, In((4,), "int32", -6, 6)], shapes=("(batch, 6)", None),
         ops=("take",)),
    Case("getitem-two-axes", lambda p, x, i, j: x[i, :, j], [In((5, 4, 6)), In((3,), "int32", 0, 5), In((3,), "int32", 0, 6)],
         shapes=None, batches=(5,), ops=("index",)),
    Case("getitem-mixed", lambda p, x, i: x[:, i, :2], [In((B, 5, 6)), In((3,), "int32", 0, 5)],
         shapes=("(batch, _, _)", None)),
    Case("getitem-scalar-and-array", lambda p, x, i: x[1, i], [In((4, 5, 6)), In((3,), "int32", 0, 5)],
         shapes=None, batches=(4,)),
    Case("take_along_axis", lambda p, x, i: jnp.take_along_axis(x, i, axis=1), [X, In((B, 3), "int32", 0, 6)],
         ops=("take_along_axis",)),
    Case("scatter-set", lambda p, x, i: x.at[i].set(1.0), [In((6, 4)), In((3,), "int32", -6, 6)], shapes=None,
         batches=(6,), ops=("index_update",)),
    Case("scatter-add", lambda p, x, i, u: x.at[:, i].add(u), [X, In((3,), "int32", 0, 6), In((B, 3))],
         shapes=("(batch, 6)", None, "(batch, 3)")),
    unary("scatter-column", lambda x: x.at[:, 0].set(2.0)),
    # ---- control flow ------------------------------------------------------------------------------
    unary("jit", lambda x: jax.jit(lambda y: jnp.sin(y) * 2)(x)),
    unary("custom_jvp", lambda x: jax.nn.silu(x) + jax.nn.softplus(x)),
    unary("custom_vjp", _clipped_sin),
    unary("checkpoint", lambda x: jax.checkpoint(lambda y: jnp.sin(y) * 2)(x)),
    Case("scan", lambda p, xs: lax.scan(lambda c, x: (c * 0.5 + x, c.sum()), jnp.zeros_like(xs[0]), xs), [In((4, B, 6))],
         shapes=("(_, batch, 6)",)),
    Case("scan-reverse", lambda p, xs: lax.scan(lambda c, x: (c + x, c * x), xs[0], xs, reverse=True), [In((3, B))],
         shapes=("(_, batch)",)),
    unary("fori_loop", lambda x: lax.fori_loop(0, 3, lambda i, c: c * 2 + i, x)),
    unary("while-constant", lambda x: lax.while_loop(lambda c: c[0] < 3, lambda c: (c[0] + 1, jnp.sin(c[1])), (0, x))[1]),
    unary("cond-constant", lambda x: lax.cond(True, lambda y: y + 1, lambda y: y - 1, x)),
    unary("cond-computed", lambda x: lax.cond(x.sum() > 0, lambda y: y + 1, lambda y: jnp.cos(y), x)),
    unary("switch-computed", lambda x: lax.switch(jnp.int32(x[0, 0] > 0) + 1, [jnp.sin, jnp.cos, jnp.tanh], x)),
]

#: Primitives with a handler that no case can emit in this JAX (none today).
_NOT_EMITTED: set[str] = set()


def _seed(case: Case) -> int:
    return zlib.crc32(case.id.encode())


def _inputs(case: Case, batch: int) -> list[np.ndarray]:
    rng = np.random.default_rng(_seed(case))
    return [spec.make(batch, rng) for spec in case.inputs]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_primitive(case: Case):
    """JAX's result, the converted graph's under JAX, and under torch (the torch backend's module)."""
    conv = ug.from_jax(case.fn, case.params, *_inputs(case, case.batches[0]), polymorphic_shapes=case.shapes)
    missing = set(case.ops) - set(conv.graph.op_histogram())
    assert not missing, f"the graph lacks {missing}:\n{conv.graph}"
    runtime = to_module(conv)
    for batch in case.batches:
        xs = _inputs(case, batch)
        reference = lambda *a: case.fn(case.params, *map(jnp.asarray, a))  # noqa: E731
        report = ug.check(reference, conv, xs, rtol=case.rtol, atol=case.atol)
        assert report.ok, f"batch {batch}:\n{report}\n{conv.graph}"
        with torch.no_grad():
            got = runtime(*(torch.from_numpy(x) for x in xs))
        for want, value in zip(jax.tree.leaves(reference(*xs)), jax.tree.leaves(jax.tree.map(np.asarray, got))):
            np.testing.assert_allclose(value, np.asarray(want), rtol=max(case.rtol, 1e-5), atol=max(case.atol, 1e-5))


def test_batch_is_symbolic_by_default():
    conv = ug.from_jax(lambda p, x: x * 2, None, np.ones((3, 4), np.float32))
    assert conv.graph.types[conv.graph.inputs[0]].shape == ("batch", 4)


def _primitives(jaxpr, found: set) -> set:
    for eqn in jaxpr.eqns:
        found.add(eqn.primitive.name)
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            _primitives(sub, found)
    return found


def test_every_handler_is_exercised():
    seen: set[str] = set()
    for case in CASES:
        xs = _inputs(case, case.batches[0])
        traced = trace(lambda _, *a: case.fn(case.params, *a), [], xs, {}, polymorphic_shapes=case.shapes)
        _primitives(traced.jaxpr.jaxpr, seen)
    unexercised = set(HANDLERS.names()) - seen - _NOT_EMITTED
    assert not unexercised, f"handlers no case exercises: {sorted(unexercised)}"
