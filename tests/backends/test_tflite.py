"""The TFLite backend: models that match torch, dynamic and fixed shapes, failures that write nothing.

``tflite.save`` checks every model against the graph's JAX run before it
writes it; these tests then read the file as a device would, with LiteRT's
interpreter (one thread), and compare with torch eager at DESIGN.md's float32
tolerances. Weights are seeded random, batch-norm statistics and
constant-initialized parameters (norm gains, a zero-initialized head)
included, so that no output is trivially zero.
"""

import os

import numpy as np
import pytest
import torch
from torch import nn
from torch.export import Dim

from tests.backends.tf_process import import_tensorflow
from tests.zoo.models import MODELS, randomize

import_tensorflow()  # TensorFlow after triton (see there); skips without TensorFlow
Interpreter = pytest.importorskip("ai_edge_litert.interpreter").Interpreter

import unigraph as ug  # noqa: E402
from unigraph import signature  # noqa: E402
from unigraph.backends import tflite  # noqa: E402
from unigraph.converted import host_arrays  # noqa: E402
from unigraph.errors import LoweringError, OutputExistsError  # noqa: E402

RTOL, ATOL = 1e-4, 1e-5


def vit():
    """A two-layer ViT on 32×32 images (torchvision's class; its head is zero-initialized)."""
    from torchvision.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    model = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=4, hidden_dim=32, mlp_dim=64, num_classes=10)
    return model.eval(), lambda batch: ((torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(batch)),), {})


def zoo(name):
    def build():
        case = MODELS[name]()
        return case.model, case.make_inputs

    return build


def tokens(batch: int, seq: int):
    generator = torch.Generator().manual_seed(batch * 100 + seq)
    mask = torch.ones(batch, seq, dtype=torch.long)
    mask[0, -2:] = 0
    return (), {
        "input_ids": torch.randint(0, 99, (batch, seq), generator=generator),
        "attention_mask": mask,
        "token_type_ids": torch.randint(0, 2, (batch, seq), generator=generator),
    }


def interpreter_outputs(path, conv, args, kwargs) -> list[np.ndarray]:
    """The model at ``path`` run by LiteRT's signature runner, outputs in the source's order."""
    runner = Interpreter(model_path=str(path), num_threads=1).get_signature_runner()
    arrays = signature.bind(conv.graph, *host_arrays((args, kwargs)))
    out = runner(**dict(zip(signature.input_names(conv.graph), arrays)))
    return [out[name] for name in signature.output_names(conv.graph)]


def torch_outputs(model, args, kwargs) -> list[np.ndarray]:
    with torch.no_grad():
        out = model(*args, **kwargs)
    leaves = out.to_tuple() if hasattr(out, "to_tuple") else out if isinstance(out, (tuple, list)) else (out,)
    return [leaf.numpy() for leaf in leaves]


def assert_matches_torch(path, conv, model, args, kwargs, where):
    got, want = interpreter_outputs(path, conv, args, kwargs), torch_outputs(model, args, kwargs)
    assert len(got) == len(want), where
    for i, (g, w) in enumerate(zip(got, want)):
        assert np.abs(w).max() > 0.1, f"{where}: output {i} is trivially small"
        np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL, err_msg=f"{where} output {i}")


# ---- models against torch ---------------------------------------------------------------------------


@pytest.mark.parametrize("build", [zoo("cnn"), zoo("resnet18"), vit], ids=["cnn", "resnet18", "vit"])
def test_image_models_match_torch_at_two_batch_sizes(build, tmp_path):
    model, make = build()
    randomize(model)
    conv = ug.from_torch(model, *make(1))
    path = tmp_path / "model.tflite"
    tflite.save(conv, path)  # checked on random inputs: batch 2, then 3
    for batch in (1, 4):
        assert_matches_torch(path, conv, model, *make(batch), f"batch {batch}")


def test_bert_keeps_batch_and_sequence_length_dynamic(tmp_path):
    import transformers as hf

    torch.manual_seed(0)
    config = hf.BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
    model = randomize(hf.BertModel(config).eval())
    batch, seq = Dim("batch"), Dim("seq", max=config.max_position_embeddings)
    conv = ug.from_torch(model, *tokens(2, 10), dynamic_shapes={k: {0: batch, 1: seq} for k in tokens(1, 1)[1]})
    path = tmp_path / "bert.tflite"
    tflite.save(conv, path, kwargs=tokens(2, 10)[1])

    interpreter = Interpreter(model_path=str(path), num_threads=1)
    details = interpreter.get_signature_runner().get_input_details()
    assert {n: list(d["shape_signature"]) for n, d in details.items()} == {
        n: [-1, -1] for n in ("input_ids", "attention_mask", "token_type_ids")
    }
    for b, s in [(1, 10), (3, 7), (2, 16)]:
        assert_matches_torch(path, conv, model, *tokens(b, s), f"batch {b}, sequence {s}")


def test_resize_tensor_input_runs_another_batch_size(tmp_path):
    """The plain interpreter API (no signature runner), as a C++ or Android caller uses it."""
    model, make = zoo("cnn")()
    randomize(model)
    conv = ug.from_torch(model, *make(1))
    path = tmp_path / "cnn.tflite"
    tflite.save(conv, path, inputs=make(1)[0])
    interpreter = Interpreter(model_path=str(path), num_threads=1)
    (x_detail,), (y_detail,) = interpreter.get_input_details(), interpreter.get_output_details()
    assert list(x_detail["shape_signature"]) == [-1, 3, 32, 32]
    x = make(5)[0][0]
    interpreter.resize_tensor_input(x_detail["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(x_detail["index"], x.numpy())
    interpreter.invoke()
    np.testing.assert_allclose(interpreter.get_tensor(y_detail["index"]), torch_outputs(model, (x,), {})[0], rtol=RTOL, atol=ATOL)

    fixed = tmp_path / "fixed.tflite"
    tflite.save(conv, fixed, inputs=make(3)[0], dynamic=False)
    (detail,) = Interpreter(model_path=str(fixed)).get_input_details()
    assert list(detail["shape_signature"]) == [3, 3, 32, 32]


# ---- fixed shapes, failures ---------------------------------------------------------------------------


def test_a_model_that_cannot_stay_dynamic_gets_the_example_shapes_and_a_warning(tmp_path):
    """TFLite sizes the LSTM's TensorFlow loop wrongly with a dynamic batch: the model converts, and the
    interpreter fails to prepare it; with the example's shapes it runs."""
    case = MODELS["lstm"]()
    args, _ = case.make_inputs(2)
    conv = ug.from_torch(case.model, args)
    path = tmp_path / "lstm.tflite"
    with pytest.warns(UserWarning, match=r"fixed shapes \{'x': \[2, 9, 12\]\}.*\['batch'\].*does not run"):
        tflite.save(conv, path, inputs=args)
    assert_matches_torch(path, conv, case.model, args, {}, "lstm at batch 2")


class Grouped3d(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(4, 8, 3, groups=2)

    def forward(self, x):
        return self.conv(x)


def test_a_failed_conversion_names_the_op_and_node_and_writes_nothing(tmp_path):
    """TFLite's builtin ops have no grouped 3-d convolution, which both routes give as ``tf.Conv3D``."""
    torch.manual_seed(0)
    conv = ug.from_torch(Grouped3d().eval(), (torch.randn(1, 4, 5, 6, 7),))
    path = tmp_path / "model.tflite"
    with pytest.raises(LoweringError) as failure:
        tflite.save(conv, path)
    message = str(failure.value)
    assert message.startswith("TFLite conversion failed, keras route: the converter rejected tf.Conv3D at node conv3d = conv(")
    assert "test_tflite.py:" in message  # the node's source line
    assert "'tf.Conv3D' op is neither a custom op nor a flex op" in message
    assert "also tried the jax2tf route: the converter rejected tf.Conv3D in the JAX lowering at" in message
    assert os.listdir(tmp_path) == []


def test_a_converted_model_that_computes_wrong_values_is_not_written(tmp_path):
    """TFLite's legalization of StableHLO's transposed convolution writes a model that runs and is wrong."""
    torch.manual_seed(0)
    conv = ug.from_torch(nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1).eval(), (torch.randn(2, 4, 9, 8),))
    path = tmp_path / "model.tflite"
    with pytest.raises(LoweringError, match=r"jax2tf route: the converted model disagrees .*output_0.*max abs error"):
        tflite.save(conv, path, route="jax2tf")
    assert os.listdir(tmp_path) == []


class ErfTopK(nn.Module):
    def forward(self, x):
        values, _ = torch.topk(torch.erf(x), 3, dim=-1)
        return values * 2


def test_the_jax2tf_route_reads_ops_jax_lowers_to_stablehlo_composites(tmp_path):
    """jax writes ``erf`` and ``top_k`` as composites newer than the converter reads: rewritten first, they convert."""
    x = torch.randn(2, 8, generator=torch.Generator().manual_seed(0))
    conv = ug.from_torch(ErfTopK(), (x,))
    path = tmp_path / "model.tflite"
    with pytest.warns(UserWarning, match="fixed shapes"):  # TFLite's gather takes no dynamic operand
        tflite.save(conv, path, route="jax2tf")
    assert_matches_torch(path, conv, ErfTopK(), (x,), {}, "erf + top_k through jax2tf")


def test_existing_output_is_refused_before_converting(tmp_path):
    path = tmp_path / "model.tflite"
    path.write_bytes(b"mine")
    conv = ug.from_torch(nn.Linear(3, 2).eval(), (torch.randn(2, 3),))
    with pytest.raises(OutputExistsError):
        tflite.save(conv, path)
    assert path.read_bytes() == b"mine"
    with pytest.raises(ValueError, match="quantize='int4'"):
        tflite.save(conv, tmp_path / "other.tflite", quantize="int4")
    assert os.listdir(tmp_path) == ["model.tflite"]


# ---- quantization -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("quantize, max_error", [("float16", 1e-2), ("dynamic_int8", 5e-2)])
def test_quantized_weights_shrink_the_file_and_stay_close(quantize, max_error, tmp_path):
    torch.manual_seed(0)
    model = randomize(nn.Sequential(nn.Linear(64, 256), nn.GELU(), nn.LayerNorm(256), nn.Linear(256, 8)).eval())
    x = torch.randn(4, 64)
    conv = ug.from_torch(model, (x,))
    tflite.save(conv, tmp_path / "float32.tflite", inputs=(x,))
    tflite.save(conv, tmp_path / "small.tflite", inputs=(x,), quantize=quantize)
    shrink = (tmp_path / "small.tflite").stat().st_size / (tmp_path / "float32.tflite").stat().st_size
    assert shrink < (0.6 if quantize == "float16" else 0.4), shrink
    (got,), (want,) = interpreter_outputs(tmp_path / "small.tflite", conv, (x,), {}), torch_outputs(model, (x,), {})
    error = np.abs(got - want).max() / np.abs(want).max()
    assert error < max_error, error
