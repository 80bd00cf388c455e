"""The PyTorch frontend: structures, dynamic shapes, parameters, and what bad input gets."""


import numpy as np
import pytest
import torch
from torch import nn
from torch.export import Dim

import unigraph as ug


class TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(6, 8)
        self.heads = nn.ModuleList([nn.Linear(8, 2), nn.Linear(8, 3)])

    def forward(self, x, scale=None, *, extra):
        h = torch.relu(self.body(x)) + extra
        out = {"first": self.heads[0](h), "pair": (self.heads[1](h), h.sum(-1))}
        if scale is not None:
            out["first"] = out["first"] * scale
        return out


def test_outputs_keep_the_source_structure_and_kwargs_bind_by_name():
    model = TwoHeads().eval()
    x, extra = torch.randn(2, 6), torch.randn(2, 8)
    conv = ug.from_torch(model, (x,), {"extra": extra})
    y = conv(x.numpy(), extra=extra.numpy())
    assert isinstance(y, dict) and list(y) == ["first", "pair"]
    assert isinstance(y["pair"], tuple) and y["pair"][0].shape == (2, 3)
    expected = model(x, extra=extra)
    np.testing.assert_allclose(np.asarray(y["pair"][1]), expected["pair"][1].detach().numpy(), rtol=1e-5, atol=1e-5)
    # the Flax module gives the same structure, by hand
    by_hand = conv.module.apply(conv.variables, x.numpy(), extra=extra.numpy())
    np.testing.assert_array_equal(np.asarray(by_hand["first"]), np.asarray(y["first"]))
    # torch tensors are accepted as inputs too
    assert conv(x, extra=extra)["first"].shape == (2, 2)


def test_one_conversion_runs_at_batch_1_and_7():
    model = nn.Sequential(nn.Linear(5, 4), nn.GELU()).eval()
    conv = ug.from_torch(model, (torch.randn(1, 5),))  # traced at batch 1
    assert conv.graph.types[conv.graph.inputs[0]].shape == ("batch", 5)
    for batch in (1, 7):
        x = torch.randn(batch, 5)
        assert ug.check(model, conv, (x,)).ok


def test_dynamic_shapes_follow_torch_export_and_name_the_symbols():
    model = nn.Sequential(nn.Linear(4, 4)).eval()
    seq = Dim("seq")
    conv = ug.from_torch(model, (torch.randn(2, 7, 4),), dynamic_shapes=({0: Dim("batch"), 1: seq},))
    assert conv.graph.types[conv.graph.inputs[0]].shape == ("batch", "seq", 4)
    assert conv(np.zeros((3, 11, 4), np.float32)).shape == (3, 11, 4)


def test_static_shapes_reject_another_batch_naming_the_input():
    conv = ug.from_torch(nn.Linear(4, 2).eval(), (torch.randn(2, 4),), dynamic_shapes=None)
    with pytest.raises(ug.InputError, match=r"input 'input': dimension 0 must be 2 \(static\)"):
        conv(np.zeros((3, 4), np.float32))


def test_a_model_that_fixes_its_batch_still_converts_with_a_warning():
    class FixedBatch(nn.Module):
        def forward(self, x):
            return x.reshape(2, -1) * 2

    with pytest.warns(UserWarning, match="batch dimension could not be one shared dynamic"):
        conv = ug.from_torch(FixedBatch(), (torch.randn(2, 3),))
    assert conv(np.ones((2, 3), np.float32)).shape == (2, 3)


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((2, 6, 1), np.float32), r"input 'x': expected rank 2"),
        (np.zeros((2, 6), np.float64), r"input 'x': expected dtype float32.*got float64"),
        (np.zeros((2, 5), np.float32), r"input 'x': dimension 1 must be 6 \(static\)"),
    ],
)
def test_wrong_inputs_name_the_input_and_what_was_expected(bad, message):
    conv = ug.from_torch(TwoHeads().eval(), (torch.randn(2, 6),), {"extra": torch.randn(2, 8)})
    with pytest.raises(ug.InputError, match=message):
        conv(bad, extra=np.zeros((2, 8), np.float32))


def test_inputs_of_different_batch_sizes_are_refused():
    conv = ug.from_torch(TwoHeads().eval(), (torch.randn(2, 6),), {"extra": torch.randn(2, 8)})
    with pytest.raises(ug.InputError, match=r"input 'extra': dimension 0 must be 3"):
        conv(np.zeros((3, 6), np.float32), extra=np.zeros((4, 8), np.float32))


def test_a_missing_argument_is_named():
    conv = ug.from_torch(TwoHeads().eval(), (torch.randn(2, 6),), {"extra": torch.randn(2, 8)})
    with pytest.raises(ug.InputError, match=r"kwargs\['extra'\]: expected a tensor"):
        conv(np.zeros((2, 6), np.float32))


def test_parameters_follow_flax_conventions_and_map_back_exactly():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(5))
    model(torch.randn(1, 3, 8, 8))
    model.eval()
    conv = ug.from_torch(model, (torch.randn(2, 3, 8, 8),))
    params, stats = conv.variables["params"], conv.variables["batch_stats"]
    assert params["0"]["kernel"].shape == (3, 3, 3, 4)
    assert params["1"]["scale"].shape == (4,)
    assert set(stats["1"]) == {"mean", "var", "num_batches_tracked"}
    assert params["3"]["kernel"].shape == (144, 5)
    entry = conv.param_map.by_source("0.weight")
    assert entry.perm == (2, 3, 1, 0) and entry.role == "kernel"
    back = conv.param_map.to_source(conv.variables)
    for name, tensor in model.state_dict().items():
        assert np.array_equal(back[name], tensor.numpy()), name


def test_tied_weights_are_stored_once_with_their_aliases():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(10, 4)
            self.out = nn.Linear(4, 10, bias=False)
            self.out.weight = self.embed.weight

        def forward(self, ids):
            return self.out(self.embed(ids))

    model = Tied().eval()
    ids = torch.randint(0, 10, (2, 3))
    conv = ug.from_torch(model, (ids,))
    assert ug.check(model, conv, (ids,)).ok
    entry = conv.param_map.by_source("embed.weight")
    assert entry.aliases == ("out.weight",) and entry.role == "embedding"
    assert len(conv.param_map) == 1


def test_unsupported_ops_are_listed_all_at_once_with_source_lines():
    class Exotic(nn.Module):
        def forward(self, x):
            a = torch.fft.rfft(x).abs()
            b = torch.linalg.svdvals(x.reshape(-1, 2, 4))
            return a.sum() + b.sum()

    with pytest.raises(ug.UnsupportedOpError) as info:
        ug.from_torch(Exotic(), (torch.randn(2, 8),))
    message = str(info.value)
    assert "_fft_r2c" in message and "svd" in message, message
    assert "test_torch_frontend.py:" in message
    assert len(info.value.ops) >= 2


def test_untraceable_models_get_one_error_with_the_place_and_what_to_try():
    class DataDependent(nn.Module):
        def forward(self, x):
            if x.sum() > 0:
                return x * 2
            return x - 1

    with pytest.raises(ug.ExportError) as info:
        ug.from_torch(DataDependent(), (torch.randn(2, 3),))
    message = str(info.value)
    assert "torch.export could not trace DataDependent" in message
    assert "test_torch_frontend.py:" in message and "x.sum() > 0" in message
    assert "torch.cond" in message and "What to try" in message


def test_buffer_mutation_in_forward_is_refused_clearly():
    model = nn.BatchNorm1d(3).train()
    model.eval = lambda: model  # keep training mode: forward updates the running statistics
    with pytest.raises(ug.ExportError, match="writes buffer mutation 'running_mean'"):
        ug.from_torch(model, (torch.randn(4, 3),))


def test_the_converted_model_runs_jitted_and_is_a_flax_module():
    import flax.linen as nn_flax

    model = nn.Sequential(nn.Linear(3, 3)).eval()
    conv = ug.from_torch(model, (torch.randn(2, 3),))
    assert isinstance(conv.module, nn_flax.Module)
    fresh = conv.module.init(__import__("jax").random.key(0), np.zeros((2, 3), np.float32))
    assert fresh["params"]["0"]["kernel"].shape == conv.variables["params"]["0"]["kernel"].shape


def test_fresh_variables_come_from_the_callers_key():
    """``module.init`` draws every random leaf from the key it is given (none is hard-coded): batch
    statistics start at mean 0 and variance 1, and another key gives other weights."""
    import jax

    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)).eval()
    conv = ug.from_torch(model, (torch.randn(2, 3),))
    x = np.zeros((2, 3), np.float32)
    first, again, other = (conv.module.init(jax.random.key(k), x) for k in (0, 0, 1))
    kernel = lambda v: np.asarray(v["params"]["0"]["kernel"])  # noqa: E731
    np.testing.assert_array_equal(kernel(first), kernel(again))
    assert not np.array_equal(kernel(first), kernel(other))
    stats = first["batch_stats"]["1"]
    np.testing.assert_array_equal(stats["mean"], np.zeros(4))
    np.testing.assert_array_equal(stats["var"], np.ones(4))
