"""The Keras backend: converted models as Functional Keras 3 models that match the source, train with
``fit``, freeze, take a new head, save as ``.keras``, and run under every Keras backend.

This process's Keras runs TensorFlow (its default); the JAX and torch backends
each run in a fresh process with ``KERAS_BACKEND`` set, on the conversion's
``.ug`` bundle, against torch's outputs saved here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import torch

import unigraph as ug
from tests.zoo.models import MODELS
from tests.zoo.util import flatten
from unigraph import signature
from unigraph.backends.keras_layers import Op
from unigraph.converted import host_arrays

#: float32 tolerances at the outputs, as DESIGN.md states them.
RTOL, ATOL = 1e-4, 1e-5
REPRESENTATIVE = ("mlp", "cnn", "lstm", "multihead_attention", "resnet18", "bert", "gpt2")


def keras_arguments(conv, args: tuple, kwargs: dict):
    """What the Keras model takes for the source model's ``(args, kwargs)``: one tensor, a list, or a dict by name."""
    arrays = [np.asarray(a) for a in signature.bind(conv.graph, *host_arrays((args, kwargs)))]
    if kwargs:
        return dict(zip(signature.input_names(conv.graph), arrays))
    return arrays[0] if len(arrays) == 1 else arrays


def torch_outputs(case, args, kwargs) -> dict:
    with torch.no_grad():
        return flatten(case.model(*args, **kwargs))


def assert_matches(got: dict, want: dict, where: str) -> None:
    assert sorted(got) == sorted(want), where
    for path, value in want.items():
        np.testing.assert_allclose(np.asarray(got[path], np.float32), value.astype(np.float32), rtol=RTOL, atol=ATOL, err_msg=f"{where} {path}")


def keras_outputs(model, inputs) -> dict:
    return {p: keras.ops.convert_to_numpy(v) for p, v in flatten(model(inputs)).items()}


@pytest.fixture(scope="module", params=REPRESENTATIVE)
def converted(request):
    case = MODELS[request.param]()
    args, kwargs = case.make_inputs(case.batches[0])
    with torch.no_grad() if case.no_grad else torch.enable_grad():
        conv = ug.from_torch(case.model, args, kwargs)
    return request.param, case, conv


def test_the_keras_model_matches_torch_at_two_batch_sizes(converted):
    name, case, conv = converted
    model = conv.to_keras()
    assert isinstance(model, keras.Model)
    for batch in case.batches:
        args, kwargs = case.make_inputs(batch)
        got = keras_outputs(model, keras_arguments(conv, args, kwargs))
        assert_matches(got, torch_outputs(case, args, kwargs), f"{name} at batch {batch}")


def test_params_are_trainable_and_batch_statistics_are_not(converted):
    name, case, conv = converted
    model = conv.to_keras()
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == conv.parameter_count(), name
    graph = conv.graph
    read = {value for node in graph.nodes for value in node.inputs}
    floats = ("float16", "bfloat16", "float32", "float64")
    fixed = [v for v, var in graph.variables.items() if v in read and (var.collection != "params" or graph.types[v].dtype not in floats)]
    fixed += [v for v, array in graph.constants.items() if np.ndim(array)]  # tensors the trace fixed
    frozen = sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)
    assert frozen == sum(int(np.prod(graph.types[v].shape)) for v in fixed), name


def test_keras_layers_where_the_graph_has_them_named_after_the_source():
    case = MODELS["resnet18"]()
    args, _ = case.make_inputs(2)
    model = ug.from_torch(case.model, args).to_keras()
    kinds = {layer.name: type(layer).__name__ for layer in model.layers}
    assert kinds["conv1"] == "Conv2D" and kinds["layer1_0_conv1"] == "Conv2D" and kinds["layer2_0_downsample_0"] == "Conv2D"
    assert kinds["layer1_0_bn1"] == "BatchNormalization" and kinds["fc"] == "Dense"
    assert model.get_layer("layer1_0_bn1").moving_mean.trainable is False
    assert model.input.shape[0] is None  # the symbolic batch


@pytest.mark.parametrize("name", ["cnn", "resnet18"])
def test_channels_last_takes_and_returns_nhwc_with_no_permutes_inside(name):
    """With and without XLA: TensorFlow's CPU kernels run the channels-last convolutions as they are."""
    import tensorflow as tf

    from unigraph.backends.keras import call_as_source

    case = MODELS[name]()
    args, _ = case.make_inputs(2)
    conv = ug.from_torch(case.model, args)
    model = conv.to_keras(channels_last=True)
    assert model.input.shape[1:] == tuple(args[0].shape[2:]) + (args[0].shape[1],)
    kinds = [layer.op if isinstance(layer, Op) else type(layer).__name__ for layer in model.layers]
    assert "Permute" not in kinds and "transpose" not in kinds, kinds
    nhwc = np.transpose(args[0].numpy(), (0, 2, 3, 1))
    want = torch_outputs(case, args, {})
    for jit in (False, True):
        got = tf.function(model, jit_compile=jit)(nhwc)
        assert_matches({"output": np.asarray(got)}, want, f"{name} channels-last, jit_compile={jit}")
    assert_matches({"output": call_as_source(model, conv, channels_last=True)(*args)}, want, f"{name} as the source")


# ---- training ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cnn():
    case = MODELS["cnn"]()
    args, _ = case.make_inputs(2)
    return case, ug.from_torch(case.model, args)


def _data(n: int = 16):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, 3, 32, 32)).astype(np.float32), rng.integers(0, 10, n)


@pytest.mark.parametrize(
    "optimizer", [lambda: keras.optimizers.Adam(1e-3), lambda: keras.optimizers.AdamW(1e-3), lambda: keras.optimizers.SGD(1e-2, momentum=0.9)],
    ids=["adam", "adamw", "sgd_momentum"],
)
def test_fit_lowers_the_loss_and_frozen_layers_do_not_change(cnn, optimizer):
    case, conv = cnn
    model = conv.to_keras()
    frozen = [model.get_layer("features_0"), model.get_layer("features_1")]  # the first convolution and its norm
    for layer in frozen:
        layer.trainable = False
    before = [np.array(w) for layer in frozen for w in layer.weights]
    xs, ys = _data()
    model.compile(optimizer=optimizer(), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    losses = model.fit(xs, ys, epochs=4, batch_size=8, verbose=0, shuffle=False).history["loss"]
    assert losses[-1] < losses[0], losses
    for w, b in zip((w for layer in frozen for w in layer.weights), before):  # a frozen norm keeps its statistics
        np.testing.assert_array_equal(np.array(w), b)


def _fit_losses(model, xs, ys, epochs: int = 3) -> list[float]:
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model.fit(xs, ys, epochs=epochs, batch_size=len(ys), verbose=0, shuffle=False).history["loss"]


def test_fit_with_adam_lowers_the_loss_of_resnet18_bert_and_a_keras_model():
    """The issue's three: a torch CNN with batch norms, a torch transformer, a model converted from Keras."""
    from tests.frontends.keras_models import text_model

    rng = np.random.default_rng(0)
    resnet = MODELS["resnet18"]()
    images = rng.standard_normal((4, 3, 32, 32)).astype(np.float32)
    model = ug.from_torch(resnet.model, (torch.from_numpy(images),)).to_keras()
    losses = _fit_losses(model, images, rng.integers(0, 1000, 4))
    assert losses[-1] < losses[0], ("resnet18", losses)

    bert = MODELS["bert"]()
    args, kwargs = bert.make_inputs(4)
    conv = ug.from_torch(bert.model, args, kwargs)
    encoder = conv.to_keras()
    inputs = keras_arguments(conv, args, kwargs)
    hidden = encoder(encoder.input)  # the outputs dict; BERT's pooled first token, classified
    logits = keras.layers.Dense(2, name="classifier")(hidden["pooler_output"])
    classifier = keras.Model(encoder.input, logits)
    losses = _fit_losses(classifier, inputs, np.array([0, 1, 0, 1]))
    assert losses[-1] < losses[0], ("bert", losses)

    source = text_model()
    ids = rng.integers(0, 40, (8, 12)).astype(np.int32)
    model = ug.from_keras(source).to_keras()
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(ids)), keras.ops.convert_to_numpy(source(ids)), rtol=RTOL, atol=ATOL)
    losses = _fit_losses(model, ids, rng.integers(0, 5, 8))
    assert losses[-1] < losses[0], ("keras text model", losses)


def test_the_head_can_be_cut_off_and_replaced(cnn):
    case, conv = cnn
    model = conv.to_keras()
    head = model.get_layer("head")  # the last Linear
    features = head.input
    classes = keras.layers.Dense(3, name="new_head")(features)
    tuned = keras.Model(model.input, classes)
    xs, _ = _data(8)
    got = keras.ops.convert_to_numpy(tuned(xs))
    assert got.shape == (8, 3)
    tuned.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    tuned.fit(xs, np.arange(8) % 3, epochs=1, verbose=0)


# ---- saving, and every Keras backend ---------------------------------------------------------------------------

LOAD_KERAS = """
import json, sys
import numpy as np, keras
import unigraph.backends.keras  # registers unigraph's layers with Keras
model = keras.saving.load_model(sys.argv[1])
inputs = np.load(sys.argv[2])
out = keras.ops.convert_to_numpy(model(inputs["x"]))
print(json.dumps(out.tolist()))
"""

CONVERT_ELSEWHERE = """
import json, sys
import numpy as np, keras
import unigraph as ug
conv = ug.load(sys.argv[1])
model = conv.to_keras()
inputs = dict(np.load(sys.argv[2]))
names = json.loads(sys.argv[3])
arguments = {{n: inputs[n] for n in names}} if {keyword} else [inputs[n] for n in names]
out = model(arguments if len(names) > 1 or {keyword} else arguments[0])
out = out if isinstance(out, dict) else {{"output": out}}
print(json.dumps({{k: keras.ops.convert_to_numpy(v).tolist() for k, v in out.items()}}))
"""


def _run(code: str, *args, backend: str = "tensorflow") -> dict:
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_saved_keras_file_loads_in_a_fresh_process_with_the_same_outputs(cnn, tmp_path):
    case, conv = cnn
    model = conv.to_keras()
    xs, _ = _data(3)
    model.save(tmp_path / "cnn.keras")
    np.savez(tmp_path / "inputs.npz", x=xs)
    got = np.asarray(_run(LOAD_KERAS, tmp_path / "cnn.keras", tmp_path / "inputs.npz"), np.float32)
    np.testing.assert_allclose(got, keras.ops.convert_to_numpy(model(xs)), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("backend", ["jax", "torch"])
@pytest.mark.parametrize("name", ["cnn", "bert"])
def test_every_keras_backend_runs_the_model(name, backend, tmp_path):
    case = MODELS[name]()
    args, kwargs = case.make_inputs(case.batches[0])
    conv = ug.from_torch(case.model, args, kwargs)
    conv.save(tmp_path / "model.ug")
    args, kwargs = case.make_inputs(case.batches[-1])
    arguments = keras_arguments(conv, args, kwargs)
    names = list(arguments) if isinstance(arguments, dict) else ["x"]
    np.savez(tmp_path / "inputs.npz", **(arguments if isinstance(arguments, dict) else {"x": arguments}))
    code = CONVERT_ELSEWHERE.format(keyword=bool(kwargs))
    got = _run(code, tmp_path / "model.ug", tmp_path / "inputs.npz", json.dumps(names), backend=backend)
    want = torch_outputs(case, args, kwargs)
    got = {(f"[{k!r}]" if kwargs else k): np.asarray(v) for k, v in got.items()}
    assert_matches(got, want, f"{name} under Keras's {backend} backend")
