"""ATen recurrent layers: ``lstm``, ``gru``, ``rnn_tanh`` and ``rnn_relu`` (the ``.input`` overloads).

The weights go to the node as they are: they keep torch's names and layouts
(no role), so a state dict round-trips without a transform. Packed sequences
(the ``.data`` overloads) are not supported.
"""

from __future__ import annotations

from unigraph.frontends.torch_ops import aten, handles
from unigraph.frontends.builder import Builder


def _check_inference(name: str, dropout, train, num_layers) -> None:
    if train and dropout and num_layers > 1:
        raise NotImplementedError(
            f"{name} with dropout={dropout} in training mode; call model.eval() before converting"
        )


@handles(aten.lstm.input)
def lstm(b: Builder, input, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first):
    """aten::lstm.input(Tensor input, Tensor[] hx, Tensor[] params, bool has_biases, int num_layers,
    float dropout, bool train, bool bidirectional, bool batch_first) -> (Tensor, Tensor, Tensor)"""
    _check_inference("lstm", dropout, train, num_layers)
    h0, c0 = hx
    return b.emit(
        "lstm", input, h0, c0, *params,
        num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first, n_out=3,
    )


@handles(aten.gru.input)
def gru(b: Builder, input, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first):
    """aten::gru.input(Tensor input, Tensor hx, Tensor[] params, bool has_biases, int num_layers,
    float dropout, bool train, bool bidirectional, bool batch_first) -> (Tensor, Tensor)"""
    _check_inference("gru", dropout, train, num_layers)
    return b.emit(
        "gru", input, hx, *params,
        num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first, n_out=2,
    )


def _rnn(nonlinearity: str):
    def handler(b: Builder, input, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first):
        _check_inference(f"rnn_{nonlinearity}", dropout, train, num_layers)
        return b.emit(
            "rnn", input, hx, *params,
            num_layers=num_layers, nonlinearity=nonlinearity, bidirectional=bidirectional,
            batch_first=batch_first, n_out=2,
        )

    handler.__name__ = f"rnn_{nonlinearity}"
    handler.__doc__ = (
        f"aten::rnn_{nonlinearity}.input(Tensor input, Tensor hx, Tensor[] params, bool has_biases, "
        "int num_layers, float dropout, bool train, bool bidirectional, bool batch_first) -> (Tensor, Tensor)"
    )
    return handler


handles(aten.rnn_tanh.input)(_rnn("tanh"))
handles(aten.rnn_relu.input)(_rnn("relu"))
