"""The standalone Keras source file: written with its weights, it builds, loads them, matches torch, saves
as ``.keras`` (loaded back in safe mode) and trains, in a process where torch and unigraph cannot be imported.

Every model is written here, then one fresh process (Keras on TensorFlow)
checks them all and reports per model; each test reads its model's report.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import torch

import unigraph as ug
from tests.backends.test_keras import RTOL, ATOL, keras_arguments, torch_outputs
from tests.zoo.models import MODELS
from unigraph.backends import keras_codegen
from unigraph.errors import OutputExistsError

ZOO = ("cnn", "resnet18", "bert")

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
    structure = "dict" if isinstance(arguments, dict) else "list" if isinstance(arguments, list) else "tensor"
    named = arguments if structure == "dict" else dict(zip(map(str, range(len(arguments))), arguments)) if structure == "list" else {"x": arguments}
    np.savez(directory / f"{name}_inputs.npz", **named)
    np.savez(directory / f"{name}_want.npz", **torch_outputs(case, args, kwargs))
    spec = {"structure": structure, "names": list(named), "rtol": RTOL, "atol": ATOL, "epochs": 4, "batch": case.batches[-1]}
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


@pytest.mark.parametrize("name", ZOO)
def test_the_file_trains_with_fit(reports, name):
    _, found = reports
    losses = found[name].get("losses")
    assert losses and losses[-1] < losses[0], found[name]


@pytest.mark.parametrize("name", ZOO)
def test_the_file_imports_only_keras_numpy_and_math(reports, name):
    directory, _ = reports
    tree = ast.parse((directory / f"{name}.py").read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imported <= {"__future__", "keras", "numpy", "math"}, imported


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

