"""torch lowerings: LSTM, GRU and RNN stacks, as the functions behind ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN``.

The ops hold torch's flat weight list in torch's order and layouts (for each
layer and direction: ``w_ih``, ``w_hh``, then ``b_ih``, ``b_hh`` with biases,
then ``w_hr`` with projections), which is what ``torch.lstm``, ``torch.gru``,
``torch.rnn_tanh`` and ``torch.rnn_relu`` take. Whether the layers have
biases is told by the count: 2 weights per layer and direction without, 4
with (3 and 5 with an LSTM's projection); torch tells projections from ``h0``
and ``c0``. Inference: no dropout, not training.
"""

from __future__ import annotations

import torch

from unigraph.backends.torch_ops import lowers


def _has_biases(params, num_layers, bidirectional):
    """Whether the flat list holds biases: at least 4 tensors per layer and direction."""
    return len(params) >= 4 * num_layers * (2 if bidirectional else 1)


@lowers("lstm")
def lstm(x, h0, c0, /, *params, num_layers, bidirectional=False, batch_first=False):
    has_biases = _has_biases(params, num_layers, bidirectional)
    return torch.lstm(x, (h0, c0), params, has_biases, num_layers, 0.0, False, bidirectional, batch_first)


@lowers("gru")
def gru(x, h0, /, *params, num_layers, bidirectional=False, batch_first=False):
    has_biases = _has_biases(params, num_layers, bidirectional)
    return torch.gru(x, h0, params, has_biases, num_layers, 0.0, False, bidirectional, batch_first)


@lowers("rnn")
def rnn(x, h0, /, *params, num_layers, nonlinearity="tanh", bidirectional=False, batch_first=False):
    has_biases = _has_biases(params, num_layers, bidirectional)
    run = torch.rnn_relu if nonlinearity == "relu" else torch.rnn_tanh
    return run(x, h0, params, has_biases, num_layers, 0.0, False, bidirectional, batch_first)
