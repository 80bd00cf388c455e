"""The .ug bundle: a converted model in one safetensors file, reloaded without torch or tensorflow."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

import unigraph as ug


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


def test_bfloat16_survives(tmp_path):
    model = nn.Linear(4, 3).to(torch.bfloat16).eval()
    x = torch.randn(2, 4).to(torch.bfloat16)
    conv = ug.from_torch(model, (x,))
    again = ug.load(conv.save(tmp_path / "m.ug"))
    assert again.variables["params"]["kernel"].dtype.name == "bfloat16"
    assert torch.equal(again.to_state_dict()["weight"], model.weight)


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
