"""``torch.cond`` translated: both branches computed and selected by the predicate, or the one taken.

Each case compares the conversion with torch eager on inputs that take each
branch; the graph's ops show which translation it got.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import unigraph as ug

RTOL, ATOL = 1e-4, 1e-5


def _leaves(value) -> list[np.ndarray]:
    if isinstance(value, (tuple, list)):
        return [np.asarray(v.detach().numpy() if isinstance(v, torch.Tensor) else v) for v in value]
    return [np.asarray(value.detach().numpy() if isinstance(value, torch.Tensor) else value)]


def _compare(model: nn.Module, conv, x: torch.Tensor) -> None:
    with torch.no_grad():
        want = _leaves(model(x))
    got = _leaves(conv(x.numpy()))
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL)


def _ops(conv) -> list[str]:
    return [n.op for n in conv.graph.nodes]


class TensorPredicate(nn.Module):
    """The predicate is a 0-d bool tensor; each branch runs a Linear of its own."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(10, 10)
        self.b = nn.Linear(10, 10)

    def forward(self, x):
        return torch.cond(x.sum() > 0, lambda t: self.a(t).relu(), lambda t: self.b(t).tanh(), (x,))


def _positive(*shape) -> torch.Tensor:
    return torch.rand(*shape) + 0.1


def test_tensor_predicate_takes_either_branch():
    torch.manual_seed(0)
    model = TensorPredicate().eval()
    x = _positive(4, 10)
    conv = ug.from_torch(model, (x,))
    assert "where" in _ops(conv) and _ops(conv).count("dense") == 2
    assert set(conv.variables["params"]) == {"a", "b"}
    for sample in (x, -x, _positive(7, 10), -_positive(2, 10)):  # both signs, other batch sizes
        _compare(model, conv, sample)


def test_torch_module_round_trip():
    torch.manual_seed(1)
    model = TensorPredicate().eval()
    x = _positive(3, 10)
    module = ug.from_torch(model, (x,)).to_torch()
    with torch.no_grad():
        for sample in (x, -x):
            torch.testing.assert_close(module(sample), model(sample), rtol=RTOL, atol=ATOL)


class ShapePredicate(nn.Module):
    """The predicate is a SymBool on the dynamic batch; each branch returns a tuple."""

    def forward(self, x):
        return torch.cond(x.shape[0] > 4, lambda t: (t.sin(), t * 2), lambda t: (t.cos(), t + 1), (x,))


def test_shape_predicate_on_dynamic_batch():
    model = ShapePredicate()
    conv = ug.from_torch(model, (torch.randn(6, 5),))
    assert "dim_value" in _ops(conv) and _ops(conv).count("where") == 2
    assert conv.graph.types[conv.graph.inputs[0]].shape[0] == "batch"
    for batch in (6, 5, 4, 2):  # 5 and 4 straddle the threshold
        _compare(model, conv, torch.randn(batch, 5))


def test_static_shape_predicate_translates_the_branch_taken():
    model = ShapePredicate()
    with pytest.warns(UserWarning, match="Pred is a Python constant"):  # torch specializes the cond itself
        conv = ug.from_torch(model, (torch.randn(3, 5),), dynamic_shapes=None)
    assert "where" not in _ops(conv) and "cos" in _ops(conv) and "sin" not in _ops(conv)
    _compare(model, conv, torch.randn(3, 5))


class OneBranchParameters(nn.Module):
    """Only the true branch uses a parameter; the false branch passes a tuple of plain ops."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(6, 6)

    def forward(self, x):
        def true_fn(t):
            y = self.lin(t)
            return y, y.sum(-1)

        def false_fn(t):
            return t * 3, t.mean(-1)

        return torch.cond(x[:, 0].mean() > 0, true_fn, false_fn, (x,))


def test_parameters_in_one_branch_and_tuple_outputs():
    torch.manual_seed(2)
    model = OneBranchParameters().eval()
    x = _positive(4, 6)
    conv = ug.from_torch(model, (x,))
    assert set(conv.variables["params"]["lin"]) == {"kernel", "bias"}
    for sample in (x, -x):
        _compare(model, conv, sample)


class Nested(nn.Module):
    """A cond inside a cond's branch; the inner one uses a Linear and a one-element (not 0-d) predicate."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(8, 8)

    def forward(self, x):
        def outer_true(t):
            pred = (t.mean() > 0.5).reshape(1)
            return torch.cond(pred, lambda u: self.lin(u).sum(), lambda u: u.flip(-1).amax(), (t,))

        return torch.cond(x.sum() > 0, outer_true, lambda t: F.gelu(t).sum() * 2, (x,))


def test_nested_conds_and_a_one_element_predicate():
    torch.manual_seed(3)
    model = Nested().eval()
    conv = ug.from_torch(model, (_positive(3, 8),))
    assert _ops(conv).count("where") == 2
    high = _positive(3, 8) + 1.0  # mean > 0.5: the Linear
    low = _positive(3, 8) * 0.2  # positive sum, mean < 0.5: the flip
    for sample in (high, low, -high):
        _compare(model, conv, sample)
