"""The standalone Keras source file: written with its weights, it builds, loads them, matches torch, saves
as ``.keras`` (loaded back in safe mode) and trains, in a process where torch and unigraph cannot be imported.

The zoo models are written here, then one fresh process (Keras on
TensorFlow) checks them all and reports per model; each test reads its
model's report. The generator's other guarantees (every op has a layer class,
dimension expressions, channels-last images, ``to_keras``'s layers) are
checked in this process.
"""

from __future__ import annotations

import ast
import builtins
import importlib.util
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import torch
from torch import nn

import unigraph as ug
from tests.backends.test_keras import ATOL, RTOL, keras_arguments, keras_outputs, torch_outputs
from tests.zoo.models import MODELS
from tests.zoo.util import flatten
from unigraph.backends import keras_codegen
from unigraph.backends.keras import to_keras
from unigraph.backends.keras_ops import LOWERINGS
from unigraph.backends.keras_plan import Plan
from unigraph.backends.source_copy import bound_names
from unigraph.errors import OutputExistsError
from unigraph.ops import REGISTRY

ZOO = ("cnn", "resnet18", "bert")
#: Those trained in the fresh process (ResNet-18's train step compiles for half a minute; cnn has its layers).
TRAINED = ("cnn", "bert")

#: One worker runs the module, so the zoo models are written and checked once (``--dist loadgroup``).
pytestmark = pytest.mark.xdist_group("keras_source")

#: What the fresh process runs first: torch and unigraph are not there, as if not installed.
BLOCKER = """
import importlib.abc, sys

class _NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("torch", "unigraph"):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
        return None

sys.meta_path.insert(0, _NotInstalled())
"""

#: Per model (argv: the directory, then the model names): outputs against torch's, the model saved and
#: loaded back in safe mode, then a few steps of fit; a JSON report per model on the last line.
CHECK = BLOCKER + """
import importlib, json, traceback
import numpy as np
import keras

directory, names = sys.argv[1], sys.argv[2:]
sys.path.insert(0, directory)


def flatten(outputs, path=""):
    if isinstance(outputs, dict):
        items = [(f"{path}[{k!r}]", v) for k, v in outputs.items()]
    elif isinstance(outputs, (tuple, list)):
        items = [(f"{path}[{i}]", v) for i, v in enumerate(outputs)]
    else:
        return {path or "output": keras.ops.convert_to_numpy(outputs)}
    return {p: leaf for k, v in items for p, leaf in flatten(v, k).items()}


def largest_errors(got, want):
    return {p: float(np.max(np.abs(got[p].astype(np.float64) - want[p])) if want[p].size else 0.0) for p in want}


def check(name):
    spec = json.load(open(f"{directory}/{name}.json"))
    arrays = np.load(f"{directory}/{name}_inputs.npz")
    inputs = {n: arrays[n] for n in spec["names"]}
    inputs = inputs if spec["structure"] == "dict" else list(inputs.values())
    inputs = inputs[0] if spec["structure"] == "tensor" else inputs
    want = dict(np.load(f"{directory}/{name}_want.npz"))
    report = {}
    model = importlib.import_module(name).build_model()
    model.load_weights(f"{directory}/{name}.weights.h5")
    got = flatten(model(inputs))
    report["paths"] = sorted(got)
    report["errors"] = largest_errors(got, want)
    report["mismatched"] = [
        p for p in want if not np.allclose(got[p], want[p], rtol=spec["rtol"], atol=spec["atol"])
    ]
    model.save(f"{directory}/{name}.keras")
    loaded = keras.saving.load_model(f"{directory}/{name}.keras", safe_mode=True)
    report["reloaded_errors"] = largest_errors(flatten(loaded(inputs)), got)
    if not spec["epochs"]:
        return report
    outputs = model(inputs)
    rng = np.random.default_rng(0)
    targets = keras.tree.map_structure(lambda t: rng.standard_normal(t.shape).astype("float32"), outputs)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    history = model.fit(inputs, targets, epochs=spec["epochs"], batch_size=spec["batch"], verbose=0, shuffle=False)
    report["losses"] = [float(v) for v in history.history["loss"]]
    return report


reports = {}
for name in names:
    try:
        reports[name] = check(name)
    except Exception:
        reports[name] = {"error": traceback.format_exc()[-4000:]}
reports["imported"] = sorted(m for m in ("torch", "unigraph") if m in sys.modules)
print(json.dumps(reports))
"""


def randomize(model: torch.nn.Module) -> torch.nn.Module:
    """Seeded noise on every float parameter and buffer that holds one value (zero biases, unit norm scales,
    fresh batch statistics), so that loading a weight into the wrong place shows."""
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            if tensor.is_floating_point() and tensor.numel() and bool((tensor == tensor.flatten()[0]).all()):
                tensor.add_(0.1 * torch.randn(tensor.shape, generator=generator))
    return model


def write_zoo_model(name: str, directory) -> None:
    """The model's file and weights, its inputs at its second batch size and torch's outputs for them."""
    case = MODELS[name]()
    randomize(case.model)
    args, kwargs = case.make_inputs(case.batches[0])
    conv = ug.from_torch(case.model, args, kwargs)
    keras_codegen.save(conv, directory / f"{name}.py")
    args, kwargs = case.make_inputs(case.batches[-1])
    arguments = keras_arguments(conv, args, kwargs)
    if isinstance(arguments, dict):
        structure, named = "dict", arguments
    elif isinstance(arguments, list):
        structure, named = "list", {f"x{i}": a for i, a in enumerate(arguments)}
    else:
        structure, named = "tensor", {"x": arguments}
    np.savez(directory / f"{name}_inputs.npz", **named)
    np.savez(directory / f"{name}_want.npz", **torch_outputs(case, args, kwargs))
    epochs = 4 if name in TRAINED else 0
    spec = {"structure": structure, "names": list(named), "rtol": RTOL, "atol": ATOL, "epochs": epochs, "batch": case.batches[-1]}
    (directory / f"{name}.json").write_text(json.dumps(spec))


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    directory = tmp_path_factory.mktemp("keras_source")
    for name in ZOO:
        write_zoo_model(name, directory)
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-c", CHECK, str(directory), *ZOO],
        capture_output=True, text=True, cwd=directory, env=env, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-6000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found.pop("imported") == [], "the Keras process imported torch or unigraph"
    return directory, found


@pytest.mark.parametrize("name", ZOO)
def test_the_file_matches_torch_and_reloads_from_a_keras_file_without_torch_or_unigraph(reports, name):
    directory, found = reports
    report = found[name]
    assert "error" not in report, report.get("error")
    want = np.load(directory / f"{name}_want.npz")
    assert report["paths"] == sorted(want.files)
    assert report["mismatched"] == [], f"{name}: largest errors {report['errors']}"
    assert max(report["reloaded_errors"].values()) == 0.0, report["reloaded_errors"]


@pytest.mark.parametrize("name", TRAINED)
def test_the_file_trains_with_fit(reports, name):
    _, found = reports
    losses = found[name].get("losses")
    assert losses and losses[-1] < losses[0], found[name]


@pytest.mark.parametrize("name", ZOO)
def test_the_file_imports_only_keras_numpy_and_math_and_defines_every_name_it_uses(reports, name):
    directory, _ = reports
    source = (directory / f"{name}.py").read_text()
    tree = ast.parse(source)
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imported <= {"__future__", "keras", "numpy", "math"}, imported
    assert undefined_names(source) == set()


def undefined_names(source: str) -> set[str]:
    """Names the module's code reads that nothing defines: neither the module, nor builtins, nor the
    function (or class) that reads them."""
    tree = ast.parse(source)
    module = set(dir(builtins))
    for statement in tree.body:
        if isinstance(statement, (ast.Import, ast.ImportFrom)):
            module |= {(a.asname or a.name).partition(".")[0] for a in statement.names}
        elif isinstance(statement, (ast.FunctionDef, ast.ClassDef)):
            module.add(statement.name)
        elif isinstance(statement, ast.Assign):
            module |= {t.id for t in statement.targets if isinstance(t, ast.Name)}
    return {
        n.id
        for statement in tree.body
        for n in ast.walk(statement)
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load) and n.id not in module | bound_names(statement)
    }


def test_every_op_has_a_layer_class_whose_code_resolves():
    """Each op's Keras lowering copies into a layer class with the helpers it calls, whatever the model."""
    generator = keras_codegen._Generator(Plan("Everything", (), "tensor", (), []), "everything", "every op")
    classes = {op: generator._op_class(op) for op in REGISTRY.names() if op in LOWERINGS}
    assert len(classes) == len(REGISTRY.names())
    layer_names = set(dir(keras.layers.Layer())) | {"symbols"}
    clashes = {(op, a) for op in classes for a in REGISTRY[op].attrs if keras_codegen._field(a) in layer_names}
    assert not clashes, "attributes a layer of the file would store over Keras's own (add them to _RENAMED)"
    source = "\n\n".join(
        [generator._header(), *generator.copier.sources(), keras_codegen._FROZEN, keras_codegen._SYMBOLS, *generator.class_sources]
    )
    assert undefined_names(source) == set()
    namespace = {}
    exec(compile(source, "everything.py", "exec"), namespace)
    assert all(issubclass(namespace[name], keras.layers.Layer) for name in classes.values())


class Features(nn.Module):
    """Dimension expressions (``2*batch``, ``3*batch + 1``), an op with two outputs, scalar constants, a loose
    variable (a ``Weights`` layer)."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.randn(4))

    def forward(self, x):
        batch = x.shape[0]
        top, where = torch.topk(x.reshape(batch * 2, 3, 4), 2, dim=-1)
        pooled = (top.sum(-1) * 0.5 + 1.5).reshape(batch, -1)
        return pooled, where.float(), torch.arange(batch * 3 + 1).float(), x * self.scale


def built(path) -> keras.Model:
    """The model of the generated file ``path``, imported in this process, its weights loaded."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.build_model()
    model.load_weights(keras_codegen.weights_path(path))
    return model


def assert_same_layers(model: keras.Model, reference: keras.Model) -> None:
    """The layers ``to_keras`` builds, by name and in order; those with weights of the same classes and shapes."""
    assert [layer.name for layer in model.layers] == [layer.name for layer in reference.layers]
    for layer, same in zip(model.layers, reference.layers):
        if same.weights:
            assert type(layer).__name__ == type(same).__name__, layer.name
            assert [w.shape for w in layer.weights] == [w.shape for w in same.weights], layer.name


def test_dimension_expressions_several_outputs_and_scalars(tmp_path):
    torch.manual_seed(0)
    model = Features().eval()
    conv = ug.from_torch(model, (torch.randn(2, 6, 4),))
    source = keras_codegen.save(conv, tmp_path / "features.py")
    assert 'shape=(["mul", 2, "batch"], 3, 4)' in source and 'end=["add", ["mul", 3, "batch"], 1]' in source
    built_model = built(tmp_path / "features.py")
    assert_same_layers(built_model, to_keras(conv))
    x = torch.randn(5, 6, 4)
    with torch.no_grad():
        want = flatten(model(x))
    got = keras_outputs(built_model, x.numpy())
    assert sorted(got) == sorted(want)
    for path, value in want.items():
        np.testing.assert_allclose(got[path], value, rtol=RTOL, atol=ATOL, err_msg=path)
    built_model.save(tmp_path / "features.keras")
    reloaded = keras.saving.load_model(tmp_path / "features.keras", safe_mode=True)
    for path, value in keras_outputs(reloaded, x.numpy()).items():
        np.testing.assert_array_equal(value, got[path])


def test_existing_outputs_are_kept_unless_overwritten(tmp_path):
    case = MODELS["mlp"]()
    args, _ = case.make_inputs(1)
    conv = ug.from_torch(case.model, args)
    path = tmp_path / "mlp.py"
    keras_codegen.save(conv, path)
    weights = keras_codegen.weights_path(path)
    assert weights.name == "mlp.weights.h5" and weights.exists()
    weights.write_bytes(b"mine")
    path.unlink()
    with pytest.raises(OutputExistsError):
        keras_codegen.save(conv, path)
    assert not path.exists() and weights.read_bytes() == b"mine"
    keras_codegen.save(conv, path, overwrite=True)
    assert weights.read_bytes()[:8] == b"\x89HDF\r\n\x1a\n"  # Keras's HDF5 again
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlp.py", "mlp.weights.h5"]



def test_channels_last_images(tmp_path):
    case = MODELS["cnn"]()
    args, _ = case.make_inputs(1)
    conv = ug.from_torch(case.model, args)
    source = keras_codegen.save(conv, tmp_path / "cnn_nhwc.py", channels_last=True)
    assert "batch_shape=(None, 32, 32, 3)" in source and "Permute" not in source
    model, reference = built(tmp_path / "cnn_nhwc.py"), to_keras(conv, channels_last=True)
    assert_same_layers(model, reference)
    (images,), _ = case.make_inputs(7)
    nhwc = images.permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(keras_outputs(model, nhwc)["output"], torch_outputs(case, (images,), {})["output"], rtol=RTOL, atol=ATOL)
