"""ParamMap: naming rules, exact layout transforms, both directions."""

import numpy as np
import pytest

from unigraph.errors import CheckpointError, ShapeMismatchError
from unigraph.params import ParamEntry, ParamMap, leaf_name, module_path


def test_module_paths_follow_flax_conventions():
    assert module_path("layer1.0.conv1.weight") == (("layer1_0", "conv1"), "weight")
    assert module_path("features.0.1.running_mean") == (("features_0_1",), "running_mean")
    assert module_path("0.weight") == (("0",), "weight")
    assert leaf_name("weight", "kernel") == "kernel"
    assert leaf_name("weight", "scale") == "scale"
    assert leaf_name("running_var", "var") == "var"
    assert leaf_name("in_proj_weight", "kernel") == "in_proj_kernel"
    assert leaf_name("cls_token", None) == "cls_token"


def _map():
    return ParamMap(
        [
            ParamEntry("params", ("conv", "kernel"), "conv.weight", (8, 3, 5, 5), "float32", (2, 3, 1, 0), "kernel"),
            ParamEntry("params", ("conv", "bias"), "conv.bias", (8,), "float32", None, "bias"),
            ParamEntry("batch_stats", ("bn", "mean"), "bn.running_mean", (8,), "float32", None, "mean",
                       aliases=("bn.alias",)),
        ]
    )


def test_round_trip_is_bit_exact():
    rng = np.random.default_rng(0)
    tensors = {
        "conv.weight": rng.standard_normal((8, 3, 5, 5)).astype(np.float32),
        "conv.bias": rng.standard_normal(8).astype(np.float32),
        "bn.running_mean": rng.standard_normal(8).astype(np.float32),
    }
    pm = _map()
    variables = pm.to_variables(tensors)
    assert variables["params"]["conv"]["kernel"].shape == (5, 5, 3, 8)
    np.testing.assert_array_equal(variables["params"]["conv"]["kernel"], tensors["conv.weight"].transpose(2, 3, 1, 0))
    back = pm.to_source(variables)
    for name, value in tensors.items():
        assert back[name].dtype == value.dtype
        assert np.array_equal(back[name], value)
    assert pm.by_source("bn.alias").key == "batch_stats/bn/mean"
    assert ParamMap.from_json(pm.to_json()).to_json() == pm.to_json()


def test_bad_checkpoints_are_refused_with_the_tensor_named():
    pm = _map()
    good = {"conv.weight": np.zeros((8, 3, 5, 5)), "conv.bias": np.zeros(8), "bn.running_mean": np.zeros(8)}
    with pytest.raises(ShapeMismatchError, match=r"'conv.bias'.*expected shape \[8\], found \[9\]"):
        pm.to_variables({**good, "conv.bias": np.zeros(9)})
    with pytest.raises(CheckpointError, match="missing tensor.*conv.bias"):
        pm.to_variables({k: v for k, v in good.items() if k != "conv.bias"})
    with pytest.raises(CheckpointError, match="unexpected tensor.*head.weight"):
        pm.to_variables({**good, "head.weight": np.zeros(2)})


def test_table_lists_every_leaf():
    text = str(_map())
    assert "params/conv/kernel" in text and "transpose(2, 3, 1, 0)" in text and "bn.running_mean" in text
