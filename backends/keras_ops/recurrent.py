"""Keras lowerings: LSTM, GRU and RNN stacks.

The ops hold torch's flat weight list (for each layer and direction:
``w_ih`` ``(G*H, in)``, ``w_hh`` ``(G*H, H)``, then ``b_ih``, ``b_hh`` with
biases, then ``w_hr`` ``(P, H)`` with an LSTM's projections; gates i, f, g, o
for an LSTM, r, z, n for a GRU). As in the op's JAX lowering, each layer is
one ``ops.scan`` over time running both directions at once (direction 1 reads
the sequence reversed), with the input projections of all time steps one
einsum before the scan: the sequence length may be unknown until run time
(``ops.scan`` is ``lax.scan`` under JAX, a ``tf.while_loop`` under TensorFlow,
a Python loop under torch).
"""

from __future__ import annotations

from keras import ops

from unigraph.backends.keras_ops import lowers

_NAMES = ("w_ih", "w_hh", "b_ih", "b_hh", "w_hr")


def _layers(params, num_layers: int, directions: int, *, projections: bool) -> list[dict]:
    """torch's flat weight list as one dict per layer of weights stacked over directions (``[D, ...]``)."""
    per_direction, rest = divmod(len(params), num_layers * directions)
    has_biases = per_direction - projections == 4
    if rest or per_direction - projections not in (2, 4):
        raise ValueError(f"{len(params)} weights do not fit {num_layers} layers × {directions} directions")
    names = ["w_ih", "w_hh"] + (["b_ih", "b_hh"] if has_biases else []) + (["w_hr"] if projections else [])
    layers = []
    for layer in range(num_layers):
        first = layer * directions * per_direction
        cells = [dict(zip(names, params[first + d * per_direction :][:per_direction])) for d in range(directions)]
        stacked = {name: ops.stack([cell[name] for cell in cells]) for name in names}
        layers.append({name: stacked.get(name) for name in _NAMES})
    return layers


def _run_layer(cell, x, state: tuple, weights: dict):
    """One layer over time-major ``x`` ``[T, B, in]`` from ``state`` (each ``[D, B, ·]``): output ``[T, B, D*H]``, final state."""
    bidirectional = weights["w_ih"].shape[0] == 2
    inputs = ops.stack([x, ops.flip(x, 0)], axis=1) if bidirectional else ops.expand_dims(x, 1)  # [T, D, B, in]
    projected = ops.einsum("tdbi,dgi->tdbg", inputs, weights["w_ih"])
    if weights["b_ih"] is not None:
        projected = projected + ops.expand_dims(weights["b_ih"], 1)

    def step(carry, projected_t):
        recurrent = ops.einsum("dbh,dgh->dbg", carry[0], weights["w_hh"])
        if weights["b_hh"] is not None:
            recurrent = recurrent + ops.expand_dims(weights["b_hh"], 1)
        carry = cell(projected_t, recurrent, carry, weights)
        return carry, carry  # Keras's TensorFlow scan wants outputs shaped as the carry

    final, ys = ops.scan(step, tuple(state), projected)
    ys = ys[0]  # [T, D, B, H]
    if not bidirectional:
        return ys[:, 0], final
    return ops.concatenate([ys[:, 0], ops.flip(ys[:, 1], 0)], axis=-1), final


def _run(cell, x, states: tuple, params, *, num_layers, bidirectional, batch_first, projections=False):
    """The stack: output ``[T, B, D*H]`` (``[B, T, D*H]`` batch first), then final states ``[L*D, B, ·]``."""
    directions = 2 if bidirectional else 1
    layers = _layers(params, num_layers, directions, projections=projections)
    y = ops.swapaxes(x, 0, 1) if batch_first else x
    finals = []
    for i, weights in enumerate(layers):
        state = tuple(s[i * directions : (i + 1) * directions] for s in states)
        y, final = _run_layer(cell, y, state, weights)
        finals.append(final)
    y = ops.swapaxes(y, 0, 1) if batch_first else y
    return (y, *(ops.concatenate(list(parts), axis=0) for parts in zip(*finals)))


def _lstm_cell(projected, recurrent, carry, weights):
    h, c = carry
    i, f, g, o = ops.split(projected + recurrent, 4, axis=-1)
    c = ops.sigmoid(f) * c + ops.sigmoid(i) * ops.tanh(g)
    h = ops.sigmoid(o) * ops.tanh(c)
    if weights["w_hr"] is not None:
        h = ops.einsum("dbh,dph->dbp", h, weights["w_hr"])
    return h, c


def _gru_cell(projected, recurrent, carry, weights):
    (h,) = carry
    x_r, x_z, x_n = ops.split(projected, 3, axis=-1)
    h_r, h_z, h_n = ops.split(recurrent, 3, axis=-1)
    r = ops.sigmoid(x_r + h_r)
    z = ops.sigmoid(x_z + h_z)
    n = ops.tanh(x_n + r * h_n)
    return ((1 - z) * n + z * h,)


_ACTIVATIONS = {"tanh": ops.tanh, "relu": ops.relu}


@lowers("lstm")
def lstm(x, h0, c0, /, *params, num_layers, bidirectional=False, batch_first=False):
    projections = h0.shape[-1] != c0.shape[-1]
    return _run(
        _lstm_cell, x, (h0, c0), params,
        num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first, projections=projections,
    )


@lowers("gru")
def gru(x, h0, /, *params, num_layers, bidirectional=False, batch_first=False):
    return _run(
        _gru_cell, x, (h0,), params, num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first
    )


@lowers("rnn")
def rnn(x, h0, /, *params, num_layers, nonlinearity="tanh", bidirectional=False, batch_first=False):
    activation = _ACTIVATIONS[nonlinearity]

    def cell(projected, recurrent, carry, weights):
        return (activation(projected + recurrent),)

    return _run(cell, x, (h0,), params, num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first)
