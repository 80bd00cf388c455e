"""The torch frontend translates torch.export's program as it is when that is exact, else after functionalization.

Every case compares the conversion with torch eager, and checks which route
it took (``translatable_as_is``): in-place writes that nothing observes are
translated as their functional ops; writes to inputs, buffers and views go
through torch's functionalization.
"""

from __future__ import annotations

import itertools

import ml_dtypes
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import unigraph as ug
from unigraph.errors import ExportError
from unigraph.frontends import torch_export
from unigraph.frontends.builder import transposed


class Fn(torch.nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn
        self.register_buffer("mean", torch.randn(3))
        self.register_buffer("var", torch.rand(3) + 0.5)

    def forward(self, x):
        return self.fn(self, x)


def _check(fn, as_is: bool | None, x=None):
    torch.manual_seed(0)
    model = Fn(fn).eval()
    x = torch.randn(4, 3) if x is None else x
    program, _ = torch_export.export(model, (x.clone(),), {}, torch_export.BATCH, False)
    if as_is is not None:
        assert torch_export.translatable_as_is(program) is as_is
    want = model(x.clone())
    conv = ug.from_torch(model, (x.clone(),))
    np.testing.assert_allclose(np.asarray(conv(x.numpy())), want.numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "fn",
    [
        lambda m, x: torch.relu_(x * 2).add_(1).mul_(x),  # a chain of writes to fresh values
        lambda m, x: (lambda y: (y.add_(1), y * 3)[1])(x * 2),  # torch records the later read as the write's result
        lambda m, x: F.hardtanh(x - 1, -0.5, 0.5, inplace=True) + x,
        lambda m, x: F.batch_norm(x, m.mean, m.var, training=False),
        lambda m, x: F.batch_norm(x, None, None, training=True),  # no statistics to update
    ],
    ids=["chain", "read-after-write", "hardtanh_", "batch_norm-eval", "batch_norm-no-stats"],
)
def test_unobserved_writes_translate_as_is(fn):
    _check(fn, as_is=True)


@pytest.mark.parametrize(
    "fn",
    [
        lambda m, x: x.add_(1) * 2,  # the caller's input
        lambda m, x: (lambda y: (y[:, 0].fill_(1), y)[1])(x * 2),  # through a view
        lambda m, x: (lambda y: (lambda v: (y.add_(1), v * 2)[1])(y.view(-1)))(x * 2),  # seen by a view
        lambda m, x: F.batch_norm(x, m.mean.clone(), m.var.clone(), training=True),  # updates statistics
    ],
    ids=["input", "view-write", "view-read", "batch_norm-training"],
)
def test_observed_writes_are_functionalized(fn):
    _check(fn, as_is=False)


def test_buffer_writes_are_refused():
    def fn(m, x):
        m.mean.add_(1)
        return x + m.mean

    with pytest.raises(ExportError, match="buffer mutation"):
        ug.from_torch(Fn(fn), (torch.randn(4, 3),))


@pytest.mark.parametrize("start,end", [(0, -1), (1, -1), (1, 2), (2, 3), (-2, -1), (3, 3)])
def test_flatten(start, end):
    x = torch.randn(2, 3, 4, 5)
    _check(lambda m, y: torch.flatten(y, start, end) * 2, as_is=True, x=x)


def test_variables_are_copies():
    model = torch.nn.Linear(3, 2)
    conv = ug.from_torch(model, (torch.randn(2, 3),))
    kernel = model.weight.detach().numpy().T.copy()
    with torch.no_grad():
        model.weight.add_(1)
    np.testing.assert_array_equal(np.asarray(conv.variables["params"]["kernel"]), kernel)


@pytest.mark.parametrize("shape", [(300, 700), (64, 33, 3, 3), (7, 1, 200, 130), (2, 3, 4, 5, 300)])
def test_transposed(shape):
    array = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    for x in (array, array.astype(ml_dtypes.bfloat16), np.flip(array, 0)):
        for perm in itertools.permutations(range(len(shape))):
            got = transposed(x, perm)
            assert got.flags.c_contiguous and got.dtype == x.dtype
            np.testing.assert_array_equal(got, np.transpose(x, perm))
