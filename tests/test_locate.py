"""``locate``: the first node that diverges, named for every source and for written outputs.

Each test breaks one lowering for the test only (an op's JAX lowering in the
op registry, or its torch lowering) and asserts that the report names that
node: its value, its op and its source line; the nodes before it (a dense
layer whose bias add the translation absorbed, norms) must agree with the
source. Keras runs in a fresh process on its JAX backend (this process's
Keras may run TensorFlow, and then traces in a worker that keeps no jaxpr).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import unigraph as ug
from unigraph.backends.torch_ops import LOWERINGS
from unigraph.checker import locate_lowering
from unigraph.ops import REGISTRY

X = np.random.default_rng(0).normal(size=(2, 8)).astype(np.float32)
THIS = os.path.basename(__file__)


def off_by_half(monkeypatch, op: str, *, symbolic_only: bool = False) -> None:
    """Makes ``op``'s JAX lowering add 0.5 to its result (only under symbolic shapes: as jax2tf traces it)."""
    opdef = REGISTRY[op]

    def wrong(*args, **attrs):
        out = opdef.jax(*args, **attrs)
        concrete = all(isinstance(d, int) for d in out.shape)
        return out if symbolic_only and concrete else out + 0.5

    monkeypatch.setitem(REGISTRY._entries, op, dataclasses.replace(opdef, jax=wrong))


def line_of(text: str) -> str:
    """``test_locate.py:N``: the line of this file that holds ``text``."""
    with open(__file__) as f:
        (number,) = [i for i, line in enumerate(f, 1) if text in line and "line_of" not in line]
    return f"{THIS}:{number}"


class Residual(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(8, 8)
        self.head = torch.nn.Linear(8, 3)

    def forward(self, x):
        h = torch.nn.functional.gelu(self.fc(x))
        return self.head(h + x)  # the residual add


@pytest.fixture(scope="module")
def residual():
    torch.manual_seed(0)
    model = Residual().eval()
    return model, ug.from_torch(model, (torch.from_numpy(X),))


def test_a_correct_conversion_has_no_divergence(residual):
    model, conv = residual
    assert ug.check(model, conv, (torch.from_numpy(X),))
    assert locate_lowering(conv, "torch", (X,), {}) is None  # every torch lowering agrees with JAX


def test_torch_source(monkeypatch, residual):
    model, _ = residual
    off_by_half(monkeypatch, "gelu")
    conv = ug.from_torch(model, (torch.from_numpy(X),))
    found = ug.check(model, conv, (torch.from_numpy(X),)).divergence
    assert found.op == "gelu" and found.value == "gelu" and found.lowering is None, found
    assert line_of("functional.gelu(self.fc(x))") in found.source and found.max_abs == pytest.approx(0.5)


def test_jax_function(monkeypatch):
    import jax.numpy as jnp

    def fn(params, x):
        h = jnp.tanh(x @ params["w"])
        return h * 2.0 + 1.0

    params = {"w": np.random.default_rng(1).normal(size=(8, 4)).astype(np.float32)}
    off_by_half(monkeypatch, "tanh")
    conv = ug.from_jax(fn, params, X)
    report = ug.check(lambda x: fn(params, x), conv, X)
    assert not report.ok
    found = report.divergence
    assert (found.value, found.op) == ("tanh", "tanh") and line_of("jnp.tanh(x @") in found.source, found


def test_flax_module(monkeypatch):
    import flax.linen as nn
    import jax

    class Block(nn.Module):
        @nn.compact
        def __call__(self, x):
            h = nn.LayerNorm()(nn.Dense(8)(x))
            return nn.Dense(3)(nn.sigmoid(h) * x)

    module = Block()
    variables = module.init(jax.random.key(0), X)
    off_by_half(monkeypatch, "sigmoid")
    conv = ug.from_flax(module, variables, X)
    found = ug.check(lambda x: module.apply(variables, x), conv, X).divergence
    assert found.op == "sigmoid" and found.source.startswith("in Block, "), found
    assert line_of("nn.sigmoid(h) * x") in found.source and found.value in conv.graph.types


def test_torch_module_output(monkeypatch, residual):
    model, conv = residual
    monkeypatch.setitem(LOWERINGS._entries, "add", torch.sub)  # the generated module subtracts
    module = conv.to_torch()
    report = ug.check(model, module, (torch.from_numpy(X),), converted=conv)
    assert not report.ok
    found = report.divergence
    assert found.op == "add" and found.lowering == "torch" and line_of("self.head(h + x)") in found.source, found
    assert "in the torch lowering, against the graph's JAX value" in str(found)


def test_savedmodel_output(monkeypatch, residual, tmp_path):
    model, conv = residual
    off_by_half(monkeypatch, "add", symbolic_only=True)  # right when JAX runs it, wrong in the SavedModel
    assert ug.check(model, conv, (torch.from_numpy(X),))
    path = conv.to_savedmodel(tmp_path / "residual")
    report = ug.check(model, path, (torch.from_numpy(X),), converted=conv)
    assert not report.ok
    found = report.divergence
    assert found.op == "add" and found.lowering == "savedmodel" and line_of("self.head(h + x)") in found.source, found
    assert found.max_abs == pytest.approx(0.5)


def test_the_command_locates_in_a_torch_output(monkeypatch, tmp_path, capsys):
    """``unigraph check model.pt2 out.safetensors --locate``: the graph agrees, the torch lowering does not."""
    from unigraph.cli.command import main

    torch.manual_seed(0)
    pt2 = tmp_path / "residual.pt2"
    dynamic = ({0: torch.export.Dim("batch")},)
    torch.export.save(torch.export.export(Residual().eval(), (torch.from_numpy(X),), dynamic_shapes=dynamic), pt2)
    out = tmp_path / "residual.safetensors"
    assert main(["convert", str(pt2), "-o", str(out), "--to", "torch"]) == 0
    monkeypatch.setitem(LOWERINGS._entries, "add", torch.sub)
    assert main(["check", str(pt2), str(out), "--locate"]) == 1
    (line,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith("first divergence at ")]
    assert "= add(…) (" in line and "in the torch lowering, against the graph's JAX value" in line, line
    assert line_of("self.head(h + x)") in line


KERAS_SCRIPT = '''
import dataclasses, json, sys
import keras
import numpy as np
import unigraph as ug
from unigraph.cli.command import main
from unigraph.ops import REGISTRY

inputs = keras.Input((8,))
h = keras.layers.Dense(8, activation="relu", name="fc")(inputs)
h = keras.layers.LayerNormalization(name="norm")(keras.layers.Add(name="residual")([h, inputs]))
outputs = keras.layers.Dense(3, name="head")(h)
model = keras.Model(inputs, outputs)
model.save(sys.argv[1] + "/model.keras")
conv = ug.from_keras(model)
conv.save(sys.argv[1] + "/model.ug")

opdef = REGISTRY["add"]
REGISTRY._entries["add"] = dataclasses.replace(opdef, jax=lambda a, b: opdef.jax(a, b) + 0.5)
x = np.random.default_rng(0).normal(size=(2, 8)).astype(np.float32)
found = ug.check(model, conv, x).divergence  # conv runs the wrong add: it is compiled at its first call
print(json.dumps(dataclasses.asdict(found)))
sys.exit(main(["check", sys.argv[1] + "/model.keras", sys.argv[1] + "/model.ug", "--locate"]))
'''


def test_keras_source_and_the_command(tmp_path):
    """``ug.check`` on a Keras model, and ``unigraph check model.keras … --locate``, with a wrong ``add``."""
    script = tmp_path / "keras_model.py"
    script.write_text(textwrap.dedent(KERAS_SCRIPT))
    env = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 1, done.stderr[-3000:]  # the command's check failed
    first, *printed = done.stdout.splitlines()
    found = json.loads(first)
    # a Functional model's layers run inside Keras: the source is the layer's path
    assert (found["op"], found["lowering"]) == ("add", None) and found["source"].startswith("in residual, "), found

    (line,) = [line for line in printed if line.startswith("first divergence at ")]
    assert f"{found['value']} = add(…) (in residual, " in line, printed
    assert "FAIL: 0/1 outputs within tolerance" in printed
