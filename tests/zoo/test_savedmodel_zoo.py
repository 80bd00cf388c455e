"""Every zoo model as a TF SavedModel, reloaded in a fresh TensorFlow-only process, against torch eager.

Per model: convert once (batch dynamic), write the SavedModel, record torch's
outputs at two batch sizes, then one subprocess that imports only TensorFlow
and NumPy loads it and checks, at both batch sizes, the model's call (the
source's output structure) and the serving signature (named outputs), and
that gradients reach every trainable variable.
"""

import contextlib
import inspect
import pickle

import pytest
import torch

from tests.backends.tf_process import import_tensorflow, run_tensorflow

import_tensorflow()

import unigraph as ug  # noqa: E402
from tests.zoo import models  # noqa: E402
from tests.zoo.util import ATOL, RTOL, flatten  # noqa: E402
from unigraph.signature import input_names as signature_input_names  # noqa: E402
from unigraph.signature import output_names as signature_output_names  # noqa: E402
from unigraph.frontends.torch_export import run_reference  # noqa: E402
from unigraph.signature import bind  # noqa: E402

pytestmark = pytest.mark.slow


COMPARE = inspect.getsource(flatten) + """
import pickle
with open(sys.argv[2], "rb") as f:
    data = pickle.load(f)
m = tf.saved_model.load(sys.argv[1])
serving = m.signatures["serving_default"]


def compare(where, got, want):
    got = np.asarray(got)
    assert got.dtype == want.dtype and got.shape == want.shape, (where, got.dtype, got.shape, want.dtype, want.shape)
    np.testing.assert_allclose(got, want, rtol=data["rtol"], atol=data["atol"], err_msg=where)


for case in data["batches"]:
    expected = case["expected"]
    called = flatten(m(*case["args"], **case["kwargs"]))
    assert sorted(called) == sorted(expected), (list(called), list(expected))  # TF returns dicts key-sorted
    for path, want in expected.items():
        compare(f"batch {case['batch']}, m(...){path}", called[path], want)
    served = serving(**{name: tf.constant(x) for name, x in case["signature_inputs"].items()})
    assert sorted(served) == sorted(data["signature_outputs"])
    for name, path in data["signature_outputs"].items():
        compare(f"batch {case['batch']}, serving_default[{name!r}]", served[name], expected[path])

first = data["batches"][0]
with tf.GradientTape() as tape:
    outputs = tf.nest.flatten(m(*first["args"], **first["kwargs"]))
    loss = tf.add_n([tf.reduce_sum(y) for y in outputs if y.dtype.is_floating])
grads = tape.gradient(loss, m.trainable_variables)
bad = [v.name for v, g in zip(m.trainable_variables, grads) if g is None or not np.isfinite(g.numpy()).all()]
assert not bad, f"no finite gradient for {bad}"
print("ok")
"""


#: The zoo but its larger image classifiers (ConvNeXt, EfficientNet, MobileNetV3, ViT-B/16), whose ops
#: ResNet-18 and the transformers cover here; ``bench/zoo.py`` writes and reloads every one.
REPRESENTATIVE = sorted(set(models.MODELS) - {"convnext_tiny", "efficientnet_b0", "mobilenet_v3_small", "vit_b_16"})


@pytest.mark.parametrize("name", REPRESENTATIVE)
def test_savedmodel_matches_torch_in_a_fresh_process(name, tmp_path):
    case = models.MODELS[name]()
    with torch.no_grad() if case.no_grad else contextlib.nullcontext():
        conv = ug.from_torch(case.model, *case.make_inputs(case.batches[0]))
    path = conv.to_savedmodel(tmp_path / "model")

    input_names = signature_input_names(conv.graph)
    output_paths = {
        output: "".join(f"[{key!r}]" for key in keys) or "output"
        for output, keys in signature_output_names(conv.graph).items()
    }
    batches = []
    for batch in case.batches:
        args, kwargs = case.make_inputs(batch)
        batches.append(
            {
                "batch": batch,
                "args": [a.numpy() for a in args],
                "kwargs": {k: v.numpy() for k, v in kwargs.items()},
                "signature_inputs": dict(zip(input_names, bind(conv.graph, args, kwargs))),
                "expected": flatten(run_reference(case.model, args, kwargs)),
            }
        )
    with open(tmp_path / "data.pkl", "wb") as f:
        pickle.dump({"batches": batches, "signature_outputs": output_paths, "rtol": RTOL, "atol": ATOL}, f)

    assert run_tensorflow(COMPARE, path, tmp_path / "data.pkl", cwd=tmp_path).strip().endswith("ok")
