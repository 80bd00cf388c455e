"""One format vocabulary: every format of ``unigraph.formats`` written by ``ug.convert``/``conv.write``, each
output read back as it will be used and checked against torch, and the command line writing the same bytes."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

import unigraph as ug
from unigraph import formats
from unigraph.cli import main, targets
from unigraph.io.safetensors_file import SafetensorsFile


class Tied(nn.Module):
    """A convolution (kernel transposed in Flax), a batch norm with an int64 buffer, tied embeddings."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.embed = nn.Embedding(10, 4)
        self.head = nn.Linear(4, 10, bias=False)
        self.head.weight = self.embed.weight
        with torch.no_grad():
            self.bn.running_mean.uniform_(-0.5, 0.5)
            self.bn.running_var.uniform_(0.5, 1.5)
            self.bn.num_batches_tracked.fill_(7)

    def forward(self, x, ids):
        h = torch.relu(self.bn(self.conv(x))).mean((2, 3))
        return self.head(h + self.embed(ids).mean(1))


def inputs(batch: int):
    generator = torch.Generator().manual_seed(batch)
    return torch.randn(batch, 3, 8, 8, generator=generator), torch.randint(0, 10, (batch, 5), generator=generator)


@pytest.fixture(scope="module")
def model():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return Tied().eval()


@pytest.fixture(scope="module")
def conv(model):
    return ug.from_torch(model, inputs(2))


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_command_line_and_the_api_share_one_vocabulary():
    assert list(formats.FORMATS) == ["savedmodel", "safetensors", "torch", "torch_source", "keras", "tflite", "orbax", "ug"]
    assert formats.WEIGHT_FORMATS == ("savedmodel", "safetensors", "torch", "orbax", "ug")
    assert [formats.from_suffix(f"out{s}") for s in (".ug", ".safetensors", ".py", ".orbax", ".savedmodel")] == [
        "ug", "safetensors", "torch_source", "orbax", "savedmodel"
    ]
    assert formats.from_suffix("out.bin") is None
    assert sorted(targets._WRITERS) == sorted(formats.WEIGHT_FORMATS)  # translate writes every format with weights
    with pytest.raises(ValueError, match="unknown format 'onnx'; unigraph writes savedmodel, safetensors, torch"):
        formats.get("onnx")


@pytest.mark.parametrize("fmt", list(formats.FORMATS))
def test_convert_writes_every_format_and_each_output_runs_as_the_model(fmt, model, tmp_path):
    """``ug.convert(to=fmt)``, read back as ``--check`` reads it (the SavedModel run by TensorFlow, the
    state dict in the generated module, the source file with the conversion's weights …), matches torch."""
    out = tmp_path / f"out{formats.get(fmt).suffix}"
    conv = ug.convert(model, inputs(2), to=fmt, output=out)
    assert out.exists() and [p.name for p in tmp_path.iterdir()] == [out.name]  # nothing staged left beside it
    candidate = targets.reload(fmt, conv, out)
    for batch in (2, 3):
        report = ug.check(model, candidate, inputs(batch))
        assert report.ok, report
    with pytest.raises(ug.OutputExistsError):
        conv.write(fmt, out)


def test_the_state_dict_file_is_to_state_dict_bit_for_bit(conv, model, tmp_path):
    """Names (the tied one included), dtypes (int64 stays int64) and values; it loads strictly."""
    path = conv.save_state_dict(tmp_path / "state.safetensors")
    written, want = load_file(path), model.state_dict()
    assert sorted(written) == sorted(want) == sorted(conv.to_state_dict())
    for name, tensor in want.items():
        assert written[name].dtype == tensor.dtype and torch.equal(written[name], tensor), name
    assert written["bn.num_batches_tracked"].dtype == torch.int64
    Tied().load_state_dict(written, strict=True)


def test_the_command_line_writes_the_same_state_dict(conv, model, tmp_path, monkeypatch):
    """``unigraph convert --to torch`` and ``conv.save_state_dict`` are one code path: the same bytes."""
    program = torch.export.export(model, inputs(2), dynamic_shapes=({0: torch.export.Dim("batch")}, {0: torch.export.Dim("batch")}))
    torch.export.save(program, tmp_path / "tied.pt2")
    assert main(["convert", str(tmp_path / "tied.pt2"), "-o", str(tmp_path / "cli.safetensors"), "--to", "torch"]) == 0
    api = ug.from_torch(program).save_state_dict(tmp_path / "api.safetensors")
    assert sha256(tmp_path / "cli.safetensors") == sha256(api)


def test_bfloat16_variables_keep_their_dtype_in_the_state_dict(conv, tmp_path):
    """A leaf of another dtype than the source's (bfloat16 weights) is written as it is, not cast back."""
    import jax
    import jax.numpy as jnp

    half = ug.Converted(
        conv.graph,
        jax.tree.map(lambda v: v.astype(jnp.bfloat16) if v.dtype == jnp.float32 else v, conv.variables),
        conv.param_map,
        conv.metadata,
    )
    path = half.save_state_dict(tmp_path / "half.safetensors")
    with safe_open(path, framework="pt") as f:
        assert f.get_slice("conv.weight").get_dtype() == "BF16"
        assert f.get_slice("bn.num_batches_tracked").get_dtype() == "I64"
    written = load_file(path)
    for name, tensor in half.to_state_dict().items():
        assert written[name].dtype == tensor.dtype and torch.equal(written[name], tensor), name
    with SafetensorsFile(path) as f:
        kernel = np.asarray(half.variables["params"]["conv"]["kernel"])
        np.testing.assert_array_equal(f.read("conv.weight"), np.transpose(kernel, (3, 2, 0, 1)))
