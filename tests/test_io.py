"""The .ug bundle: a converted model in one safetensors file, reloaded without torch or tensorflow."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors import safe_open
from torch import nn

import unigraph as ug
from unigraph.io import safetensors_file
from unigraph.io.safetensors_file import TensorSpec


def _converted():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 6 * 6, 5)).eval()
    x = torch.randn(2, 3, 8, 8)
    return model, x, ug.from_torch(model, (x,))


def test_bundle_round_trip_is_exact(tmp_path):
    model, x, conv = _converted()
    path = conv.save(tmp_path / "model.ug")
    again = ug.load(path)
    assert again.graph.dumps() == conv.graph.dumps()
    assert again.param_map.to_json() == conv.param_map.to_json()
    stats = again.variables["batch_stats"]["1"]
    assert np.asarray(stats["num_batches_tracked"]).shape == ()  # 0-d tensors stay 0-d
    np.testing.assert_array_equal(np.asarray(again(x.numpy())), np.asarray(conv(x.numpy())))
    assert ug.check(model, again, (x,)).ok
    for name, tensor in model.state_dict().items():  # and the state dict still comes back exactly
        assert torch.equal(again.to_state_dict()[name], tensor), name


def _rewrite(path, out, change):
    """Copies the bundle at ``path`` to ``out``, passing its metadata and tensors through ``change`` first."""
    with safetensors_file.SafetensorsFile(path) as f:
        metadata, tensors = dict(f.metadata), {name: f.read(name) for name in f.names()}
    change(metadata, tensors)
    specs = [TensorSpec(name, a.dtype, a.shape) for name, a in tensors.items()]
    with open(out, "wb") as file:
        safetensors_file.write(file, specs, tensors.__getitem__, metadata)
    return out


def _bfloat16_model():
    model = nn.Linear(4, 3).to(torch.bfloat16).eval()
    return model, ug.from_torch(model, (torch.randn(2, 4).to(torch.bfloat16),))


def _bits(variables) -> dict:
    return {k: np.asarray(v).view(np.uint16).tolist() for k, v in variables["params"].items()}


def test_bfloat16_is_stored_as_such_and_survives_bit_for_bit(tmp_path):
    model, conv = _bfloat16_model()
    path = conv.save(tmp_path / "m.ug")
    with safe_open(path, framework="numpy") as f:  # any safetensors reader sees the dtypes
        assert {k: f.get_slice(k).get_dtype() for k in f.keys()} == {
            "variables/params/kernel": "BF16",
            "variables/params/bias": "BF16",
        }
    again = ug.load(path)
    assert again.variables["params"]["kernel"].dtype.name == "bfloat16"
    assert _bits(again.variables) == _bits(conv.variables)
    assert torch.equal(again.to_state_dict()["weight"], model.weight)


def test_version_1_bundles_with_viewed_dtypes_still_load(tmp_path):
    model, conv = _bfloat16_model()

    def as_version_1(metadata, tensors):  # bfloat16 stored as uint16, its dtype named in the metadata
        metadata["version"] = "1"
        metadata["viewed_dtypes"] = json.dumps({name: "bfloat16" for name in tensors})
        tensors.update({name: a.view(np.uint16) for name, a in tensors.items()})

    old = _rewrite(conv.save(tmp_path / "m.ug"), tmp_path / "old.ug", as_version_1)
    again = ug.load(old)
    assert again.variables["params"]["kernel"].dtype.name == "bfloat16"
    assert _bits(again.variables) == _bits(conv.variables)
    assert torch.equal(again.to_state_dict()["weight"], model.weight)


def test_a_bundle_whose_graph_does_not_typecheck_is_refused(tmp_path):
    _, _, conv = _converted()
    last = conv.graph.nodes[-1]

    def tamper(metadata, tensors):  # the last node's output one wider than its op computes
        graph = json.loads(metadata["graph"])
        graph["types"][last.outputs[0]]["shape"][-1] = 6
        metadata["graph"] = json.dumps(graph)

    tampered = _rewrite(conv.save(tmp_path / "model.ug"), tmp_path / "tampered.ug", tamper)
    message = (
        f"{tampered}: the graph in the bundle does not typecheck: node {len(conv.graph.nodes) - 1} "
        f"({last.op} -> {last.outputs[0]}; {last.source}): output {last.outputs[0]!r} is recorded as float32[batch,6]"
    )
    with pytest.raises(ug.CheckpointError, match=re.escape(message)):
        ug.load(tampered)


def test_a_bundle_loads_in_a_process_without_torch_or_tensorflow(tmp_path):
    _, x, conv = _converted()
    conv.save(tmp_path / "model.ug")
    np.save(tmp_path / "x.npy", x.numpy())
    np.save(tmp_path / "want.npy", np.asarray(conv(x.numpy())))
    code = (
        "import sys, numpy as np, unigraph as ug\n"
        f"conv = ug.load({str(tmp_path / 'model.ug')!r})\n"
        f"y = np.asarray(conv(np.load({str(tmp_path / 'x.npy')!r})))\n"
        f"np.testing.assert_allclose(y, np.load({str(tmp_path / 'want.npy')!r}), rtol=1e-6, atol=1e-6)\n"
        "print(sorted(m for m in ('torch', 'tensorflow', 'keras') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_bad_files_get_one_clear_error(tmp_path):
    _, _, conv = _converted()
    path = conv.save(tmp_path / "model.ug")
    with pytest.raises(ug.CheckpointError, match="no such file"):
        ug.load(tmp_path / "missing.ug")
    truncated = tmp_path / "truncated.ug"
    truncated.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ug.CheckpointError, match="truncated.ug: not a readable unigraph bundle"):
        ug.load(truncated)
    from safetensors.numpy import save_file

    save_file({"w": np.zeros(3, np.float32)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(ug.CheckpointError, match="not a unigraph bundle"):
        ug.load(tmp_path / "plain.safetensors")


def test_existing_output_is_kept_unless_overwritten(tmp_path):
    _, _, conv = _converted()
    path = tmp_path / "model.ug"
    path.write_text("precious")
    with pytest.raises(ug.OutputExistsError, match="overwrite=True"):
        conv.save(path)
    assert path.read_text() == "precious"
    conv.save(path, overwrite=True)
    assert ug.load(path).graph.dumps() == conv.graph.dumps()
    assert [p.name for p in tmp_path.iterdir()] == ["model.ug"]  # no staging file left behind
