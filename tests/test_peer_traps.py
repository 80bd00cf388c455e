"""Regression tests for the places today's converters break (../shared/peer-traps.md).

Each test builds the small model that tripped a peer converter and checks the
conversion against torch eager with the checker (float32, rtol 1e-4, atol 1e-5).
"""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import unigraph as ug


def _assert_matches(model, *inputs, batches=(2, 3)):
    model.eval()
    conv = ug.from_torch(model, inputs)
    for batch in batches:
        xs = tuple(torch.cat([x] * batch)[:batch] if x.ndim else x for x in inputs)
        report = ug.check(model, conv, xs)
        assert report.ok, str(report)
    return conv


class EqualAxes(nn.Module):
    """ViT-like: 64 patches of embedding 64; layout guessing picked the wrong axis (onnx2tf)."""

    def __init__(self):
        super().__init__()
        self.patch = nn.Conv2d(3, 64, 8, stride=8)
        self.mix = nn.Linear(64, 64)

    def forward(self, x):
        tokens = self.patch(x).flatten(2)  # [B, 64 channels, 64 patches]
        return self.mix(tokens.transpose(1, 2)) + tokens.transpose(1, 2).mean(1, keepdim=True)


def test_two_axes_of_equal_size():
    _assert_matches(EqualAxes(), torch.randn(1, 3, 64, 64))


def test_einsum_on_an_nchw_activation():
    class ChannelMix(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(5, 3))

        def forward(self, x):
            return torch.einsum("bchw,dc->bdhw", x, self.weight)

    _assert_matches(ChannelMix(), torch.randn(1, 3, 6, 7))


def test_scalar_scale_on_a_square_score_matrix():
    class Scores(nn.Module):
        def forward(self, q, k):
            return (q * 32**-0.25) @ (k * 32**-0.25).transpose(-1, -2) / 2.0

    _assert_matches(Scores(), torch.randn(1, 16, 16), torch.randn(1, 16, 16))


def test_two_layer_lstm():
    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(8, 16, num_layers=2, batch_first=True)

        def forward(self, x):
            return self.lstm(x)

    _assert_matches(Model(), torch.randn(1, 5, 8))


def test_diff_and_addmm():
    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(6, 4))
            self.bias = nn.Parameter(torch.randn(4))

        def forward(self, x, mask):
            steps = torch.diff(mask, dim=-1)
            return torch.addmm(self.bias, x, self.weight), steps

    _assert_matches(Model(), torch.randn(1, 6), torch.randint(0, 2, (1, 7)))


def test_grouped_query_attention():
    class Model(nn.Module):
        def forward(self, q, k, v):
            return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)

    conv = _assert_matches(Model(), torch.randn(1, 8, 5, 4), torch.randn(1, 2, 5, 4), torch.randn(1, 2, 5, 4))
    assert "attention" in conv.graph.op_histogram()


@pytest.mark.parametrize("relu", [torch.relu, F.relu, nn.ReLU(), torch.Tensor.relu], ids=["torch", "F", "nn", "method"])
def test_every_spelling_of_relu(relu):
    class Model(nn.Module):
        def forward(self, x):
            return relu(x)

    conv = _assert_matches(Model(), torch.randn(1, 5))
    assert conv.graph.op_histogram() == {"relu": 1}


def test_multihead_attention_under_no_grad():
    model = nn.MultiheadAttention(16, 4, batch_first=True).eval()

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.attention = model

        def forward(self, x):
            return self.attention(x, x, x, need_weights=False)[0]

    with torch.no_grad():  # the state in which torch takes its fused fast path
        _assert_matches(Model(), torch.randn(1, 5, 16))
