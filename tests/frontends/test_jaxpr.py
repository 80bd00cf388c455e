"""The jaxpr frontend on whole Flax models, and its API: variables, structures, shapes, errors, reuse.

Models are checked against ``module.apply`` at two batch sizes (float32,
``rtol=1e-4, atol=1e-5``); per-primitive tables are in test_jax_primitives.py.
"""

from __future__ import annotations

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import unigraph as ug
from unigraph.frontends.jaxpr import JaxVariable, trace, translate
from unigraph.ir import Graph, Source

RTOL, ATOL = 1e-4, 1e-5


class SmallCNN(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.Conv(8, (3, 3))(x)
        x = nn.BatchNorm(use_running_average=True)(x)
        x = nn.relu(x)
        x = nn.avg_pool(x, (2, 2), (2, 2))
        x = nn.Conv(16, (3, 3), strides=(2, 2), padding="VALID")(x)
        x = nn.max_pool(nn.relu(x), (2, 2), (1, 1), padding="SAME")
        x = x.reshape(x.shape[0], -1)
        return nn.Dense(10)(x)


class TransformerBlock(nn.Module):
    heads: int = 4

    @nn.compact
    def __call__(self, x):
        h = nn.LayerNorm()(x)
        x = x + nn.MultiHeadDotProductAttention(num_heads=self.heads)(h, h)
        h = nn.LayerNorm()(x)
        h = nn.Dense(4 * x.shape[-1])(h)
        return x + nn.Dense(x.shape[-1])(nn.gelu(h))


class Recurrent(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.RNN(nn.LSTMCell(8))(x)


def _init(module, *shape, seed=0):
    """An example input and seeded random variables of the module's shapes (variances positive).

    Flax's own initializers are slow to compile on CPU and give BatchNorm
    statistics of zeros and ones, which would not show whether they are used.
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape).astype(np.float32)
    shapes = jax.eval_shape(module.init, jax.random.PRNGKey(seed), x)

    def leaf(path, spec):
        if jax.tree_util.keystr(path).endswith("['var']"):
            return rng.uniform(0.5, 1.5, spec.shape).astype(spec.dtype)
        return (0.5 * rng.normal(size=spec.shape)).astype(spec.dtype)

    return x, jax.tree_util.tree_map_with_path(leaf, shapes)


def _batch(shape, batch, seed):
    return np.random.default_rng(seed).normal(size=(batch, *shape[1:])).astype(np.float32)


def reference(module, variables):
    return jax.jit(lambda x: module.apply(variables, x))


def assert_matches(module, variables, conv, shape, batches=(1, 3)):
    for batch in batches:
        x = _batch(shape, batch, seed=batch)
        report = ug.check(reference(module, variables), conv, (x,), rtol=RTOL, atol=ATOL)
        assert report.ok, f"batch {batch}:\n{report}"


# ---- whole models ----------------------------------------------------------------------------


def test_flax_cnn_with_batch_norm():
    module = SmallCNN()
    x, variables = _init(module, 2, 16, 16, 3)
    conv = ug.from_flax(module, variables, x)
    assert conv.graph.types[conv.graph.inputs[0]].shape == ("batch", 16, 16, 3)
    ops = conv.graph.op_histogram()
    assert ops["conv"] == 2 and ops["dense"] == 1 and ops["avg_pool"] == 1 and ops["max_pool"] == 1
    assert "transpose" not in ops  # NHWC activations and HWIO kernels are used as they are
    conv_nodes = [n for n in conv.graph.nodes if n.op == "conv"]
    assert all(n.attrs["channels_last"] and len(n.inputs) == 3 for n in conv_nodes)  # bias taken in
    assert_matches(module, variables, conv, x.shape)


def test_flax_transformer_block():
    module = TransformerBlock()
    x, variables = _init(module, 2, 8, 16)
    conv = ug.from_flax(module, variables, x)
    ops = conv.graph.op_histogram()
    assert ops["dense"] == 2 and ops["softmax"] == 1
    assert_matches(module, variables, conv, x.shape)


def test_transformer_block_with_a_dynamic_sequence_length():
    module = TransformerBlock()
    x, variables = _init(module, 2, 8, 16)
    conv = ug.from_flax(module, variables, x, polymorphic_shapes=["(batch, seq, 16)"])
    assert conv.graph.types[conv.graph.inputs[0]].shape == ("batch", "seq", 16)
    for batch, seq in ((1, 3), (4, 11)):
        x = np.random.default_rng(seq).normal(size=(batch, seq, 16)).astype(np.float32)
        assert ug.check(reference(module, variables), conv, (x,), rtol=RTOL, atol=ATOL).ok


def test_flax_lstm_under_scan_is_unrolled():
    module = Recurrent()
    x, variables = _init(module, 2, 5, 3)
    conv = ug.from_flax(module, variables, x)
    assert conv.graph.types[conv.graph.outputs[0]].shape == ("batch", 5, 8)
    assert conv.graph.op_histogram()["dense"] >= 5 * 4  # four gates per step, five steps
    assert_matches(module, variables, conv, x.shape)


# ---- variables and the ParamMap ------------------------------------------------------------------


def test_variables_keep_flax_paths_collections_layouts_and_roles():
    module = SmallCNN()
    x, variables = _init(module, 2, 16, 16, 3)
    conv = ug.from_flax(module, variables, x)
    flat = {e.key: e for e in conv.param_map}
    assert set(flat) == {
        "params/Conv_0/kernel", "params/Conv_0/bias", "params/BatchNorm_0/scale", "params/BatchNorm_0/bias",
        "batch_stats/BatchNorm_0/mean", "batch_stats/BatchNorm_0/var", "params/Conv_1/kernel",
        "params/Conv_1/bias", "params/Dense_0/kernel", "params/Dense_0/bias",
    }
    kernel = flat["params/Conv_0/kernel"]
    assert (kernel.source_name, kernel.role, kernel.transform, kernel.source_shape) == (
        "Conv_0/kernel", "kernel", "identity", (3, 3, 3, 8))
    assert flat["batch_stats/BatchNorm_0/var"].role == "var"
    assert flat["params/Dense_0/kernel"].node == next(n.outputs[0] for n in conv.graph.nodes if n.op == "dense")
    # the variables are the source's, leaf for leaf, and the map gives them back by source name
    jax.tree.map(np.testing.assert_array_equal, conv.variables, jax.tree.map(np.asarray, dict(variables)))
    by_source = conv.param_map.to_source(conv.variables)
    np.testing.assert_array_equal(by_source["Dense_0/kernel"], variables["params"]["Dense_0"]["kernel"])
    assert conv.param_map.to_variables(by_source)["params"]["Conv_0"]["bias"].shape == (8,)


def test_from_jax_takes_any_parameter_pytree():
    params = {"w": np.ones((4, 3), np.float32), "layers": [{"scale": np.full((3,), 2.0, np.float32)}]}

    def fn(p, x):
        return jnp.tanh(x @ p["w"]) * p["layers"][0]["scale"]

    conv = ug.from_jax(fn, params, np.ones((2, 4), np.float32))
    assert sorted(e.key for e in conv.param_map) == ["params/layers/0/scale", "params/w"]
    assert conv.param_map.by_source("layers/0/scale").role == "scale"
    assert conv.param_map.by_source("w").role is None
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(conv(x)), np.asarray(fn(params, x)), rtol=1e-6)


class AutoEncoder(nn.Module):
    def setup(self):
        self.encoder = nn.Dense(3)
        self.decoder = nn.Dense(5)

    def encode(self, x):
        return nn.tanh(self.encoder(x))

    def __call__(self, x):
        return self.decoder(self.encode(x))


def test_a_method_converts_and_unused_variables_are_kept():
    module = AutoEncoder()
    x, variables = _init(module, 2, 5)
    conv = ug.from_flax(module, variables, x, method="encode")
    assert conv.input_names == ["x"]
    decoder = conv.param_map.by_key("params/decoder/kernel")
    assert decoder.node is None and conv.variables["params"]["decoder"]["kernel"].shape == (3, 5)
    expected = module.apply(variables, x, method="encode")
    np.testing.assert_allclose(np.asarray(conv(x)), np.asarray(expected), rtol=1e-6)


def test_computations_on_constants_are_folded_and_dead_code_dropped():
    def fn(p, x):
        unused = jnp.cos(x)  # noqa: F841 (dead: dropped before translation)
        causal = jnp.tril(jnp.ones((6, 6), jnp.float32))
        return x @ (causal / causal.sum(0))

    conv = ug.from_jax(fn, None, np.ones((2, 6), np.float32))
    assert [n.op for n in conv.graph.nodes] == ["matmul"]
    x = np.random.default_rng(0).normal(size=(3, 6)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(conv(x)), np.asarray(fn(None, x)), rtol=1e-6)


def test_graph_survives_json():
    module = TransformerBlock()
    x, variables = _init(module, 2, 8, 16)
    conv = ug.from_flax(module, variables, x)
    again = Graph.from_json(conv.graph.to_json())
    assert [n.op for n in again.nodes] == [n.op for n in conv.graph.nodes]


# ---- calls: structures, static arguments, shapes --------------------------------------------------


class Heads(nn.Module):
    @nn.compact
    def __call__(self, x, mask, *, deterministic: bool):
        h = nn.Dropout(0.5, deterministic=deterministic)(nn.Dense(4)(x["features"]))
        return {"logits": h * mask, "pair": (h.sum(-1), x["extra"] + 1)}


def test_inputs_and_outputs_keep_their_structure_and_static_flags_stay_fixed():
    module = Heads()
    args = ({"features": np.ones((2, 3), np.float32), "extra": np.zeros((2, 5), np.float32)}, np.ones((2, 4), np.float32))
    variables = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), *args, deterministic=True))
    variables = jax.tree.map(lambda s: np.full(s.shape, 0.5, s.dtype), variables)
    conv = ug.from_flax(module, variables, *args, kwargs={"deterministic": True})
    assert conv.input_names == ["x_extra", "x_features", "mask"]
    rng = np.random.default_rng(0)
    x = {"features": rng.normal(size=(3, 3)).astype(np.float32), "extra": rng.normal(size=(3, 5)).astype(np.float32)}
    mask = (rng.random((3, 4)) > 0.5).astype(np.float32)
    out = conv(x, mask, deterministic=True)
    assert list(out) == ["logits", "pair"] and isinstance(out["pair"], tuple)
    expected = module.apply(variables, x, mask, deterministic=True)
    np.testing.assert_allclose(np.asarray(out["logits"]), np.asarray(expected["logits"]), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(out["pair"][1]), np.asarray(expected["pair"][1]))
    with pytest.raises(ug.InputError, match="deterministic"):
        conv(x, mask, deterministic=False)


def test_static_shapes_reject_another_batch():
    conv = ug.from_jax(lambda p, x: x * 2, None, np.ones((2, 4), np.float32), polymorphic_shapes=None)
    assert conv.graph.types[conv.graph.inputs[0]].shape == (2, 4)
    with pytest.raises(ug.InputError, match=r"dimension 0 must be 2 \(static\)"):
        conv(np.ones((3, 4), np.float32))


def test_a_function_that_fixes_its_batch_converts_static_with_a_warning():
    with pytest.warns(UserWarning, match="batch dimension could not be symbolic"):
        conv = ug.from_jax(lambda p, x: x.reshape(2, -1) * 2, None, np.ones((2, 3), np.float32))
    assert conv.graph.types[conv.graph.inputs[0]].shape == (2, 3)


def test_inputs_of_another_leading_size_stay_static():
    conv = ug.from_jax(lambda p, x, table: x @ table, None, np.ones((2, 3), np.float32), np.ones((3, 5), np.float32))
    x, table = (conv.graph.types[n].shape for n in conv.graph.inputs)
    assert (x, table) == (("batch", 3), (3, 5))


def test_an_untraceable_function_is_an_export_error():
    def fn(p, x):
        if x.sum() > 0:  # a Python branch on a traced value
            return x
        return -x

    with pytest.raises(ug.ExportError, match="JAX could not trace fn"):
        ug.from_jax(fn, None, np.ones((2, 3), np.float32))


# ---- errors ------------------------------------------------------------------------------------


class Special(nn.Module):
    @nn.compact
    def __call__(self, x):
        y = jax.scipy.special.gammaln(nn.Dense(3, name="proj")(x))
        return jnp.linalg.cholesky(y[:, :, None] * y[:, None, :] + jnp.eye(3)) + jax.scipy.special.gammaln(x).sum()


def test_unsupported_primitives_are_listed_at_once_with_their_places():
    module = Special()
    x, variables = _init(module, 2, 3)
    with pytest.raises(ug.UnsupportedOpError) as info:
        ug.from_flax(module, variables, x)
    text = str(info.value)
    assert "lgamma (used 2×)" in text and "cholesky" in text
    assert re.search(r"test_jaxpr\.py:\d+ \(in Special/proj\)", text) is None  # the Dense itself is fine
    assert re.search(r"test_jaxpr\.py:\d+ \(in Special\)", text)
    assert {op.op for op in info.value.ops} >= {"lgamma", "cholesky"}


def test_an_unsupported_form_names_the_primitive_and_why():
    with pytest.raises(ug.UnsupportedOpError, match=r"while: while loop whose condition depends on the inputs"):
        ug.from_jax(lambda p, x, n: jax.lax.fori_loop(0, n[0], lambda i, c: c * 2, x), None,
                    np.ones((2, 3), np.float32), np.array([3], np.int32), polymorphic_shapes=["(batch, 3)", None])


def test_a_scan_over_a_dynamic_length_is_unsupported():
    def cumulative(p, xs):
        return jax.lax.scan(lambda c, x: (c + x, c), jnp.zeros(3), xs)[1]

    with pytest.raises(ug.UnsupportedOpError, match=r"scan: scan of length seq"):
        ug.from_jax(cumulative, None, np.ones((4, 3), np.float32), polymorphic_shapes=["(seq, 3)"])


# ---- the translator as the Keras frontend uses it -----------------------------------------------------


def test_translate_takes_a_jaxpr_its_variables_and_a_source_hook():
    kernel = np.random.default_rng(0).normal(size=(3, 2)).astype(np.float32)

    def fn(variables, x):
        (kernel,) = variables
        with jax.named_scope("dense_1"):
            return jax.nn.relu(x @ kernel)

    traced = trace(fn, [kernel], (np.ones((4, 3), np.float32),), {}, positional_names=["inputs"])
    seen = []

    def source_of(eqn, source: Source) -> Source:
        seen.append(eqn.primitive.name)
        return Source(module="model/" + source.module, location=source.location, origin=source.origin)

    conv = translate(
        traced.jaxpr,
        variables=[JaxVariable(("dense_1", "kernel"), "params", "kernel", kernel)],
        input_names=traced.input_names,
        in_tree=traced.in_tree,
        static_inputs=traced.static,
        out_tree=traced.out_tree,
        source_of=source_of,
        metadata={"source_framework": "keras"},
    )
    assert conv.input_names == ["inputs"] and "dot_general" in seen
    dense = next(n for n in conv.graph.nodes if n.op == "dense")
    assert dense.source.module == "model/dense_1" and dense.source.location.startswith("tests/frontends/test_jaxpr.py:")
    assert conv.param_map.by_source("dense_1/kernel").key == "params/dense_1/kernel"
    x = np.random.default_rng(1).normal(size=(6, 3)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(conv(x)), np.maximum(x @ kernel, 0), rtol=1e-6)


# ---- the torch backend -------------------------------------------------------------------------


TORCH_MODELS = {
    "cnn": lambda: (SmallCNN(), (2, 16, 16, 3)),
    "transformer": lambda: (TransformerBlock(), (2, 8, 16)),
    "lstm": lambda: (Recurrent(), (2, 5, 3)),
}


@pytest.mark.parametrize("name", list(TORCH_MODELS))
def test_round_trip_through_the_torch_backend(name):
    torch = pytest.importorskip("torch")
    from unigraph.backends.torch import to_module, to_state_dict

    module, shape = TORCH_MODELS[name]()
    x, variables = _init(module, *shape)
    conv = ug.from_flax(module, variables, x)
    state = to_state_dict(conv)
    kernel = conv.param_map.by_key(next(n for n in conv.graph.nodes if n.op == "dense").inputs[1])
    weight = state[".".join(kernel.path[:-1]) + ".weight"]  # torch's name and (out, in) layout
    np.testing.assert_array_equal(weight.numpy(), conv.param_map.to_source(conv.variables)[kernel.source_name].T)
    runtime = to_module(conv)
    with torch.no_grad():
        for batch in (1, 3):
            xb = _batch(x.shape, batch, seed=batch)
            got = runtime(torch.from_numpy(xb)).numpy()
            np.testing.assert_allclose(got, np.asarray(reference(module, variables)(xb)), rtol=RTOL, atol=ATOL)
