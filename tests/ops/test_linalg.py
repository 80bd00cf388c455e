"""Linear algebra: linear layers (kernels stored (in, out)), matmul family, einsum."""

import pytest
import torch
from torch import nn

from tests.ops.harness import Case, T, params, run_case

# float32 matmuls: torch and XLA sum in different orders
TOL = dict(rtol=1e-5, atol=1e-5)


class Conv1D(nn.Module):
    """GPT-2's Conv1D: weight stored (in, out), applied with addmm."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(6, 5))
        self.bias = nn.Parameter(torch.randn(5))

    def forward(self, x):
        shape = x.shape[:-1] + (5,)
        return torch.addmm(self.bias, x.view(-1, 6), self.weight).view(shape)


CASES = [
    Case("linear", nn.Linear(6, 5), [T((4, 6))], ("dense",), **TOL),
    Case("linear_3d", nn.Linear(6, 5), [T((2, 3, 6))], ("dense",), **TOL),
    Case("linear_no_bias", nn.Linear(6, 5, bias=False), [T((4, 6))], ("dense",), **TOL),
    Case("linear_functional_activation_weight", lambda x, w: nn.functional.linear(x, w), [T((4, 6)), T((3, 6))],
         ("dense", "transpose"), dynamic=False, **TOL),
    Case("addmm_conv1d", Conv1D(), [T((2, 3, 6))], ("dense",), **TOL),
    Case("addmm_scaled", lambda b, x, w: torch.addmm(b, x, w, beta=0.5, alpha=2.0), [T((5,)), T((4, 6)), T((6, 5))],
         ("matmul", "mul", "add"), dynamic=False, **TOL),
    Case("mm", torch.mm, [T((4, 6)), T((6, 3))], ("matmul",), dynamic=False, **TOL),
    Case("bmm", torch.bmm, [T((2, 4, 6)), T((2, 6, 3))], ("matmul",), **TOL),
    Case("matmul_broadcast", torch.matmul, [T((2, 3, 4, 6)), T((6, 5))], ("matmul",), **TOL),
    Case("matmul_vector", torch.matmul, [T((2, 4, 6)), T((6,))], ("matmul",), **TOL),
    Case("baddbmm", lambda b, x, y: torch.baddbmm(b, x, y, beta=0.5, alpha=2.0), [T((2, 4, 3)), T((2, 4, 6)), T((2, 6, 3))],
         ("matmul", "add"), **TOL),
    Case("einsum_nchw_channel_mix", lambda x, w: torch.einsum("bchw,dc->bdhw", x, w), [T((2, 3, 4, 5)), T((6, 3))],
         ("einsum",), dynamic=False, **TOL),
    Case("einsum_attention_scores", lambda q, k: torch.einsum("bhqd,bhkd->bhqk", q, k), [T((2, 4, 5, 8)), T((2, 4, 7, 8))],
         ("einsum",), **TOL),
    Case("einsum_implicit_output", lambda x, y: torch.einsum("ij,jk", x, y), [T((4, 6)), T((6, 3))], ("einsum",), dynamic=False, **TOL),
    Case("einsum_trace_like", lambda x: torch.einsum("bii->b", x), [T((2, 4, 4))], ("einsum",), **TOL),
    # the two-equal-axes trap: 64 patches × embedding 64, only the numbers can tell the axes apart
    Case("linear_equal_axes", nn.Linear(64, 64), [T((2, 64, 64))], ("dense",), **TOL),
]


@pytest.mark.parametrize("case", params(CASES))
def test_op(case):
    run_case(case)


def test_linear_weight_is_stored_as_a_flax_kernel():
    import unigraph as ug

    layer = nn.Linear(6, 5).eval()
    conv = ug.from_torch(layer, (torch.randn(2, 6),))
    kernel = conv.variables["params"]["kernel"]
    assert kernel.shape == (6, 5)
    assert (kernel == layer.weight.detach().numpy().T).all()
