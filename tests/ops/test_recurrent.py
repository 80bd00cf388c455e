"""LSTM, GRU and RNN stacks: layers, directions, layouts, biases, projections, initial states."""

import jax
import numpy as np
import pytest
import torch

import unigraph as ug
from tests.ops.harness import Case, T, params, run_case

IN, HIDDEN = 4, 8
# float32 recurrences: matmul summation order differs from torch's and compounds over time steps
TOL = dict(rtol=1e-4, atol=1e-5)
# torch's own warnings about its RNN modules: under export (their _flat_weights) and in eager
pytestmark = [
    pytest.mark.filterwarnings("ignore:The tensor attributes .*_flat_weights.* were assigned during export"),
    pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN"),
]


class WithState(torch.nn.Module):
    """Runs ``rnn`` from given initial states, taken batch-major ``[B, L*D, H]`` (dim 0 is the batch)."""

    def __init__(self, rnn):
        super().__init__()
        self.rnn = rnn

    def forward(self, x, *states):
        states = tuple(s.transpose(0, 1).contiguous() for s in states)
        return self.rnn(x, states if len(states) > 1 else states[0])


def lstm(**kwargs):
    return torch.nn.LSTM(IN, HIDDEN, **kwargs)


def gru(**kwargs):
    return torch.nn.GRU(IN, HIDDEN, **kwargs)


def rnn(**kwargs):
    return torch.nn.RNN(IN, HIDDEN, **kwargs)


BATCH_FIRST = [T((2, 6, IN))]
# Sequence-first inputs convert with static shapes: torch.export specializes the sequence length
# of nn.LSTM/GRU/RNN (their meta kernels unroll over time); test_symbolic_sequence_length covers
# a symbolic length.
SEQ_FIRST = [T((6, 2, IN))]

CASES = [
    # LSTM
    Case("lstm", lstm(batch_first=True), BATCH_FIRST, ("lstm",), **TOL),
    Case("lstm_2_layers", lstm(num_layers=2, batch_first=True), BATCH_FIRST, ("lstm",), **TOL),
    Case("lstm_bidirectional", lstm(bidirectional=True, batch_first=True), BATCH_FIRST, ("lstm",), **TOL),
    Case("lstm_2_layers_bidirectional", lstm(num_layers=2, bidirectional=True, batch_first=True), BATCH_FIRST, ("lstm",), **TOL),
    Case("lstm_seq_first", lstm(num_layers=2), SEQ_FIRST, ("lstm",), dynamic=False, **TOL),
    Case("lstm_no_bias", lstm(bias=False, batch_first=True), BATCH_FIRST, ("lstm",), **TOL),
    Case("lstm_batch_1", lstm(num_layers=2, batch_first=True), [T((1, 6, IN))], ("lstm",), **TOL),
    Case("lstm_proj", lstm(proj_size=3, batch_first=True), BATCH_FIRST, ("lstm",), **TOL),
    Case(
        "lstm_proj_2_layers_bidirectional_no_bias",
        lstm(proj_size=3, num_layers=2, bidirectional=True, bias=False),
        SEQ_FIRST,
        ("lstm",),
        dynamic=False,
        **TOL,
    ),
    Case(
        "lstm_given_state",
        WithState(lstm(num_layers=2, bidirectional=True, batch_first=True)),
        [T((2, 6, IN)), T((2, 4, HIDDEN)), T((2, 4, HIDDEN))],
        ("lstm",),
        **TOL,
    ),
    Case(
        "lstm_given_state_proj",
        WithState(lstm(proj_size=5, num_layers=2)),
        [T((6, 2, IN)), T((2, 2, 5)), T((2, 2, HIDDEN))],
        ("lstm",),
        dynamic=False,
        **TOL,
    ),
    # GRU
    Case("gru", gru(batch_first=True), BATCH_FIRST, ("gru",), **TOL),
    Case("gru_2_layers_bidirectional", gru(num_layers=2, bidirectional=True), SEQ_FIRST, ("gru",), dynamic=False, **TOL),
    Case("gru_no_bias", gru(bias=False, batch_first=True), BATCH_FIRST, ("gru",), **TOL),
    Case("gru_batch_1", gru(batch_first=True), [T((1, 6, IN))], ("gru",), **TOL),
    Case("gru_given_state", WithState(gru(num_layers=2, batch_first=True)), [T((2, 6, IN)), T((2, 2, HIDDEN))], ("gru",), **TOL),
    # Elman RNN, tanh and relu
    Case("rnn_tanh", rnn(batch_first=True), BATCH_FIRST, ("rnn",), **TOL),
    Case("rnn_relu_2_layers_bidirectional", rnn(nonlinearity="relu", num_layers=2, bidirectional=True), SEQ_FIRST, ("rnn",), dynamic=False, **TOL),
    Case("rnn_no_bias_given_state", WithState(rnn(bias=False, batch_first=True)), [T((2, 6, IN)), T((2, 1, HIDDEN))], ("rnn",), **TOL),
]


@pytest.mark.parametrize("case", params(CASES))
def test_op(case):
    run_case(case)


def test_weights_keep_torch_names_and_layouts():
    """RNN weights are stored as torch has them, and the state dict round-trips."""
    model = lstm(num_layers=2, bidirectional=True, proj_size=3).eval()
    conv = ug.from_torch(model, (torch.randn(6, 2, IN),), dynamic_shapes=None)
    stored = {"/".join(path): leaf for path, leaf in _leaves(conv.variables["params"])}
    for name, tensor in model.state_dict().items():
        np.testing.assert_array_equal(stored[name], tensor.numpy(), err_msg=name)


def _leaves(tree, prefix=()):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _leaves(value, (*prefix, key))
        else:
            yield (*prefix, key), value


def test_scan_is_one_loop_per_layer():
    """Each layer is one while loop running both directions, not one per direction or an unrolled loop."""
    model = lstm(num_layers=2, bidirectional=True, batch_first=True).eval()
    conv = ug.from_torch(model, (torch.randn(2, 6, IN),))
    text = jax.jit(lambda *xs: conv(*xs)).lower(np.zeros((2, 6, IN), np.float32)).as_text()
    assert text.count("stablehlo.while") == 2


def test_symbolic_sequence_length():
    """The ops take a symbolic sequence length (and batch): one exported function runs every length."""
    from jax import export

    from unigraph.interpreter import infer_types
    from unigraph.ir import TensorType
    from unigraph.ops import REGISTRY

    model = gru(num_layers=2, bidirectional=True).eval()
    weights = [p.detach().numpy() for p in model.parameters()]  # torch's order: layer, direction, kind
    types = [TensorType(("seq", "batch", IN), "float32"), TensorType((4, "batch", HIDDEN), "float32")]
    types += [TensorType(w.shape, "float32") for w in weights]
    out, h_n = infer_types("gru", types, dict(num_layers=2, bidirectional=True))
    assert out.shape == ("seq", "batch", 2 * HIDDEN) and h_n.shape == (4, "batch", HIDDEN)

    def run(x, h0):
        return REGISTRY["gru"].jax(x, h0, *weights, num_layers=2, bidirectional=True)

    seq, batch = export.symbolic_shape("seq, batch")
    exported = export.export(jax.jit(run))(
        jax.ShapeDtypeStruct((seq, batch, IN), np.float32), jax.ShapeDtypeStruct((4, batch, HIDDEN), np.float32)
    )
    for length in (3, 7):
        x, h0 = torch.randn(length, 2, IN), torch.randn(4, 2, HIDDEN)
        with torch.no_grad():
            want = model(x, h0)
        got = exported.call(x.numpy(), h0.numpy())
        for g, w in zip(got, want):
            np.testing.assert_allclose(np.asarray(g), w.numpy(), **TOL)
