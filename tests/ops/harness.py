"""Table-driven op tests: convert a small torch function, compare with torch eager.

Each ``Case`` names a torch function and its inputs. ``run_case`` converts it
with ``unigraph.from_torch`` (dimension 0 dynamic unless ``dynamic=False``),
typechecks the graph (``Graph.typecheck``), checks that it uses the unigraph
ops the case names, and compares with torch's output, shape first, then
dtype, then values: the JAX run of the graph, the graph run back in torch
by the torch backend (its generated module), and the graph run by its Keras
lowerings (``backends/keras_runtime``, under this process's Keras backend,
TensorFlow). A dynamic case also runs the same conversion at another batch size.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
import pytest
import torch
from torch.export import Dim

import keras

import unigraph as ug
from unigraph import signature
from unigraph.backends import keras_runtime
from unigraph.backends.torch import to_module
from unigraph.converted import Converted
from unigraph.frontends.torch_tensors import to_numpy
from unigraph.interpreter import infer_types
from unigraph.ir import Graph, Node, TensorType
from unigraph.params import ParamMap
from unigraph.dtypes import jax_dtype, same_in_jax


@dataclasses.dataclass(frozen=True)
class T:
    """A seeded random input: floats ~ N(0, 1) (or uniform in [low, high)), ints in [low, high)."""

    shape: tuple[int, ...]
    dtype: str = "float32"
    low: float | None = None
    high: float | None = None

    def make(self, generator: torch.Generator) -> torch.Tensor:
        dtype = getattr(torch, self.dtype)
        if dtype == torch.bool:
            return torch.rand(self.shape, generator=generator) > 0.5
        if dtype.is_floating_point:
            if self.low is None:
                return torch.randn(self.shape, generator=generator).to(dtype)
            x = torch.rand(self.shape, generator=generator)
            return (self.low + (self.high - self.low) * x).to(dtype)
        low = 0 if self.low is None else int(self.low)
        high = 10 if self.high is None else int(self.high)
        return torch.randint(low, high, self.shape, generator=generator, dtype=dtype)


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    fn: Callable[..., Any]  # a function of the inputs, or an nn.Module
    inputs: Sequence[T | torch.Tensor]
    ops: tuple[str, ...] = ()  # unigraph ops the conversion must contain
    rtol: float = 1e-5
    atol: float = 1e-6
    dynamic: bool = True  # dimension 0 dynamic (inputs sized like the first); rerun at batch + 1
    xfail: str | None = None

    def param(self):
        marks = [pytest.mark.xfail(reason=self.xfail, strict=True)] if self.xfail else []
        return pytest.param(self, id=self.id, marks=marks)


def params(cases: Sequence[Case]) -> list:
    ids = [c.id for c in cases]
    duplicates = {i for i in ids if ids.count(i) > 1}
    assert not duplicates, f"duplicate case ids: {duplicates}"
    return [c.param() for c in cases]


class _Fn(torch.nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, *xs):
        return self.fn(*xs)


def _inputs(case: Case) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(zlib.crc32(case.id.encode()))
    return [x.make(generator) if isinstance(x, T) else x for x in case.inputs]


def _grow_batch(xs: list[torch.Tensor]) -> list[torch.Tensor]:
    """Inputs one larger in the batch: dim 0 of the inputs sharing the first input's size."""
    size = next((x.shape[0] for x in xs if x.ndim), None)
    return [torch.cat([x, x[:1]]) if x.ndim and x.shape[0] == size else x for x in xs]


def run_case(case: Case) -> None:
    torch.manual_seed(0)
    module = case.fn if isinstance(case.fn, torch.nn.Module) else _Fn(case.fn)
    module.eval()
    xs = _inputs(case)
    conv = ug.from_torch(module, tuple(xs), dynamic_shapes="batch" if case.dynamic else None)
    conv.graph.typecheck()
    used = conv.graph.op_histogram()
    missing = [op for op in case.ops if op not in used]
    assert not missing, f"graph lacks {missing}; it has {sorted(used)}\n{conv.graph}"
    runtime = to_module(conv)
    batches = [xs, _grow_batch(xs)] if case.dynamic else [xs]
    for inputs in batches:
        compare(module, conv, inputs, case)
        compare_torch_runtime(module, runtime, inputs, case)
        compare_keras_runtime(module, conv, inputs, case)


def compare(module, conv, xs: list[torch.Tensor], case: Case) -> None:
    with torch.no_grad():
        expected = module(*xs)
    got = conv(*[to_numpy(x) for x in xs])
    want_leaves = leaves(expected)
    got_leaves = leaves(got)
    assert len(want_leaves) == len(got_leaves), f"{len(got_leaves)} outputs, torch has {len(want_leaves)}"
    for i, (w, g) in enumerate(zip(want_leaves, got_leaves)):
        g = np.asarray(g)
        where = f"output {i} at batch {xs[0].shape[0] if xs and xs[0].ndim else '-'}"
        assert tuple(g.shape) == tuple(w.shape), f"{where}: shape {g.shape}, torch {tuple(w.shape)}"
        want_dtype = str(w.dtype).removeprefix("torch.")
        assert g.dtype == jax_dtype(want_dtype), f"{where}: dtype {g.dtype}, torch {want_dtype}"
        w = w.float().numpy() if w.dtype == torch.bfloat16 else w.numpy()
        if w.dtype == np.bool_ or np.issubdtype(w.dtype, np.integer):
            np.testing.assert_array_equal(g, w, err_msg=where)
        else:
            np.testing.assert_allclose(
                g.astype(np.float32), w.astype(np.float32), rtol=case.rtol, atol=case.atol, err_msg=where
            )


def compare_torch_runtime(module, runtime, xs: list[torch.Tensor], case: Case) -> None:
    """The converted graph run back in torch (``backends.torch``) against torch eager."""
    with torch.no_grad():
        expected = leaves(module(*xs))
        got = leaves(runtime(*xs))
    assert len(got) == len(expected), f"torch runtime: {len(got)} outputs, torch has {len(expected)}"
    for i, (w, g) in enumerate(zip(expected, got)):
        where = f"torch runtime output {i}"
        assert tuple(g.shape) == tuple(w.shape), f"{where}: shape {tuple(g.shape)}, torch {tuple(w.shape)}"
        assert g.dtype == w.dtype, f"{where}: dtype {g.dtype}, torch {w.dtype}"
        if w.dtype == torch.bool or not (w.is_floating_point() or w.is_complex()):
            assert torch.equal(g, w), where
        else:
            torch.testing.assert_close(g.float(), w.float(), rtol=case.rtol, atol=case.atol, equal_nan=True, msg=where)


def compare_keras_runtime(module, conv, xs: list[torch.Tensor], case: Case) -> None:
    """The graph run by its Keras lowerings against torch eager: shapes, dtypes (as JAX holds them: int64
    may run as int32), values."""
    with torch.no_grad():
        expected = leaves(module(*xs))
    outputs = keras_runtime.run(conv.graph, conv.variables, [to_numpy(x) for x in xs])
    got = leaves(signature.structure(conv.graph, [keras.ops.convert_to_numpy(y) for y in outputs]))
    assert len(got) == len(expected), f"Keras runtime: {len(got)} outputs, torch has {len(expected)}"
    for i, (w, g) in enumerate(zip(expected, got)):
        where = f"Keras runtime output {i}"
        want_dtype = str(w.dtype).removeprefix("torch.")
        assert tuple(g.shape) == tuple(w.shape), f"{where}: shape {g.shape}, torch {tuple(w.shape)}"
        assert same_in_jax(g.dtype.name, want_dtype), f"{where}: dtype {g.dtype}, torch {want_dtype}"
        w = w.float().numpy() if w.dtype == torch.bfloat16 else w.numpy()
        if w.dtype == np.bool_ or np.issubdtype(w.dtype, np.integer):
            np.testing.assert_array_equal(g, w, err_msg=where)
        else:
            np.testing.assert_allclose(
                g.astype(np.float32), w.astype(np.float32), rtol=case.rtol, atol=case.atol, err_msg=where
            )


def leaves(x) -> list:
    """The tensors of a nested output (dicts, tuples, lists), in order."""
    if isinstance(x, dict):
        return [leaf for v in x.values() for leaf in leaves(v)]
    if isinstance(x, (tuple, list)):
        return [leaf for v in x for leaf in leaves(v)]
    return [x]


# ---- single nodes: the torch backend against the JAX op ---------------------------------------


def run_node(op: str, inputs, *, rtol=1e-5, atol=1e-6, dynamic=True, export=False, **attrs):
    """One ``op`` node on graph ``inputs`` (torch tensors or NumPy arrays; None: an absent optional input), run by
    ``unigraph.backends.torch.to_module`` and by JAX on the same inputs, at their batch size and one more.

    The torch outputs must have the shapes of JAX's and the dtypes the graph declares, and JAX's
    values. ``dynamic``: dimension 0 of the first input is the symbol ``batch``; ``export``: the
    module is also traced by ``torch.export`` (that dimension dynamic) and the program rerun.
    """

    inputs = [torch.from_numpy(np.asarray(t)) if isinstance(t, np.ndarray) else t for t in inputs]
    names = [None if t is None else f"in{i}" for i, t in enumerate(inputs)]
    given = [(n, t) for n, t in zip(names, inputs) if t is not None]
    types = {}
    for i, (name, t) in enumerate(given):
        shape = tuple(t.shape)
        types[name] = TensorType((("batch",) + shape[1:]) if dynamic and i == 0 else shape, str(t.dtype).removeprefix("torch."))
    out_types = infer_types(op, [None if n is None else types[n] for n in names], attrs)
    outs = [f"out{i}" for i in range(len(out_types))]
    types.update(zip(outs, out_types))
    graph = Graph(tuple(n for n, _ in given), tuple(outs), (Node(op, tuple(names), tuple(outs), attrs),), types).validate()
    conv = Converted(graph, {}, ParamMap([]))
    module = to_module(conv)
    xs = [t for _, t in given]
    batches = [xs, [torch.cat([xs[0], xs[0][:1]]), *xs[1:]]] if dynamic else [xs]
    program = None
    if export:
        spec = tuple({0: Dim("batch", min=1)} if i == 0 and dynamic else None for i in range(len(xs)))
        program = torch.export.export(module, tuple(xs), dynamic_shapes=spec).module()
    for batch in batches:
        with jax.enable_x64(True):  # int64 results as the graph declares them
            want = conv(*[to_numpy(x) for x in batch])
        want = want if isinstance(want, tuple) else (want,)
        with torch.no_grad():
            runs = [module(*batch)] + ([program(*batch)] if program is not None else [])
        keras_outputs = keras_runtime.run(graph, {}, [to_numpy(x) for x in batch])
        for g, w, i in zip(keras_outputs, want, range(len(want))):
            where = f"{op} Keras output {i} at batch {batch[0].shape[0] if batch and batch[0].ndim else '-'}"
            g, w = keras.ops.convert_to_numpy(g), np.asarray(w)
            assert tuple(g.shape) == w.shape, f"{where}: shape {tuple(g.shape)}, JAX {w.shape}"
            assert same_in_jax(g.dtype.name, out_types[i].dtype), f"{where}: dtype {g.dtype}, graph {out_types[i].dtype}"
            if np.issubdtype(w.dtype, np.inexact):
                np.testing.assert_allclose(g.astype(np.float32), w.astype(np.float32), rtol=rtol, atol=atol, err_msg=where)
            else:
                np.testing.assert_array_equal(g, w, err_msg=where)
        for got in runs:
            got = got if isinstance(got, tuple) else (got,)
            assert len(got) == len(want) == len(out_types)
            for i, (g, w, t) in enumerate(zip(got, want, out_types)):
                where = f"{op} output {i} at batch {batch[0].shape[0] if batch and batch[0].ndim else '-'}"
                w = np.asarray(w)
                assert tuple(g.shape) == w.shape, f"{where}: shape {tuple(g.shape)}, JAX {w.shape}"
                assert str(g.dtype).removeprefix("torch.") == t.dtype, f"{where}: dtype {g.dtype}, graph {t.dtype}"
                if g.is_floating_point():
                    np.testing.assert_allclose(g.float().numpy(), w.astype(np.float32), rtol=rtol, atol=atol, err_msg=where)
                else:
                    np.testing.assert_array_equal(g.numpy(), w, err_msg=where)


def random_tensor(*shape, dtype=torch.float32, seed=0) -> torch.Tensor:
    """Seeded N(0, 1) values; booleans where positive, integers ×10 truncated."""
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    if dtype == torch.bool:
        return x > 0
    return x.to(dtype) if dtype.is_floating_point else (x * 10).to(dtype)


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """NCHW… → NHWC… (a Keras-style activation)."""
    return x.movedim(1, -1).contiguous()
