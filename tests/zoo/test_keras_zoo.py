"""Keras models → unigraph → PyTorch, Flax and TF SavedModel, each against Keras's own output.

Per model (seeded random weights, norm scales and statistics randomized too;
small inputs): Keras (the TensorFlow backend, this process's default) runs it
at two batch sizes; ``from_keras`` converts it once (through its JAX worker),
and then

- the ``Converted`` itself (the Flax module, jitted) and the ``nn.Module`` of
  ``to_torch`` are compared here;
- the SavedModel is reloaded and run in a fresh process that imports only
  TensorFlow (tests/backends/tf_process.py);
- the file of ``to_torch_source`` and the state dict are loaded
  (``strict=True``) and run in a fresh process that imports only torch, and
  asserts that neither keras, tensorflow, jax nor unigraph got imported.

float32, ``rtol=1e-4, atol=1e-5``, every output leaf.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import subprocess
import sys
from collections.abc import Callable

import numpy as np
import pytest

from tests.backends.tf_process import import_tensorflow, run_tensorflow

import_tensorflow()

import keras  # noqa: E402
import torch  # noqa: E402

import unigraph as ug  # noqa: E402
from tests.frontends import keras_models  # noqa: E402
from tests.zoo.util import ATOL, RTOL, flatten  # noqa: E402

pytestmark = pytest.mark.slow

BATCHES = (1, 3)


@dataclasses.dataclass
class KerasCase:
    model: keras.Model
    make_inputs: Callable[[int], object]  # batch size -> what the model is called with, seeded
    example: bool = False  # convert on make_inputs(2) instead of the model's symbolic inputs


def _images(size: int):
    return lambda batch: np.random.default_rng(batch).normal(size=(batch, size, size, 3)).astype(np.float32)


def _application(name: str, size: int = 32) -> Callable[[], KerasCase]:
    def build() -> KerasCase:
        keras.utils.set_random_seed(0)
        model = getattr(keras.applications, name)(
            weights=None, input_shape=(size, size, 3), classes=10, classifier_activation=None
        )
        return KerasCase(keras_models.randomize(model), _images(size))

    return build


def _tokens(vocab: int, length: int, *names: str):
    def make(batch: int):
        rng = np.random.default_rng(batch)
        inputs = {"token_ids": rng.integers(1, vocab, (batch, length)).astype(np.int32)}
        mask = np.ones((batch, length), np.int32)
        mask[0, length - 2 :] = 0  # padding in the first row
        inputs["padding_mask"] = mask
        if "segment_ids" in names:
            inputs["segment_ids"] = (np.arange(length) >= length // 2).astype(np.int32)[None].repeat(batch, 0)
        return inputs

    return make


def _hub(name: str) -> Callable[[], KerasCase]:
    def build() -> KerasCase:
        import keras_hub

        keras.utils.set_random_seed(0)
        config = dict(vocabulary_size=60, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32,
                      max_sequence_length=16)
        model = getattr(keras_hub.models, name)(**config)
        names = ("segment_ids",) if name == "BertBackbone" else ()
        return KerasCase(keras_models.randomize(model), _tokens(60, 8, *names), example=True)

    return build


def _text() -> KerasCase:
    model = keras_models.text_model()
    return KerasCase(model, lambda b: np.random.default_rng(b).integers(0, 40, (b, 12)).astype(np.int32))


def _subclassed() -> KerasCase:
    model = keras_models.tiny_classifier()
    return KerasCase(model, lambda b: np.random.default_rng(b).normal(size=(b, 8)).astype(np.float32), example=True)


MODELS = {
    "mobilenet_v2": _application("MobileNetV2"),
    "resnet50": _application("ResNet50"),
    "efficientnet_b0": _application("EfficientNetB0"),
    "densenet121": _application("DenseNet121"),
    "convnext_tiny": _application("ConvNeXtTiny"),
    "inception_v3": _application("InceptionV3", 75),
    "text_lstm": _text,
    "subclassed": _subclassed,
    "bert": _hub("BertBackbone"),
    "gpt2": _hub("GPT2Backbone"),
}


def _assert_close(where: str, got: dict, want: dict):
    assert sorted(got) == sorted(want), (where, sorted(got), sorted(want))
    for path, expected in want.items():
        np.testing.assert_allclose(got[path], expected, rtol=RTOL, atol=ATOL, err_msg=f"{where} {path}")


def _torch_inputs(inputs):
    if isinstance(inputs, dict):
        return {k: torch.from_numpy(v) for k, v in inputs.items()}
    return torch.from_numpy(inputs)


#: Run in each fresh process: its model on every case, outputs compared leaf by leaf.
COMPARE = inspect.getsource(flatten) + """

def compare(run, cases, rtol, atol):
    for batch, inputs, want in cases:
        got = flatten(run(inputs))
        assert sorted(got) == sorted(want), (batch, sorted(got), sorted(want))
        for path, expected in want.items():
            np.testing.assert_allclose(got[path], expected, rtol=rtol, atol=atol, err_msg=f"batch {batch} {path}")
"""

SAVEDMODEL_CHECK = COMPARE + """
with np.load(sys.argv[2], allow_pickle=False) as data:
    stored = dict(data)
cases = []
for batch in sys.argv[3].split(","):
    inputs = {k.split("/", 1)[1]: v for k, v in stored.items() if k.startswith(f"in{batch}/")}
    want = {k.split("/", 1)[1]: v for k, v in stored.items() if k.startswith(f"out{batch}/")}
    cases.append((batch, inputs[""] if list(inputs) == [""] else inputs, want))
m = tf.saved_model.load(sys.argv[1])
compare(lambda inputs: m(inputs), cases, float(sys.argv[4]), float(sys.argv[5]))
print("ok")
"""

TORCH_SOURCE_CHECK = "import sys\nimport numpy as np\nimport torch\n" + COMPARE + """
sys.path.insert(0, sys.argv[1])
from generated import Model

model = Model()
model.load_state_dict(torch.load(sys.argv[2]), strict=True)
model.eval()
with torch.no_grad():
    compare(model, torch.load(sys.argv[3], weights_only=False), float(sys.argv[4]), float(sys.argv[5]))
leaked = sorted(m for m in ("keras", "tensorflow", "jax", "unigraph") if m in sys.modules)
assert not leaked, f"the torch process imported {leaked}"
print("ok")
"""


#: The zoo but the keras.applications whose layers MobileNetV2 and ResNet50 cover here (DenseNet,
#: ConvNeXt, EfficientNet, Inception); ``bench/zoo.py`` and ``bench/bench_keras_zoo.py`` run every one.
REPRESENTATIVE = sorted(set(MODELS) - {"densenet121", "convnext_tiny", "efficientnet_b0", "inception_v3"})


@pytest.mark.parametrize("name", REPRESENTATIVE)
def test_keras_model_converts_to_torch_flax_and_savedmodel(name, tmp_path):
    case = MODELS[name]()
    inputs = {batch: case.make_inputs(batch) for batch in BATCHES}
    want = {b: flatten(keras.tree.map_structure(keras.ops.convert_to_numpy, case.model(inputs[b], training=False))) for b in BATCHES}
    conv = ug.from_keras(case.model, case.make_inputs(2) if case.example else None)
    assert conv.metadata["source_framework"] == "keras"

    module = conv.to_torch()
    for batch in BATCHES:
        _assert_close(f"flax, batch {batch}:", flatten(conv(inputs[batch])), want[batch])
        with torch.no_grad():
            _assert_close(f"torch, batch {batch}:", flatten(module(_torch_inputs(inputs[batch]))), want[batch])

    saved = conv.to_savedmodel(tmp_path / "savedmodel", platforms=("cpu",))
    arrays = {}
    for batch in BATCHES:
        given = inputs[batch] if isinstance(inputs[batch], dict) else {"": inputs[batch]}
        arrays.update({f"in{batch}/{k}": v for k, v in given.items()})
        arrays.update({f"out{batch}/{k}": v for k, v in want[batch].items()})
    np.savez(tmp_path / "data.npz", **arrays)
    batches = ",".join(map(str, BATCHES))
    out = run_tensorflow(SAVEDMODEL_CHECK, saved, tmp_path / "data.npz", batches, RTOL, ATOL, cwd=tmp_path)
    assert out.strip().endswith("ok")

    folder = tmp_path / "torch_file"
    folder.mkdir()
    conv.to_torch_source(folder / "generated.py")
    torch.save(conv.to_state_dict(), tmp_path / "state.pt")
    cases = [(b, _torch_inputs(inputs[b]), want[b]) for b in BATCHES]
    torch.save(cases, tmp_path / "cases.pt")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", TORCH_SOURCE_CHECK, folder, tmp_path / "state.pt", tmp_path / "cases.pt",
         str(RTOL), str(ATOL)],
        capture_output=True, text=True, cwd=tmp_path, env=env,
    )
    assert result.returncode == 0, f"the torch process failed:\n{result.stderr[-4000:]}"
    assert result.stdout.strip().endswith("ok")
