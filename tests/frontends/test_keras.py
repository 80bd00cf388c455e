"""The Keras frontend: models of every kind against Keras, names and structures kept, files, errors.

This process's Keras runs the TensorFlow backend (the default here), so
``from_keras`` traces in its worker process (Keras on JAX) unless a test says
otherwise; the models with custom classes come from ``keras_models``, which
the worker can import. Outputs are compared with Keras's own at two batch
sizes (float32, ``rtol=1e-4, atol=1e-5``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")  # on TensorFlow, after triton (tests/conftest.py)

import unigraph as ug  # noqa: E402
from tests.frontends import keras_models  # noqa: E402

RTOL, ATOL = 1e-4, 1e-5
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _images(batch, *shape, seed=0):
    return np.random.default_rng(seed + batch).normal(size=(batch, *shape)).astype(np.float32)


def assert_matches(model, conv, make_inputs, batches=(1, 3)):
    for batch in batches:
        report = ug.check(model, conv, (make_inputs(batch),), rtol=RTOL, atol=ATOL)
        assert report.ok, f"batch {batch}:\n{report}"


@pytest.fixture(scope="module")
def branching():
    model = keras_models.branching_model()
    return model, ug.from_keras(model)


def _branching_inputs(batch):
    return {"image": _images(batch, 8, 8, 3), "features": _images(batch, 6, seed=7)}


# ---- models of every kind ----------------------------------------------------------------------


def test_functional_model_with_nested_model_shared_layer_dict_inputs_and_list_outputs(branching):
    model, conv = branching
    assert sorted(conv.input_names) == ["features", "image"]  # the keras.Input names
    assert [conv.graph.types[n].shape for n in sorted(conv.input_names)] == [("batch", 6), ("batch", 8, 8, 3)]
    out = conv(_branching_inputs(2))
    assert isinstance(out, list) and [o.shape for o in out] == [(2, 5), (2, 5)]
    shared = [n for n in conv.graph.nodes if n.op == "dense" and n.source.module == "shared"]
    assert len(shared) == 2 and shared[0].inputs[1] == shared[1].inputs[1]  # one kernel, used twice
    assert_matches(model, conv, _branching_inputs)


def test_node_sources_are_keras_layer_paths(branching):
    _, conv = branching
    modules = {n.source.module for n in conv.graph.nodes}
    assert {"conv", "inner/d1", "inner/bn", "shared", "widen", "probs"} <= modules
    assert all("vmap" not in m and "->" not in m for m in modules)


def test_subclassed_model_with_a_custom_layer_takes_the_shape_of_its_first_call():
    model = keras_models.tiny_classifier()  # called once on (1, 8): no example_inputs needed
    conv = ug.from_keras(model)
    assert conv.graph.types[conv.input_names[0]].shape == ("batch", 8)
    alpha = conv.param_map.by_source("tiny_classifier/block/alpha")
    assert (alpha.key, alpha.role) == ("params/tiny_classifier/block/alpha", None)  # unknown role: kept as is
    custom = [n for n in conv.graph.nodes if n.source.module == "block"]
    assert custom and all(n.source.location.startswith("tests/frontends/keras_models.py:") for n in custom)
    assert_matches(model, conv, lambda b: _images(b, 8, seed=3))


def test_a_built_subclassed_model_whose_call_takes_no_training_flag_needs_no_example_inputs():
    """Built by ``model.build((None, 16))``: the shape it was built with, its batch symbolic; its
    ``call(self, x)`` gets no ``training`` in the trace or in the checker's Keras run."""
    model = keras_models.no_training_flag()
    conv = ug.from_keras(model)
    assert conv.graph.types[conv.input_names[0]].shape == ("batch", 16)
    assert_matches(model, conv, lambda b: _images(b, 16, seed=5))


def test_an_unbuilt_subclassed_model_asks_for_example_inputs():
    with pytest.raises(ug.ExportError, match=r"never built.*pass example_inputs"):
        ug.from_keras(keras_models.NoTrainingFlag(name="unbuilt"))


def test_text_model_with_embedding_attention_layer_norm_and_lstm():
    model = keras_models.text_model()
    conv = ug.from_keras(model)
    ops = conv.graph.op_histogram()
    assert ops["embedding"] == 1 and ops["dense"] >= 12  # the LSTM's steps are unrolled
    assert {"attention/query", "lstm/lstm_cell", "norm"} <= {n.source.module for n in conv.graph.nodes}
    assert_matches(model, conv, lambda b: np.random.default_rng(b).integers(0, 40, (b, 12)).astype(np.int32))


def test_unknown_sizes_become_symbols():
    keras.utils.set_random_seed(0)
    steps = keras.Input((None, 4), name="steps")
    model = keras.Model(steps, keras.layers.Dense(3, name="proj")(steps) * 2.0)
    conv = ug.from_keras(model)
    assert conv.graph.types[conv.input_names[0]].shape == ("batch", "dim1", 4)
    for batch, length in ((1, 2), (3, 7)):
        x = np.random.default_rng(length).normal(size=(batch, length, 4)).astype(np.float32)
        np.testing.assert_allclose(np.asarray(conv(x)), keras.ops.convert_to_numpy(model(x)), rtol=RTOL, atol=ATOL)


def test_a_size_the_model_cannot_take_symbolically_asks_for_example_inputs():
    keras.utils.set_random_seed(0)
    ids = keras.Input((None,), dtype="int32", name="ids")
    h = keras.layers.Embedding(10, 4, name="embed")(ids)
    model = keras.Model(ids, keras.layers.Reshape((-1,))(h[:, :3]))  # slicing a symbolic length
    try:
        conv = ug.from_keras(model)
    except ug.ExportError as e:
        assert "pass example_inputs" in str(e) and "(batch, dim1) int32" in str(e)
    else:  # JAX could take it symbolically after all: then it must be right
        assert conv.graph.types[conv.input_names[0]].shape == ("batch", "dim1")
    conv = ug.from_keras(model, np.zeros((2, 5), np.int32))
    assert conv.graph.types[conv.input_names[0]].shape == ("batch", 5)
    x = np.arange(15, dtype=np.int32).reshape(3, 5) % 10
    np.testing.assert_allclose(np.asarray(conv(x)), keras.ops.convert_to_numpy(model(x)), rtol=RTOL, atol=ATOL)


def test_a_branch_on_a_symbolic_size_is_not_taken_for_a_bound():
    """``x.shape[1] <= 4`` is inconclusive for a symbol, but the model runs on longer inputs too: a
    constraint would convert one side of the branch, so the sizes must come from example_inputs."""
    x = keras.Input((None, 3), name="steps")
    model = keras.Model(x, keras_models.ShortSequencesDoubled(name="branch")(x))
    with pytest.raises(ug.ExportError, match=r"branches on dim1 <= 4 \(it runs with dim1 = \d+ too\).*pass example_inputs"):
        ug.from_keras(model)


@pytest.fixture(scope="module")
def bert():
    """A tiny keras_hub BertBackbone (random init): dict inputs, positions sliced to the sequence length."""
    keras_hub = pytest.importorskip("keras_hub")
    keras.utils.set_random_seed(0)
    model = keras_hub.models.BertBackbone(
        vocabulary_size=100, num_layers=2, num_heads=2, hidden_dim=32, intermediate_dim=64, max_sequence_length=64
    )
    keras_models.randomize(model)
    return model, ug.from_keras(model)


def test_keras_hub_text_backbone_takes_any_sequence_length_up_to_its_maximum(bert):
    model, conv = bert
    assert {conv.graph.types[n].shape for n in conv.input_names} == {("batch", "dim1")}
    assert conv.metadata["shape_constraints"] == ["dim1 <= 64"]  # the position table's length
    for length in (7, 64):
        ids = np.random.default_rng(length).integers(0, 100, (2, length)).astype(np.int32)
        mask = (np.arange(length) < length - 2).astype(np.int32)[None].repeat(2, 0)
        inputs = {"token_ids": ids, "segment_ids": ids % 2, "padding_mask": mask}
        report = ug.check(model, conv, (inputs,), rtol=RTOL, atol=ATOL)
        assert report.ok, f"length {length}:\n{report}"
    longer = {k: np.zeros((1, 65), np.int32) for k in ("token_ids", "segment_ids", "padding_mask")}
    with pytest.raises(ug.InputError, match=r"converted for dim1 <= 64; these inputs have dim1 = 65"):
        conv(longer)  # the graph would repeat the last position where Keras refuses


# ---- variables ---------------------------------------------------------------------------------


def test_variables_take_flax_names_and_collections_and_map_back_to_keras(branching):
    model, conv = branching
    entries = {e.source_name: e for e in conv.param_map}
    assert (entries["inner/bn/gamma"].key, entries["inner/bn/gamma"].role) == ("params/inner/bn/scale", "scale")
    assert entries["inner/bn/beta"].key == "params/inner/bn/bias"
    assert entries["inner/bn/moving_mean"].key == "batch_stats/inner/bn/mean"
    assert entries["inner/bn/moving_variance"].key == "batch_stats/inner/bn/var"
    assert (entries["conv/kernel"].key, entries["conv/kernel"].transform) == ("params/conv/kernel", "identity")
    assert set(entries) == {v.path for v in model.variables}
    by_source = conv.param_map.to_source(conv.variables)
    for v in model.variables:
        np.testing.assert_array_equal(by_source[v.path], keras.ops.convert_to_numpy(v))
    again = conv.param_map.to_variables(by_source)
    np.testing.assert_array_equal(again["batch_stats"]["inner"]["bn"]["var"], by_source["inner/bn/moving_variance"])


def test_non_trainable_variables_stay_out_of_params():
    keras.utils.set_random_seed(0)
    x = keras.Input((4,), name="x")
    frozen = keras.layers.Dense(3, name="frozen")
    frozen.trainable = False
    model = keras.Model(x, keras.layers.Dense(2, name="head")(frozen(x)))
    conv = ug.from_keras(model)
    assert conv.param_map.by_source("frozen/kernel").key == "batch_stats/frozen/kernel"
    assert conv.param_map.by_source("head/kernel").key == "params/head/kernel"
    assert_matches(model, conv, lambda b: _images(b, 4))


# ---- files -------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_files_load_with_registered_custom_layers(tmp_path, suffix):
    keras.utils.set_random_seed(0)
    x = keras.Input((6,), name="x")
    model = keras.Model(x, keras_models.ScaledResidual(6, name="residual")(x), name="with_custom")
    path = tmp_path / f"model{suffix}"
    model.save(path)
    conv = ug.from_keras(path)  # the class is registered here, so the worker imports its module
    assert conv.metadata["source_framework"] == "keras"
    assert_matches(model, conv, lambda b: _images(b, 6))
    by_name = ug.from_keras(path, custom_objects={"unigraph_tests>ScaledResidual": "tests.frontends.keras_models.ScaledResidual"})
    assert by_name.param_map.source_names() == conv.param_map.source_names()


class Doubler(keras.layers.Layer):  # not registered: Keras finds it only among custom_objects
    def call(self, x):
        return 2 * x


def test_a_file_that_needs_an_unknown_class_names_it(tmp_path):
    x = keras.Input((3,), name="x")
    path = tmp_path / "doubler.keras"
    keras.Model(x, Doubler(name="doubler")(x)).save(path)
    with pytest.raises(ug.CheckpointError, match=r"uses 'Doubler'.*custom_objects"):
        ug.from_keras(path)
    conv = ug.from_keras(path, custom_objects={"Doubler": "tests.frontends.test_keras.Doubler"})
    np.testing.assert_allclose(np.asarray(conv(np.ones((2, 3), np.float32))), 2.0)


def test_a_model_whose_class_the_worker_cannot_import_is_refused_up_front():
    class Local(keras.layers.Layer):
        def call(self, x):
            return x + 1

    x = keras.Input((3,), name="x")
    model = keras.Model(x, Local(name="local")(x))
    with pytest.raises(ug.ExportError, match=r"layer 'local' \(.*Local\) is defined inside a function.*KERAS_BACKEND=jax"):
        ug.from_keras(model)


def test_an_hdf5_file_whose_attributes_never_finish_reading_is_refused_in_time(tmp_path, monkeypatch):
    """A mutation of a 17 kB ``.h5`` the fuzzer found: HDF5 loops forever reading its root attribute."""
    from unigraph.frontends import keras as keras_frontend

    monkeypatch.setattr(keras_frontend, "HDF5_PROBE_SECONDS", 3.0)
    path = tmp_path / "model.h5"
    path.write_bytes((Path(__file__).parent / "data" / "hdf5_attribute_hang.h5").read_bytes())
    with pytest.raises(ug.CheckpointError, match=r"model\.h5: reading its HDF5 attributes did not finish in 3 s"):
        keras_frontend.load_model(path, {})


def test_files_are_loaded_in_safe_mode(tmp_path):
    x = keras.Input((3,), name="x")
    path = tmp_path / "lambda.keras"
    keras.Model(x, keras.layers.Lambda(lambda t: t * 3)(x)).save(path)
    with pytest.raises(ug.CheckpointError, match=r"Python bytecode.*safe_mode stays on.*safe_mode=False"):
        ug.from_keras(path)
    trusted = ug.from_keras(path, safe_mode=False)  # the caller trusts the file: its Lambda runs
    np.testing.assert_allclose(np.asarray(trusted(np.ones((1, 3), np.float32))), 3.0)
    model = keras.Model(x, keras.layers.Lambda(lambda t: t * 3)(x))  # an object: its code runs here anyway
    np.testing.assert_allclose(np.asarray(ug.from_keras(model)(np.ones((1, 3), np.float32))), 3.0)


def test_savedmodel_directories_and_other_files_get_clear_errors(tmp_path):
    saved = tmp_path / "exported"
    saved.mkdir()
    (saved / "saved_model.pb").write_bytes(b"")
    with pytest.raises(ug.CheckpointError, match=r"TensorFlow SavedModel.*model\.save\('model\.keras'\)"):
        ug.from_keras(saved)
    with pytest.raises(ug.CheckpointError, match="no such file"):
        ug.from_keras(tmp_path / "missing.keras")
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(ug.CheckpointError, match=r"not a Keras model file"):
        ug.from_keras(tmp_path / "weights.bin")
    with pytest.raises(TypeError, match="Keras 3 model"):
        ug.from_keras(object())


# ---- errors and warnings from the worker ------------------------------------------------------------


def test_unsupported_primitives_come_back_from_the_worker_with_their_layers():
    x = keras.Input((3, 3), name="x")
    model = keras.Model(x, keras_models.TriangularFactor(name="decompose")(x))
    with pytest.raises(ug.UnsupportedOpError) as info:
        ug.from_keras(model)
    assert any("(in decompose)" in place for op in info.value.ops for place in op.locations)


def test_warnings_come_back_from_the_worker():
    x = keras.Input((4,), name="x")
    model = keras.Model(x, keras_models.BatchDependent(name="branch")(x))
    with pytest.warns(UserWarning, match="batch dimension could not be symbolic"):
        conv = ug.from_keras(model, np.ones((2, 4), np.float32))
    assert conv.graph.types[conv.input_names[0]].shape == (2, 4)
    np.testing.assert_allclose(np.asarray(conv(np.ones((2, 4), np.float32))), 2.0)


# ---- under Keras's JAX backend: no worker --------------------------------------------------------------


def test_a_jax_backend_process_traces_in_place(tmp_path):
    code = textwrap.dedent(
        """
        import subprocess, numpy as np, keras, unigraph as ug
        from tests.frontends import keras_models

        def refuse(*args, **kwargs):
            raise AssertionError("no worker process under Keras's JAX backend")

        subprocess.run = refuse
        model = keras_models.tiny_classifier()
        conv = ug.from_keras(model, np.zeros((2, 8), np.float32))
        x = np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32)
        assert ug.check(model, conv, (x,)).ok
        model.save("tiny.keras")
        again = ug.from_keras("tiny.keras", np.zeros((2, 8), np.float32))
        np.testing.assert_allclose(np.asarray(again(x)), np.asarray(conv(x)), rtol=1e-6)
        print(keras.backend.backend())
        """
    )
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": ROOT}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "jax"


# ---- the torch backend on a Keras model ------------------------------------------------------------


def test_keras_layers_become_torch_layers_in_torch_layouts(branching, tmp_path):
    torch = pytest.importorskip("torch")
    model, conv = branching
    state = conv.to_state_dict()
    kernel = keras.ops.convert_to_numpy(model.get_layer("conv").kernel)  # (kh, kw, in, out)
    np.testing.assert_array_equal(state["conv.weight"].numpy(), kernel.transpose(3, 2, 0, 1))
    assert state["widen.weight"].shape == (8, 4)  # Linear (out, in)
    assert {"inner.bn.weight", "inner.bn.bias", "inner.bn.running_mean", "inner.bn.running_var"} <= set(state)
    source = conv.to_torch_source(tmp_path / "branching.py")
    assert "nn.Conv2d(3, 4, 3, padding=1)" in source and "nn.Linear(4, 8)" in source
    module = conv.to_torch()
    assert sorted(module.state_dict()) == sorted(state)
    for batch in (1, 3):
        inputs = _branching_inputs(batch)
        with torch.no_grad():
            got = module({k: torch.from_numpy(v) for k, v in inputs.items()})
        want = model(inputs, training=False)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g.numpy(), keras.ops.convert_to_numpy(w), rtol=RTOL, atol=ATOL)



def test_convert_takes_a_keras_model(tmp_path):
    """``ug.convert`` traces a Keras model as ``from_keras`` does and writes any format (here a torch file)."""
    x = keras.Input((4,), name="x")
    model = keras.Model(x, keras.layers.Dense(3, activation="tanh")(keras.layers.Dense(5)(x)))
    sample = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    conv = ug.convert(model, to="torch_source", output=tmp_path / "net.py")
    assert "class Model(nn.Module)" in (tmp_path / "net.py").read_text()
    np.testing.assert_allclose(np.asarray(conv(sample)), model(sample).numpy(), rtol=1e-4, atol=1e-5)
    with pytest.raises(TypeError, match="one input"):
        ug.convert(model, (sample, sample), to="ug", output=tmp_path / "net.ug")


def test_classes_registered_by_code_no_module_holds_are_not_sent_to_the_worker():
    """A generated Keras source run from a string or a path registers classes the worker cannot import:
    they stay out of what it is sent, and a later conversion in the process still runs."""
    from unigraph.frontends.keras import registered_objects

    namespace = {}
    exec(
        "import keras\n@keras.saving.register_keras_serializable(package='generated')\n"
        "class Exotic(keras.layers.Layer):\n    pass\n",
        namespace,
    )
    try:
        assert "generated>Exotic" in keras.saving.get_custom_objects()
        assert "generated>Exotic" not in registered_objects(keras)
        model = keras_models.tiny_classifier()
        ug.from_keras(model, example_inputs=(np.zeros((2, 8), np.float32),))
    finally:
        keras.saving.get_custom_objects().pop("generated>Exotic", None)
