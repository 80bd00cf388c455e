"""The TensorFlow side at batch 1 on one thread: torch eager against every way unigraph runs a model in TensorFlow.

Per model, in the same run and on the same machine (so the ratios are the
result): torch eager; the Keras model (``to_keras``, Keras on TensorFlow)
called in a ``tf.function``, with and without XLA (``jit_compile``), in the
source's layout and channels-last (``to_keras(channels_last=True)``, fed NHWC
images); the jax2tf SavedModel's ``serving_default``; and the ``.tflite`` file
of ``backends.tflite.save`` in LiteRT's interpreter (``ai-edge-litert``) and
in TensorFlow's older, deprecated copy (``tf.lite.Interpreter``), both with
their default XNNPACK delegate. Each is timed as its
user calls it, outputs materialized: the Keras model in a ``tf.function``
(``predict_on_batch`` adds a data-adapter's overhead per call), the
interpreter through ``set_tensor``/``invoke``/``get_tensor`` after one
``allocate_tensors`` (the signature runner resizes and reallocates per call).
torch, TensorFlow (intra- and inter-op) and the interpreter get one thread
each. Models have random weights and random batch-norm statistics.

    python bench/bench_tf_side.py                    # resnet18, mobilenet_v2, bert (tiny-ish)
    python bench/bench_tf_side.py --routes           # TFLite through each route: error, latency, size
    python bench/bench_tf_side.py --quantize         # TFLite float16 / dynamic int8 weights against float32
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

import unigraph as ug
from unigraph.backends import tflite  # loads triton, then TensorFlow

import tensorflow as tf  # noqa: E402 (after the backend: see there)

tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)
torch.set_num_threads(1)

import keras  # noqa: E402
from ai_edge_litert.interpreter import Interpreter  # noqa: E402

from unigraph import signature  # noqa: E402
from unigraph.backends.keras import to_keras  # noqa: E402
from unigraph.channels_last import to_channels_last  # noqa: E402
from unigraph.converted import host_arrays  # noqa: E402

from bench_savedmodel import _interleaved  # noqa: E402  (the same interleaved timing as the SavedModel bench)


# ---- models (random weights, no download) -------------------------------------------------------------


def _image(size: int):
    return lambda batch: ((torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(batch)),), {})


def _tokens(seq: int, vocab: int):
    def make(batch):
        generator = torch.Generator().manual_seed(batch)
        mask = torch.ones(batch, seq, dtype=torch.long)
        mask[0, -3:] = 0
        return (), {"input_ids": torch.randint(0, vocab, (batch, seq), generator=generator), "attention_mask": mask}

    return make


def _randomized(model: torch.nn.Module) -> torch.nn.Module:
    """Seeded batch-norm statistics and noise on constant-initialized parameters: outputs are not trivial."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.num_features, generator=generator) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
        for p in model.parameters():
            if p.numel() > 1 and bool((p == p.flatten()[0]).all()):
                p.add_(torch.randn(p.shape, generator=generator) * 0.1)
    return model.eval()


def _models() -> dict[str, Callable[[], tuple[torch.nn.Module, Callable]]]:
    import torchvision.models as tvm
    import transformers as hf

    def vit():
        from torchvision.models.vision_transformer import VisionTransformer

        return VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=4, hidden_dim=32, mlp_dim=64, num_classes=10), _image(32)

    def tiny_bert():
        config = hf.BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
        return hf.BertModel(config), _tokens(10, 99)

    def tiny_gpt2():
        config = hf.GPT2Config(vocab_size=99, n_embd=32, n_layer=2, n_head=4, n_positions=64, use_cache=False)
        return hf.GPT2Model(config), _tokens(10, 99)

    def cnn():
        layers = torch.nn
        features = layers.Sequential(
            layers.Conv2d(3, 16, 3, padding=1), layers.BatchNorm2d(16), layers.ReLU(), layers.MaxPool2d(2),
            layers.Conv2d(16, 32, 3, padding=1), layers.BatchNorm2d(32), layers.ReLU(),
            layers.AdaptiveAvgPool2d(1), layers.Flatten(), layers.Linear(32, 10),
        )
        return features, _image(32)

    return {
        "resnet18": lambda: (tvm.resnet18(), _image(224)),
        "mobilenet_v2": lambda: (tvm.mobilenet_v2(), _image(224)),
        "bert": lambda: (
            hf.BertModel(hf.BertConfig(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512)),
            _tokens(128, 30522),
        ),
        # the routes' comparison: small models of each family (their latencies are too small to rank runtimes)
        "cnn": cnn,
        "mobilenet_v3_small": lambda: (tvm.mobilenet_v3_small(), _image(64)),
        "vit_tiny": vit,
        "bert_tiny": tiny_bert,
        "gpt2_tiny": tiny_gpt2,
    }


def _load(name: str):
    torch.manual_seed(0)
    model, make = _models()[name]()
    model = _randomized(model)
    args, kwargs = make(1)
    return model, args, kwargs, ug.from_torch(model, args, kwargs)


# ---- timing -------------------------------------------------------------------------------------------


def _torch_outputs(model, args, kwargs) -> list[np.ndarray]:
    with torch.no_grad():
        out = model(*args, **kwargs)
    leaves = out.to_tuple() if hasattr(out, "to_tuple") else out if isinstance(out, (tuple, list)) else (out,)
    return [leaf.numpy() for leaf in leaves]


class _Lite:
    """A ``.tflite`` file ready to run on one set of inputs: allocated once, then set, invoke, get."""

    def __init__(self, path: Path, conv, args, kwargs, interpreter=Interpreter):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation
            self.interpreter = interpreter(model_path=str(path), num_threads=1)
        runner = self.interpreter.get_signature_runner()
        arrays = signature.bind(conv.graph, *host_arrays((args, kwargs)))
        inputs, outputs = runner.get_input_details(), runner.get_output_details()
        self.feeds = [(inputs[n]["index"], np.asarray(a)) for n, a in zip(signature.input_names(conv.graph), arrays)]
        self.fetches = [outputs[n]["index"] for n in signature.output_names(conv.graph)]
        del runner  # it holds the interpreter's tensors, which resizing refuses
        for index, x in self.feeds:
            self.interpreter.resize_tensor_input(index, x.shape)
        self.interpreter.allocate_tensors()

    def __call__(self) -> list[np.ndarray]:
        for index, x in self.feeds:
            self.interpreter.set_tensor(index, x)
        self.interpreter.invoke()
        return [self.interpreter.get_tensor(i) for i in self.fetches]


def _keras_function(conv, args, kwargs, *, channels_last: bool, jit: bool) -> Callable:
    """The Keras model called in a ``tf.function`` on its inputs (images NHWC with ``channels_last``)."""
    model = to_keras(conv, channels_last=channels_last)
    graph, layout = to_channels_last(conv) if channels_last else (conv, None)
    arrays = signature.bind(conv.graph, *host_arrays((args, kwargs)))
    by_name = {}
    for value, name, x in zip(graph.graph.inputs, signature.input_names(graph.graph), arrays):
        by_name[name] = tf.constant(np.transpose(x, layout.inputs[value]) if layout and value in layout.inputs else x)
    inputs = keras.tree.map_structure(lambda kt: by_name[kt.name], model.input)
    function = tf.function(lambda x: model(x, training=False), jit_compile=jit)
    return lambda: [t.numpy() for t in tf.nest.flatten(function(inputs))]


# ---- the three reports ----------------------------------------------------------------------------------


def runtimes(names: list[str], repeats: int, directory: Path) -> None:
    header = f"{'model':14} {'runtime':34} {'ms':>9} {'× eager':>8} {'max abs err':>12}"
    print(header + "\n" + "-" * len(header))
    for name in names:
        model, args, kwargs, conv = _load(name)
        want = _torch_outputs(model, args, kwargs)
        savedmodel = tf.saved_model.load(str(conv.to_savedmodel(directory / f"{name}_sm", platforms="cpu")))
        serving = savedmodel.signatures["serving_default"]
        sm_inputs = {n: tf.constant(x) for n, x in zip(signature.input_names(conv.graph), signature.bind(conv.graph, *host_arrays((args, kwargs))))}
        tflite.save(conv, directory / f"{name}.tflite", inputs=args, kwargs=kwargs)
        runs = {
            "torch eager": lambda: _torch_outputs(model, args, kwargs),
            "keras tf.function": _keras_function(conv, args, kwargs, channels_last=False, jit=False),
            "keras tf.function jit_compile": _keras_function(conv, args, kwargs, channels_last=False, jit=True),
            "keras NHWC tf.function": _keras_function(conv, args, kwargs, channels_last=True, jit=False),
            "keras NHWC tf.function jit_compile": _keras_function(conv, args, kwargs, channels_last=True, jit=True),
            "SavedModel (jax2tf) serving": lambda: [serving(**sm_inputs)[n].numpy() for n in signature.output_names(conv.graph)],
            "TFLite (LiteRT 2.3 interpreter)": _Lite(directory / f"{name}.tflite", conv, args, kwargs),
            "TFLite (tf.lite.Interpreter)": _Lite(directory / f"{name}.tflite", conv, args, kwargs, tf.lite.Interpreter),
        }
        with torch.no_grad():
            ms = _interleaved(list(runs.values()), repeats)
        for (runtime, fn), t in zip(runs.items(), ms):
            error = "" if runtime == "torch eager" else f"{_max_error(fn(), want):12.2e}"
            print(f"{name:14} {runtime:34} {t:9.2f} {t / ms[0]:8.2f} {error}", flush=True)


def routes(names: list[str], repeats: int, directory: Path) -> None:
    header = f"{'model':20} {'route':7} {'max abs err':>11} {'ms':>8} {'× eager':>8} {'MB':>7}"
    print(header + "\n" + "-" * len(header))
    for name in names:
        model, args, kwargs, conv = _load(name)
        want = _torch_outputs(model, args, kwargs)
        lites = {}
        for route in tflite.ROUTES:
            path = directory / f"{name}_{route}.tflite"
            try:
                tflite.save(conv, path, inputs=args, kwargs=kwargs, route=route)
            except ug.errors.UnigraphError as error:
                print(f"{name:20} {route:7} fails: {ug.errors.first_line(error)}")
                continue
            lites[route] = (_Lite(path, conv, args, kwargs), path.stat().st_size / 1e6)
        with torch.no_grad():
            ms = _interleaved([lambda: _torch_outputs(model, args, kwargs), *(lite for lite, _ in lites.values())], repeats)
        for (route, (lite, size)), t in zip(lites.items(), ms[1:]):
            print(f"{name:20} {route:7} {_max_error(lite(), want):11.1e} {t:8.3f} {t / ms[0]:8.2f} {size:7.2f}", flush=True)


def quantized(names: list[str], repeats: int, directory: Path) -> None:
    header = f"{'model':20} {'weights':13} {'max abs err vs float32':>22} {'rel':>8} {'ms':>8} {'MB':>7}"
    print(header + "\n" + "-" * len(header))
    for name in names:
        _, args, kwargs, conv = _load(name)
        lites = {}
        for quantize in tflite.QUANTIZE:
            path = directory / f"{name}_{quantize}.tflite"
            tflite.save(conv, path, inputs=args, kwargs=kwargs, quantize=quantize)
            lites[quantize or "float32"] = (_Lite(path, conv, args, kwargs), path.stat().st_size / 1e6)
        ms = _interleaved([lite for lite, _ in lites.values()], repeats)
        reference = lites["float32"][0]()
        scale = max(float(np.abs(r).max()) for r in reference)
        for (weights, (lite, size)), t in zip(lites.items(), ms):
            error = _max_error(lite(), reference)
            print(f"{name:20} {weights:13} {error:22.2e} {error / scale:8.1e} {t:8.3f} {size:7.2f}", flush=True)


def _max_error(got: list[np.ndarray], want: list[np.ndarray]) -> float:
    return max(float(np.max(np.abs(np.asarray(g, np.float32) - w))) for g, w in zip(got, want))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=None)
    parser.add_argument("--routes", action="store_true", help="compare the TFLite routes (small models)")
    parser.add_argument("--quantize", action="store_true", help="float16 and dynamic int8 weights against float32")
    parser.add_argument("--repeats", type=int, default=20)
    options = parser.parse_args(argv)
    small = ["cnn", "resnet18", "mobilenet_v3_small", "vit_tiny", "bert_tiny", "gpt2_tiny"]
    report, default = (routes, small) if options.routes else (quantized, small) if options.quantize else (runtimes, ["resnet18", "mobilenet_v2", "bert"])
    print(f"torch {torch.__version__}, tensorflow {tf.__version__}, batch 1, one thread, median of {options.repeats}\n")
    with tempfile.TemporaryDirectory() as directory:
        report(options.models or default, options.repeats, Path(directory))
    return 0


if __name__ == "__main__":
    sys.exit(main())
