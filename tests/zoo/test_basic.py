"""Small models built in the test: an MLP, a CNN, an LSTM model, a MultiheadAttention model."""

import pytest
import torch
from torch import nn

from tests.zoo.util import assert_converts, image

pytestmark = pytest.mark.slow


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        return self.head(torch.flatten(self.pool(self.features(x)), 1))


def _randomize_batch_norm(model: nn.Module) -> nn.Module:
    """Non-trivial running statistics, so eval-mode batch norm is really tested."""
    generator = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.num_features, generator=generator) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
    return model


def test_mlp():
    model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 5))

    def make(batch):
        return (torch.randn(batch, 20, generator=torch.Generator().manual_seed(batch)),), {}

    assert_converts(model, make, batches=(1, 7))


def test_cnn_batchnorm_relu_maxpool_adaptiveavgpool():
    conv = assert_converts(_randomize_batch_norm(CNN()), image(size=32), batches=(1, 7))
    ops = conv.graph.op_histogram()
    assert {"conv", "batch_norm", "relu", "max_pool", "adaptive_avg_pool", "dense"} <= set(ops), ops
    variables = conv.variables
    assert variables["params"]["features_0"]["kernel"].shape == (3, 3, 3, 16)  # HWIO
    assert variables["batch_stats"]["features_1"]["mean"].shape == (16,)
    assert variables["params"]["head"]["kernel"].shape == (32, 10)  # (in, out)


class LSTMModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(12, 24, num_layers=2, batch_first=True)
        self.head = nn.Linear(24, 3)

    def forward(self, x):
        out, (h, c) = self.lstm(x)
        return self.head(out[:, -1]), h


def test_two_layer_lstm():
    def make(batch):
        return (torch.randn(batch, 9, 12, generator=torch.Generator().manual_seed(batch)),), {}

    assert_converts(LSTMModel(), make, batches=(1, 4))


class AttentionModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.attention = nn.MultiheadAttention(32, 4, batch_first=True)
        self.norm = nn.LayerNorm(32)

    def forward(self, x, padding):
        y, weights = self.attention(x, x, x, key_padding_mask=padding)
        return self.norm(x + y), weights


def test_multihead_attention_under_no_grad():
    def make(batch):
        generator = torch.Generator().manual_seed(batch)
        padding = torch.zeros(batch, 6, dtype=torch.bool)
        padding[:, -1] = True
        return (torch.randn(batch, 6, 32, generator=generator), padding), {}

    with torch.no_grad():  # torch's fused fast path is taken only here
        assert_converts(AttentionModel(), make, batches=(1, 5))
