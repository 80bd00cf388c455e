"""Small models built in the test: an MLP, a CNN, an LSTM model, a MultiheadAttention model."""

import pytest

from tests.zoo import models
from tests.zoo.util import assert_zoo_converts

pytestmark = pytest.mark.slow


def test_mlp():
    assert_zoo_converts(models.mlp())


def test_cnn_batchnorm_relu_maxpool_adaptiveavgpool():
    conv = assert_zoo_converts(models.cnn())
    ops = conv.graph.op_histogram()
    assert {"conv", "batch_norm", "relu", "max_pool", "adaptive_avg_pool", "dense"} <= set(ops), ops
    variables = conv.variables
    assert variables["params"]["features_0"]["kernel"].shape == (3, 3, 3, 16)  # HWIO
    assert variables["batch_stats"]["features_1"]["mean"].shape == (16,)
    assert variables["params"]["head"]["kernel"].shape == (32, 10)  # (in, out)


def test_two_layer_lstm():
    assert_zoo_converts(models.lstm())


def test_multihead_attention_under_no_grad():
    case = models.multihead_attention()
    assert case.no_grad  # torch's fused fast path is taken only under no_grad
    assert_zoo_converts(case)
