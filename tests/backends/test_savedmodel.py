"""The TF SavedModel backend: signature, Reusable API, fine-tuning, Keras, what TensorFlow runs, writing,
platforms, size.

Most tests reload the SavedModel in this process, for speed; the claims
about production use (fine-tuning, Keras, >2 GB) reload it in a fresh process
that imports only TensorFlow (tests/backends/tf_process.py).
"""

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torch import nn
from torch.export import Dim

from tests.backends.tf_process import import_tensorflow, run_tensorflow

tf = import_tensorflow()

import unigraph as ug  # noqa: E402
from unigraph import signature, tree  # noqa: E402
from unigraph.backends import savedmodel, stablehlo_compat  # noqa: E402
from unigraph.errors import OutputExistsError  # noqa: E402
from unigraph.converted import Converted  # noqa: E402
from unigraph.errors import CheckpointError, LoweringError  # noqa: E402
from unigraph.ir import Graph, Node, TensorType, Variable  # noqa: E402
from unigraph.ops import REGISTRY  # noqa: E402
from unigraph.params import ParamMap  # noqa: E402

RTOL, ATOL = 1e-4, 1e-5


class Tiny(nn.Module):
    """Token ids and features in; a dict holding a tensor and a tuple out; batch norm statistics."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(20, 6)
        self.proj = nn.Linear(6, 8)
        self.norm = nn.BatchNorm1d(8)
        self.head = nn.Linear(8, 3)

    def forward(self, ids, features):
        h = torch.relu(self.norm(self.proj(self.embed(ids).mean(1) + features)))
        return {"logits": self.head(h), "extras": (h, h.sum(-1))}


def tiny_inputs(batch: int, seq: int):
    generator = torch.Generator().manual_seed(batch * 10 + seq)
    return torch.randint(0, 20, (batch, seq), generator=generator), torch.randn(batch, 6, generator=generator)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The Tiny model, its conversion (batch and sequence length dynamic), and its SavedModel."""
    torch.manual_seed(0)
    model = Tiny().eval()
    with torch.no_grad():
        model.norm.running_mean.uniform_(-0.5, 0.5)
        model.norm.running_var.uniform_(0.5, 1.5)
    batch, seq = Dim("batch"), Dim("seq")
    conv = ug.from_torch(
        model, tiny_inputs(2, 5), dynamic_shapes={"ids": {0: batch, 1: seq}, "features": {0: batch}}
    )
    path = conv.to_savedmodel(tmp_path_factory.mktemp("tiny") / "model")
    return model, conv, path


@pytest.fixture(scope="module")
def linear():
    torch.manual_seed(0)
    model = nn.Linear(4, 3).eval()
    return model, ug.from_torch(model, (torch.randn(2, 4),))


def torch_outputs(model, ids, features):
    with torch.no_grad():
        out = model(ids, features)
    return out["logits"].numpy(), out["extras"][0].numpy(), out["extras"][1].numpy()


# ---- the serving signature --------------------------------------------------------------------


def test_serving_signature_has_named_inputs_and_outputs_and_dynamic_dims(tiny):
    model, _, path = tiny
    serving = tf.saved_model.load(str(path)).signatures["serving_default"]
    _, inputs = serving.structured_input_signature
    assert {n: (s.shape.as_list(), s.dtype) for n, s in inputs.items()} == {
        "ids": ([None, None], tf.int64),  # batch and seq stay dynamic; int64 as torch takes it
        "features": ([None, 6], tf.float32),
    }
    assert sorted(serving.structured_outputs) == ["extras_0", "extras_1", "logits"]
    for batch, seq in [(1, 3), (4, 7)]:
        ids, features = tiny_inputs(batch, seq)
        got = serving(ids=tf.constant(ids.numpy()), features=tf.constant(features.numpy()))
        want = torch_outputs(model, ids, features)
        for name, expected in zip(["logits", "extras_0", "extras_1"], want):
            np.testing.assert_allclose(got[name].numpy(), expected, rtol=RTOL, atol=ATOL, err_msg=name)


def _graph_with_outputs(output_tree, inputs=("x",)):
    names = tree.tensor_names(output_tree)
    types = {n: TensorType(("batch", 2), "float32") for n in (*inputs, "y")}
    return Graph(
        inputs=tuple(inputs),
        outputs=("y",),
        nodes=(Node("relu", (inputs[0],), ("y",)),),
        types=types,
        output_tree=output_tree if set(names) == {"y"} else None,
    ).validate()


@pytest.mark.parametrize(
    "spec, expected",
    [
        (tree.tensor("y"), {"output_0": ()}),
        (tree.sequence("tuple", [tree.tensor("y"), tree.tensor("y")]), {"output_0": (0,), "output_1": (1,)}),
        (
            tree.sequence(
                "tuple", [tree.tensor("y"), tree.const(None), tree.sequence("list", [tree.tensor("y")])]
            ),
            {"output_0": (0,), "output_2_0": (2, 0)},
        ),
        (
            tree.mapping(["last_hidden_state", "hidden.states", "0"], [tree.tensor("y")] * 3),
            {
                "last_hidden_state": ("last_hidden_state",),
                "hidden_states": ("hidden.states",),
                "output_0": ("0",),
            },
        ),
        (tree.mapping(["a b", "a_b"], [tree.tensor("y")] * 2), {"a_b": ("a b",), "a_b_1": ("a_b",)}),
    ],
)
def test_output_names_follow_the_source_structure_and_are_valid_and_unique(spec, expected):
    assert signature.output_names(_graph_with_outputs(spec)) == expected


def test_input_names_are_the_graph_inputs_made_valid_and_unique():
    graph = _graph_with_outputs(tree.tensor("y"), inputs=("x", "args.0", "training", "1st"))
    assert signature.input_names(graph) == ["x", "args_0", "training_1", "input_1st"]


# ---- the Reusable SavedModel API -------------------------------------------------------------------


def test_reusable_savedmodel_api(tiny):
    model, conv, path = tiny
    m = tf.saved_model.load(str(path))
    ids, features = tiny_inputs(3, 4)
    logits, h, total = torch_outputs(model, ids, features)
    calls = {
        "positional": m(ids.numpy(), features.numpy()),
        "by name": m(ids=ids.numpy(), features=features.numpy()),
        "a dict (hub.KerasLayer)": m({"ids": ids.numpy(), "features": features.numpy()}),
        "training=False": m(ids.numpy(), features.numpy(), training=False),
        "training=True (no effect)": m(ids.numpy(), features.numpy(), training=True),
        "serve (TFSMLayer's endpoint)": m.serve({"ids": ids.numpy(), "features": features.numpy()}),
    }
    for how, out in calls.items():
        assert set(out) == {"logits", "extras"} and len(out["extras"]) == 2, how  # the source's structure
        for got, want in [(out["logits"], logits), (out["extras"][0], h), (out["extras"][1], total)]:
            np.testing.assert_allclose(got.numpy(), want, rtol=RTOL, atol=ATOL, err_msg=how)

    paths = {v.name.removesuffix(":0"): v for v in m.variables}
    assert set(paths) == {
        "params/embed/embedding", "params/proj/kernel", "params/proj/bias", "params/norm/scale",
        "params/norm/bias", "params/head/kernel", "params/head/bias",
        "batch_stats/norm/mean", "batch_stats/norm/var", "batch_stats/norm/num_batches_tracked",
    }
    trainable = {v.name.removesuffix(":0") for v in m.trainable_variables}
    assert trainable == {p for p in paths if p.startswith("params/")}
    assert not any(v.trainable for p, v in paths.items() if p.startswith("batch_stats/"))
    assert list(m.regularization_losses) == []
    head = conv.variables["params"]["head"]["kernel"]
    np.testing.assert_array_equal(paths["params/head/kernel"].numpy(), head)


def test_variables_can_be_replaced_after_loading(tiny):
    model, _, path = tiny
    m = tf.saved_model.load(str(path))
    paths = {v.name.removesuffix(":0"): v for v in m.variables}
    ids, features = tiny_inputs(2, 3)
    paths["params/head/kernel"].assign(tf.zeros([8, 3]))
    paths["params/head/bias"].assign([1.0, 2.0, 3.0])
    np.testing.assert_array_equal(m(ids.numpy(), features.numpy())["logits"].numpy(), [[1, 2, 3]] * 2)
    paths["batch_stats/norm/mean"].assign(tf.fill([8], 1e3))  # every unit below zero: relu gives 0
    np.testing.assert_array_equal(m(ids.numpy(), features.numpy())["extras"][1].numpy(), [0, 0])


def test_fine_tuning_in_a_fresh_tensorflow_process(tiny, tmp_path):
    """TF's gradients for the reloaded variables are JAX's, and plain SGD steps lower the loss."""
    _, conv, path = tiny
    ids, features = (t.numpy() for t in tiny_inputs(8, 5))
    target = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)

    def loss(params):
        out = conv.module.apply({**conv.variables, "params": params}, ids, features)
        return jnp.mean((out["logits"] - target) ** 2)

    grads, _ = jax.tree_util.tree_flatten_with_path(jax.grad(loss)(conv.variables["params"]))
    expected = {"params/" + "/".join(k.key for k in keys): np.asarray(g) for keys, g in grads}
    np.savez(tmp_path / "data.npz", ids=ids, features=features, target=target, **expected)

    out = run_tensorflow(
        """
        import json
        m = tf.saved_model.load(sys.argv[1])
        data = np.load(sys.argv[2])
        ids, features, target = data["ids"], data["features"], data["target"]
        frozen = [v for v in m.variables if not v.trainable]
        stats = [v.numpy() for v in frozen]
        losses = []
        for step in range(6):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean((m(ids, features)["logits"] - target) ** 2)
            grads = tape.gradient(loss, m.trainable_variables)
            if step == 0:
                for v, g in zip(m.trainable_variables, grads):
                    name = v.name.removesuffix(":0")
                    np.testing.assert_allclose(g.numpy(), data[name], rtol=1e-4, atol=1e-6, err_msg=name)
            for v, g in zip(m.trainable_variables, grads):
                v.assign_sub(0.5 * g)
            losses.append(float(loss))
        assert all(np.array_equal(a, v.numpy()) for a, v in zip(stats, frozen))  # batch_stats untouched
        print(json.dumps(losses))
        """,
        path, tmp_path / "data.npz", cwd=tmp_path,
    )
    losses = json.loads(out.strip().splitlines()[-1])
    assert all(b < a for a, b in zip(losses, losses[1:])), losses
    assert losses[-1] < 0.8 * losses[0], losses


def test_tfsmlayer_inside_a_keras_functional_model(tiny, tmp_path):
    model, _, path = tiny
    ids, features = tiny_inputs(16, 4)
    logits, _, _ = torch_outputs(model, ids, features)
    target = np.random.default_rng(1).normal(size=(16, 1)).astype(np.float32)
    np.savez(tmp_path / "data.npz", ids=ids.numpy(), features=features.numpy(), logits=logits, target=target)
    out = run_tensorflow(
        """
        import json
        import keras
        data = np.load(sys.argv[2])
        x = {"ids": data["ids"], "features": data["features"]}

        converted = keras.layers.TFSMLayer(sys.argv[1])  # the SavedModel's "serve" endpoint
        ids = keras.Input((None,), dtype="int64", name="ids")
        features = keras.Input((6,), name="features")
        score = keras.layers.Dense(1, name="score")(converted({"ids": ids, "features": features})["logits"])
        model = keras.Model({"ids": ids, "features": features}, score)

        np.testing.assert_allclose(converted(x)["logits"].numpy(), data["logits"], rtol=1e-4, atol=1e-5)
        before = [w.numpy().copy() for w in converted.trainable_weights]
        model.compile(keras.optimizers.SGD(0.05), "mse")
        losses = model.fit(x, data["target"], epochs=5, batch_size=16, verbose=0).history["loss"]
        changed = [not np.array_equal(a, w.numpy()) for a, w in zip(before, converted.trainable_weights)]
        assert all(changed), "fitting did not reach the SavedModel's variables"
        print(json.dumps(losses))
        """,
        path, tmp_path / "data.npz", cwd=tmp_path, keras_backend="tensorflow",
    )
    losses = json.loads(out.strip().splitlines()[-1])
    assert losses[-1] < losses[0], losses


# ---- what TensorFlow runs ------------------------------------------------------------------------


class TopK(nn.Module):
    """``torch.topk``: largest along a middle axis, smallest along the last."""

    def forward(self, x):
        values, indices = torch.topk(x, 3, dim=1)
        smallest, where = torch.topk(x, 2, dim=-1, largest=False)
        return values, indices, smallest, where


def test_top_k_savedmodel_runs_in_a_tensorflow_process_and_matches_torch(tmp_path):
    """jax lowers ``lax.top_k`` to a StableHLO composite that TensorFlow 2.21 cannot read as jax writes it
    (``unregistered operation 'vhlo.composite_v2'``); the backend writes it as a call of its decomposition."""
    model = TopK().eval()
    generator = torch.Generator().manual_seed(0)
    conv = ug.from_torch(model, (torch.randn(2, 7, 5, generator=generator),), dynamic_shapes=({0: Dim("batch")},))
    path = conv.to_savedmodel(tmp_path / "model")
    assert stablehlo_compat.locations(path, "stablehlo.composite") == []
    xs = {f"batch_{b}": torch.randn(b, 7, 5, generator=generator).numpy() for b in (1, 4)}
    np.savez(tmp_path / "x.npz", **xs)
    run_tensorflow(
        """
        m = tf.saved_model.load(sys.argv[1])
        xs = np.load(sys.argv[2])
        np.savez(sys.argv[3], **{f"{k}_{i}": y.numpy() for k in xs.files for i, y in enumerate(m(xs[k]))})
        """,
        path, tmp_path / "x.npz", tmp_path / "y.npz", cwd=tmp_path,
    )
    got = np.load(tmp_path / "y.npz")
    for name, x in xs.items():
        with torch.no_grad():
            want = [y.numpy() for y in model(torch.from_numpy(x))]
        for i, w in enumerate(want):
            if i % 2:  # indices: exactly torch's
                np.testing.assert_array_equal(got[f"{name}_{i}"], w, err_msg=f"{name} output {i}")
            else:
                np.testing.assert_allclose(got[f"{name}_{i}"], w, rtol=RTOL, atol=ATOL, err_msg=f"{name} output {i}")


def test_savedmodel_tensorflow_cannot_run_is_an_error_naming_the_op_and_nothing_is_written(linear, tmp_path, monkeypatch):
    """A lowering TensorFlow cannot run (jax's LAPACK eigensolver: TensorFlow's XLA has no handler for it)
    saves without complaint; the proof run before the rename catches it."""
    _, conv = linear
    opdef = REGISTRY["dense"]

    def dense_through_eigh(x, kernel, bias=None, /):
        y = opdef.jax(x, kernel, bias)
        return y + jnp.linalg.eigvalsh(y[..., :, None] * y[..., None, :]).sum(-1, keepdims=True)

    monkeypatch.setitem(REGISTRY._entries, "dense", dataclasses.replace(opdef, jax=dense_through_eigh))
    with pytest.raises(LoweringError, match=r"model: TensorFlow cannot run .*nothing was written: calling the serving "
                       r"signature failed in op 'dense' .*lapack_ssyevd_ffi"):
        conv.to_savedmodel(tmp_path / "model")
    assert os.listdir(tmp_path) == []

    monkeypatch.undo()
    conv.to_savedmodel(tmp_path / "model")
    monkeypatch.setitem(REGISTRY._entries, "dense", dataclasses.replace(opdef, jax=dense_through_eigh))
    with pytest.raises(LoweringError, match="lapack_ssyevd_ffi"):
        conv.to_savedmodel(tmp_path / "model", overwrite=True)
    assert os.listdir(tmp_path) == ["model"]  # the old SavedModel, as it was
    assert ug.check(linear[0], tmp_path / "model", (torch.randn(2, 4),)).ok


def test_stablehlo_older_than_tensorflow_can_read_is_an_error_and_nothing_is_written(linear, tmp_path, monkeypatch):
    monkeypatch.setattr(stablehlo_compat, "tensorflow_version", lambda: "0.8.0")  # older than any jax writes
    with pytest.raises(LoweringError, match=r"cannot be written at version 0\.8\.0, the one TensorFlow .* reads"):
        linear[1].to_savedmodel(tmp_path / "model")
    assert os.listdir(tmp_path) == []


# ---- writing ------------------------------------------------------------------------------------


def test_existing_output_is_kept_unless_overwrite(linear, tmp_path):
    _, conv = linear
    path = tmp_path / "model"
    path.mkdir()
    (path / "keep.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="overwrite=True"):
        conv.to_savedmodel(path)
    assert os.listdir(path) == ["keep.txt"]
    conv.to_savedmodel(path, overwrite=True)
    assert (path / "saved_model.pb").is_file() and not (path / "keep.txt").exists()
    assert os.listdir(tmp_path) == ["model"]


def test_failed_conversion_leaves_nothing_behind(linear, tmp_path, monkeypatch):
    _, conv = linear

    def fail_halfway(obj, export_dir, **kwargs):
        (open(os.path.join(export_dir, "saved_model.pb"), "wb")).write(b"half")
        raise RuntimeError("disk full")

    monkeypatch.setattr(savedmodel.tf.saved_model, "save", fail_halfway)
    with pytest.raises(RuntimeError, match="disk full"):
        conv.to_savedmodel(tmp_path / "model")
    assert os.listdir(tmp_path) == []

    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "keep.txt").write_text("mine")
    with pytest.raises(RuntimeError, match="disk full"):
        conv.to_savedmodel(tmp_path / "old", overwrite=True)
    assert os.listdir(tmp_path) == ["old"] and os.listdir(tmp_path / "old") == ["keep.txt"]


def test_convert_writes_and_refuses_an_existing_output_before_converting(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.GELU(), nn.Linear(8, 2)).eval()
    x = torch.randn(2, 4)
    conv = ug.convert(model, (x,), to="savedmodel", output=tmp_path / "model")
    assert isinstance(conv, Converted)
    assert ug.check(model, tmp_path / "model", (torch.randn(5, 4),)).ok

    class Untraceable(nn.Module):
        def forward(self, x):
            raise AssertionError("must not be traced: the output exists")

    with pytest.raises(OutputExistsError):
        ug.convert(Untraceable(), (x,), to="savedmodel", output=tmp_path / "model")
    with pytest.raises(ValueError, match="savedmodel"):
        ug.convert(model, (x,), to="onnx", output=tmp_path / "other")


def test_check_accepts_a_savedmodel_path_or_loaded_object(tiny):
    model, _, path = tiny
    args = tiny_inputs(3, 6)
    by_path = ug.check(model, path, args)
    assert by_path.ok, by_path
    assert by_path.candidate == f"SavedModel {path}"
    assert [o.path for o in by_path.outputs] == ["['logits']", "['extras'][0]", "['extras'][1]"]
    loaded = ug.check(model, tf.saved_model.load(str(path)), args)
    assert loaded.ok and loaded.candidate == "SavedModel (loaded)"
    with pytest.raises(CheckpointError, match="no saved_model.pb"):
        ug.check(model, path.parent, args)


# ---- platforms and gradients --------------------------------------------------------------------


def lowered_platforms(path) -> set[tuple[str, ...]]:
    """The ``platforms`` attribute of every XlaCallModule op in the SavedModel (forward and VJP)."""
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((path / "saved_model.pb").read_bytes())
    return {
        tuple(p.decode() for p in node.attr["platforms"].list.s)
        for function in proto.meta_graphs[0].graph_def.library.function
        for node in function.node_def
        if node.op == "XlaCallModule"
    }


@pytest.mark.parametrize(
    "platforms, lowered",
    [(None, ("CPU", "CUDA")), ("cpu", ("CPU",)), (("tpu", "cpu"), ("TPU", "CPU"))],
)
def test_platforms_option_selects_what_the_model_is_lowered_for(linear, tmp_path, platforms, lowered):
    model, conv = linear
    path = conv.to_savedmodel(tmp_path / "model", platforms=platforms)
    assert lowered_platforms(path) == {lowered}
    assert ug.check(model, path, (torch.randn(3, 4),)).ok  # runs here, on CPU


def test_savedmodel_refuses_to_run_on_a_platform_it_was_not_lowered_for(linear, tmp_path):
    path = linear[1].to_savedmodel(tmp_path / "model", platforms="tpu")
    m = tf.saved_model.load(str(path))
    with pytest.raises(tf.errors.NotFoundError, match="platform CPU is not among .*TPU"):
        m(np.ones((2, 4), np.float32))


def test_unknown_platform_is_refused(linear, tmp_path):
    with pytest.raises(ValueError, match="'gpu'.*cpu"):
        linear[1].to_savedmodel(tmp_path / "model", platforms=("cpu", "gpu"))
    assert not (tmp_path / "model").exists()


def test_model_without_a_vjp_is_saved_without_gradients_and_says_so(linear, tmp_path, monkeypatch):
    model, conv = linear

    @jax.custom_vjp
    def opaque(x):
        return x

    def no_vjp(x, cotangent):
        raise TypeError("no derivative")

    opaque.defvjp(lambda x: (x, None), no_vjp)
    plain_run = savedmodel.run_graph
    monkeypatch.setattr(savedmodel, "run_graph", lambda *a: [opaque(y) for y in plain_run(*a)])
    with pytest.warns(UserWarning, match="saved without gradients.*no derivative"):
        path = conv.to_savedmodel(tmp_path / "model")
    m = tf.saved_model.load(str(path))
    x = np.ones((2, 4), np.float32)
    np.testing.assert_allclose(m(x).numpy(), model(torch.ones(2, 4)).detach().numpy(), rtol=RTOL, atol=ATOL)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(m(x))  # runs under a tape: a frozen model still serves as a feature extractor
    assert tape.gradient(loss, m.trainable_variables) == [None, None]


# ---- size -------------------------------------------------------------------------------------


@pytest.mark.large
def test_parameters_over_2gb_save_and_load(tmp_path):
    """One dense layer with a 24000×24000 float32 kernel (2.3 GB): variables live in the checkpoint."""
    n = 24_000
    graph = Graph(
        inputs=("x",),
        outputs=("y",),
        nodes=(Node("dense", ("x", "kernel", "bias"), ("y",)),),
        types={
            "x": TensorType(("batch", n), "float32"),
            "kernel": TensorType((n, n), "float32"),
            "bias": TensorType((n,), "float32"),
            "y": TensorType(("batch", n), "float32"),
        },
        variables={
            "kernel": Variable("params", ("dense", "kernel")),
            "bias": Variable("params", ("dense", "bias")),
        },
    ).validate()
    rng = np.random.default_rng(0)
    kernel = rng.standard_normal((n, n), dtype=np.float32)
    kernel *= n**-0.5
    bias = np.linspace(-1, 1, n, dtype=np.float32)
    x = rng.standard_normal((3, n), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", x @ kernel + bias)  # NumPy's answer
    kernel = jax.device_put(kernel).block_until_ready()  # JAX's copy only: peak ~6 GB while saving
    conv = Converted(graph, {"params": {"dense": {"kernel": kernel, "bias": bias}}}, ParamMap([]))
    del kernel

    path = conv.to_savedmodel(tmp_path / "model")
    del conv
    assert (path / "saved_model.pb").stat().st_size < 1e6  # the weights are not in the graph
    assert sum(f.stat().st_size for f in (path / "variables").iterdir()) > 2**31

    run_tensorflow(
        """
        m = tf.saved_model.load(sys.argv[1])
        x, want = np.load(sys.argv[2]), np.load(sys.argv[3])
        assert [v.shape for v in m.trainable_variables] == [(24000,), (24000, 24000)]
        np.testing.assert_allclose(m(x).numpy(), want, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(m(x[:1]).numpy(), want[:1], rtol=1e-4, atol=1e-4)
        """,
        path, tmp_path / "x.npy", tmp_path / "y.npy", cwd=tmp_path,
    )
