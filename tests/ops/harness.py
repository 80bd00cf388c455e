"""Table-driven op tests: convert a small torch function, compare with torch eager.

Each ``Case`` names a torch function and its inputs. ``run_case`` converts it
with ``unigraph.from_torch`` (dimension 0 dynamic unless ``dynamic=False``),
checks that the graph uses the unigraph ops the case names, and compares
the converted output with torch's: shape first, then dtype, then values.
A dynamic case also runs the same conversion at another batch size.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
import torch

import unigraph as ug
from unigraph.frontends.torch_export import to_numpy
from unigraph.dtypes import jax_dtype


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
    used = conv.graph.op_histogram()
    missing = [op for op in case.ops if op not in used]
    assert not missing, f"graph lacks {missing}; it has {sorted(used)}\n{conv.graph}"
    compare(module, conv, xs, case)
    if case.dynamic:
        compare(module, conv, _grow_batch(xs), case)


def compare(module, conv, xs: list[torch.Tensor], case: Case) -> None:
    with torch.no_grad():
        expected = module(*xs)
    got = conv(*[to_numpy(x) for x in xs])
    want_leaves = _leaves(expected)
    got_leaves = _leaves(got)
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


def _leaves(x) -> list:
    if isinstance(x, dict):
        return [leaf for v in x.values() for leaf in _leaves(v)]
    if isinstance(x, (tuple, list)):
        return [leaf for v in x for leaf in _leaves(v)]
    return [x]
