"""Model files the command-line tests convert, written by the tests themselves (no downloads).

Each fixture writes its files once per test process: a ``.pt2``, a Hugging
Face folder saved with ``save_pretrained`` (sharded) and one with
``pytorch_model.bin``, a factory's weights as ``.safetensors`` and ``.pt``, a
``.ug`` bundle, and ``.keras``/``.h5`` files (written in a process running
Keras on JAX, as the command line does).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from tests.cli.models import CNN

REPO = Path(__file__).resolve().parents[2]
UNIGRAPH = Path(sys.executable).with_name("unigraph")
VOCAB = 99


def run_cli(*args, cwd=None, env=None, timeout=300) -> subprocess.CompletedProcess:
    """Runs the ``unigraph`` console script (a fresh process, as from a shell)."""
    return subprocess.run(
        [str(UNIGRAPH), *map(str, args)], capture_output=True, text=True, cwd=cwd or REPO,
        env={**os.environ, **(env or {})}, timeout=timeout,
    )


_NATIVE_LOG = re.compile(r"^([IWEF]\d{4} |WARNING: All log messages before absl)")


def quiet(stderr: str) -> bool:
    """No warnings, errors or tracebacks: nothing on stderr but the native log lines TensorFlow's and
    XLA's C++ side may print before their logging is set up (a GPU probe on a machine without one)."""
    return all(_NATIVE_LOG.match(line) for line in stderr.splitlines())


def hf_model(seed: int = 0):
    import transformers as hf

    torch.manual_seed(seed)
    config = hf.BertConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=64,
    )
    return hf.BertForMaskedLM(config).eval()


@pytest.fixture(scope="session")
def pt2_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pt2") / "cnn.pt2"
    program = torch.export.export(
        CNN().eval(), (torch.randn(2, 3, 16, 16),), dynamic_shapes=({0: torch.export.Dim("batch")},)
    )
    torch.export.save(program, path)
    return path


@pytest.fixture(scope="session")
def hf_folder(tmp_path_factory) -> Path:
    """A tiny BERT with a masked-LM head (tied weights), saved in 20 KB shards."""
    path = tmp_path_factory.mktemp("hf") / "bert"
    hf_model().save_pretrained(path, max_shard_size="20KB")
    assert (path / "model.safetensors.index.json").is_file()
    return path


@pytest.fixture(scope="session")
def hf_bin_folder(tmp_path_factory, hf_folder) -> Path:
    """The same model as a config and a ``pytorch_model.bin`` (what older checkpoints hold)."""
    path = tmp_path_factory.mktemp("hf_bin") / "bert"
    path.mkdir()
    (path / "config.json").write_text((hf_folder / "config.json").read_text())
    torch.save(hf_model().state_dict(), path / "pytorch_model.bin")
    return path


@pytest.fixture(scope="session")
def factory_weights(tmp_path_factory) -> dict[str, Path]:
    """Weights for ``tests.cli.models:cnn`` (another seed than its own) as safetensors and .pt."""
    from safetensors.torch import save_file

    directory = tmp_path_factory.mktemp("weights")
    state = CNN(seed=1).state_dict()
    save_file(state, directory / "cnn.safetensors")
    torch.save(state, directory / "cnn.pt")
    return {"safetensors": directory / "cnn.safetensors", "pt": directory / "cnn.pt"}


@pytest.fixture(scope="session")
def ug_file(tmp_path_factory) -> Path:
    import unigraph as ug

    path = tmp_path_factory.mktemp("ug") / "cnn.ug"
    ug.from_torch(CNN().eval(), (torch.randn(2, 3, 16, 16),)).save(path)
    return path


KERAS_WRITER = """
import sys, keras
keras.utils.set_random_seed(0)
inputs = keras.Input((8, 8, 3), name="image")
x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
x = keras.layers.BatchNormalization()(x)
x = keras.layers.GlobalAveragePooling2D()(keras.layers.ReLU()(x))
model = keras.Model(inputs, keras.layers.Dense(5)(x), name="tiny")
model.save(sys.argv[1] + "/tiny.keras")
model.save(sys.argv[1] + "/tiny.h5")
lam = keras.Sequential([keras.Input((4,)), keras.layers.Lambda(lambda t: t * 2)])
lam.save(sys.argv[1] + "/lambda.keras")
"""


@pytest.fixture(scope="session")
def keras_files(tmp_path_factory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("keras")
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(KERAS_WRITER), str(directory)], capture_output=True, text=True,
        env={**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return {"keras": directory / "tiny.keras", "h5": directory / "tiny.h5", "lambda": directory / "lambda.keras"}


def read_json(path: Path):
    return json.loads(Path(path).read_text())
