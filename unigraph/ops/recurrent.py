"""Recurrent layers as torch defines them: stacked, optionally bidirectional LSTM, GRU and RNN.

One node runs a whole stack, like ``nn.LSTM``. The weights keep torch's names
and layouts (their role is None: they are stored as torch has them), in
torch's order: for each layer, for each direction, ``w_ih`` ``(G*H, in)``,
``w_hh`` ``(G*H, H)``, then ``b_ih``, ``b_hh`` ``(G*H,)`` when the layer has
biases, then ``w_hr`` ``(P, H)`` for an LSTM with projections; ``G`` is the
number of gates (LSTM 4: i, f, g, o; GRU 3: r, z, n; RNN 1).

Each layer is one ``lax.scan`` over time that runs both directions at once;
the input projections of all time steps are one matmul before the scan, so a
step is one small matmul and the gate math. The sequence length may be
symbolic.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Literal

import jax
import jax.numpy as jnp
from jax import lax

from unigraph.ops.registry import op


@dataclasses.dataclass(frozen=True)
class _Layer:
    """One layer's weights, stacked over directions: ``[D, ...]``."""

    w_ih: jax.Array
    w_hh: jax.Array
    b_ih: jax.Array | None
    b_hh: jax.Array | None
    w_hr: jax.Array | None


def _layers(params: Sequence, num_layers: int, directions: int, *, projections: bool) -> list[_Layer]:
    """torch's flat weight list as stacked ``_Layer``s; biases are told apart by the count."""
    per_direction, rest = divmod(len(params), num_layers * directions)
    has_biases = per_direction - projections == 4
    if rest or per_direction - projections not in (2, 4):
        raise ValueError(f"{len(params)} weights do not fit {num_layers} layers × {directions} directions")
    names = ["w_ih", "w_hh"] + (["b_ih", "b_hh"] if has_biases else []) + (["w_hr"] if projections else [])
    layers = []
    for layer in range(num_layers):
        cells = [
            dict(zip(names, params[(layer * directions + d) * per_direction :][:per_direction]))
            for d in range(directions)
        ]
        stacked = {name: jnp.stack([cell[name] for cell in cells]) for name in names}
        layers.append(_Layer(**{name: stacked.get(name) for name in ("w_ih", "w_hh", "b_ih", "b_hh", "w_hr")}))
    return layers


def _run_layer(cell: Callable, x, state: tuple, weights: _Layer):
    """One layer over time-major ``x`` ``[T, B, in]`` from ``state`` (each ``[D, B, ·]``).

    Returns the output ``[T, B, D*H]`` and the final state. Direction 1 reads
    the sequence reversed.
    """
    bidirectional = weights.w_ih.shape[0] == 2
    inputs = jnp.stack([x, jnp.flip(x, 0)], axis=1) if bidirectional else x[:, None]  # [T, D, B, in]
    projected = jnp.einsum("tdbi,dgi->tdbg", inputs, weights.w_ih)
    if weights.b_ih is not None:
        projected = projected + weights.b_ih[:, None, :]

    def step(carry, projected_t):
        recurrent = jnp.einsum("dbh,dgh->dbg", carry[0], weights.w_hh)
        if weights.b_hh is not None:
            recurrent = recurrent + weights.b_hh[:, None, :]
        carry = cell(projected_t, recurrent, carry, weights)
        return carry, carry[0]

    final, ys = lax.scan(step, state, projected)  # ys: [T, D, B, H]
    if not bidirectional:
        return ys[:, 0], final
    return jnp.concatenate([ys[:, 0], jnp.flip(ys[:, 1], 0)], axis=-1), final


def _run(
    cell: Callable, x, states: tuple, params, *,
    num_layers: int, bidirectional: bool, batch_first: bool, projections: bool = False,
):
    """The stack: output ``[T, B, D*H]`` (``[B, T, D*H]`` batch first), then final states ``[L*D, B, ·]``."""
    directions = 2 if bidirectional else 1
    layers = _layers(params, num_layers, directions, projections=projections)
    y = jnp.swapaxes(x, 0, 1) if batch_first else x
    finals = []
    for i, weights in enumerate(layers):
        state = tuple(s[i * directions : (i + 1) * directions] for s in states)
        y, final = _run_layer(cell, y, state, weights)
        finals.append(final)
    y = jnp.swapaxes(y, 0, 1) if batch_first else y
    return (y, *(jnp.concatenate(parts, axis=0) for parts in zip(*finals)))


def _lstm_cell(projected, recurrent, carry, weights: _Layer):
    h, c = carry
    i, f, g, o = jnp.split(projected + recurrent, 4, axis=-1)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    h = jax.nn.sigmoid(o) * jnp.tanh(c)
    if weights.w_hr is not None:
        h = jnp.einsum("dbh,dph->dbp", h, weights.w_hr)
    return h, c


def _gru_cell(projected, recurrent, carry, weights: _Layer):
    (h,) = carry
    x_r, x_z, x_n = jnp.split(projected, 3, axis=-1)
    h_r, h_z, h_n = jnp.split(recurrent, 3, axis=-1)
    r = jax.nn.sigmoid(x_r + h_r)
    z = jax.nn.sigmoid(x_z + h_z)
    n = jnp.tanh(x_n + r * h_n)
    return ((1 - z) * n + z * h,)


_ACTIVATIONS = {"tanh": jnp.tanh, "relu": jax.nn.relu}


@op("lstm")
def lstm(x, h0, c0, /, *params, num_layers: int, bidirectional: bool = False, batch_first: bool = False):
    """torch's ``nn.LSTM``: ``x`` ``[T, B, in]`` (``[B, T, in]`` batch first), ``h0`` ``[L*D, B, P]``,
    ``c0`` ``[L*D, B, H]`` → output ``[T, B, D*P]``, ``h_n`` ``[L*D, B, P]``, ``c_n`` ``[L*D, B, H]``.

    Gates i, f, g, o: ``c' = σ(f)*c + σ(i)*tanh(g)``, ``h' = σ(o)*tanh(c')``,
    then ``h' = w_hr @ h'`` with projections (``P != H``, told by ``h0`` vs
    ``c0``; otherwise ``P = H``). ``params``: torch's weights in torch's names,
    layouts and order (see the module docstring).
    """
    projections = h0.shape[-1] != c0.shape[-1]
    return _run(
        _lstm_cell, x, (h0, c0), params,
        num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first, projections=projections,
    )


@op("gru")
def gru(x, h0, /, *params, num_layers: int, bidirectional: bool = False, batch_first: bool = False):
    """torch's ``nn.GRU``: ``x`` ``[T, B, in]`` (``[B, T, in]`` batch first), ``h0`` ``[L*D, B, H]``
    → output ``[T, B, D*H]``, ``h_n`` ``[L*D, B, H]``.

    Gates r, z, n: ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``,
    ``h' = (1 - z) * n + z * h``. ``params``: torch's weights in torch's names,
    layouts and order (see the module docstring).
    """
    return _run(
        _gru_cell, x, (h0,), params, num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first
    )


@op("rnn")
def rnn(
    x, h0, /, *params,
    num_layers: int,
    nonlinearity: Literal["tanh", "relu"] = "tanh",
    bidirectional: bool = False,
    batch_first: bool = False,
):
    """torch's ``nn.RNN``: ``h' = act(W_ih x + b_ih + W_hh h + b_hh)``; shapes as ``gru``.

    ``params``: torch's weights in torch's names, layouts and order (see the module docstring).
    """
    activation = _ACTIVATIONS[nonlinearity]

    def cell(projected, recurrent, carry, weights):
        return (activation(projected + recurrent),)

    return _run(cell, x, (h0,), params, num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first)
