"""Every import order of torch, tensorflow, keras, transformers and unigraph converts, in fresh processes.

triton crashes the process (SIGSEGV) when it is imported after TensorFlow's
libraries are loaded, and torch imports it with ``torch._dynamo`` (see
``unigraph/native_order.py``). The import order is the user's, so each case
runs in a fresh Python process that imports the modules in its order, then
converts Keras → torch (``from_keras(...).to_torch()``, a Conv1D, an LSTM and
a Dense layer, compared with Keras) and torch → SavedModel
(``from_torch(...).to_savedmodel()``, a Conv1d, an LSTM and a Linear layer,
reloaded with ``tf.saved_model.load`` and compared with torch). A crash shows
as exit status -11.

Which orders work without unigraph. For all 24 orders of torch, tensorflow,
keras and transformers (measured with torch 2.14.1, tensorflow-cpu 2.21,
keras 3.15, transformers 5.24): the imports, Keras inference, torch inference
and saving and loading a SavedModel work; ``torch.export.export`` segfaults
in every one of them, and so does a ``torch.optim`` optimizer, since both
import ``torch._dynamo`` and with it triton, after TensorFlow. So every order
"works" without unigraph, and unigraph has to convert in every one; the
torch → SavedModel path needs ``torch.export``, which unigraph runs with
triton withheld (``native_order.triton_blocked``).

Which orders are equivalent. What an import loads, checked in every process
of this module (``_check_premises``), is:

- ``import tensorflow`` and ``import keras`` (on its default backend) both
  load TensorFlow, Keras and JAX: whichever comes first loads all three, and
  the other then finds them loaded;
- ``import torch`` loads torch only (not triton, not ``torch._dynamo``);
- ``import transformers`` loads none of torch, TensorFlow, Keras, JAX or
  triton (its modules load lazily), and neither does ``import unigraph``
  (its frontends and backends load when called).

So after the five imports every order leaves the same libraries loaded,
TensorFlow without triton, and orders differ only in whether torch's
libraries were loaded before TensorFlow's or after: two classes of 60
orders each. What unigraph does in a call depends on what is loaded (it reads
``sys.modules``), not on the order in which transformers and unigraph were
imported. One representative per class runs, chosen so that between them
unigraph comes first and last, transformers before and after torch, and
keras before and after tensorflow, plus the issue's order
(``import torch, keras, unigraph``) as its reporter wrote it.

Two more processes cover the holes this found: ``from_keras`` on a file
imported Keras (so TensorFlow) without loading triton first, after which
training the converted module with ``torch.optim`` crashed a process that
had only imported torch and unigraph; and the command line's ``main()``,
called from Python after the caller imported TensorFlow, crashed opening a
``.pt2`` file (``torch.export.load``) or a Hugging Face folder (transformers'
model classes import ``torch._dynamo``).

The processes run two at a time (``xdist_group`` keeps them on one pytest
worker); each test waits for its own.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.xdist_group("import_order")

#: One order per class (see the module docstring), and the issue's.
ORDERS = {
    "torch before TensorFlow": ("unigraph", "transformers", "torch", "tensorflow", "keras"),
    "TensorFlow before torch": ("keras", "tensorflow", "torch", "transformers", "unigraph"),
    "the issue's order": ("torch", "keras", "unigraph"),
}

#: Modules whose loading the premises are about.
WATCHED = ("torch", "tensorflow", "keras", "jax", "transformers", "triton", "torch._dynamo")

RTOL, ATOL = 1e-4, 1e-5

# Each script prints what it did, one "STEP" line per stage, so a crash names the stage it happened in.
_IMPORTS = """
import importlib, json, sys

WATCHED = {watched!r}
loads = []
for name in sys.argv[2:]:
    before = {{m for m in WATCHED if m in sys.modules}}
    importlib.import_module(name)
    loads.append([name, sorted(m for m in WATCHED if m in sys.modules and m not in before)])
print("LOADS " + json.dumps(loads), flush=True)
"""

ORDER_SCRIPT = _IMPORTS.format(watched=WATCHED) + f"""
import os
import numpy as np
import keras
import tensorflow as tf
import torch
import unigraph as ug

RTOL, ATOL = {RTOL!r}, {ATOL!r}
work = sys.argv[1]
x = np.random.default_rng(0).normal(size=(2, 6, 4)).astype(np.float32)

keras.utils.set_random_seed(0)
inputs = keras.Input((6, 4))
h = keras.layers.Conv1D(8, 3, padding="same", activation="relu")(inputs)
h = keras.layers.LSTM(8, return_sequences=True)(h)
model = keras.Model(inputs, keras.layers.Dense(3)(h))
module = ug.from_keras(model).to_torch()
with torch.no_grad():
    got = module(torch.from_numpy(x)).numpy()
np.testing.assert_allclose(got, keras.ops.convert_to_numpy(model(x)), rtol=RTOL, atol=ATOL)
print("STEP keras->torch ok", flush=True)

class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv1d(4, 8, 3, padding=1)
        self.lstm = torch.nn.LSTM(8, 8, batch_first=True)
        self.head = torch.nn.Linear(8, 3)

    def forward(self, x):  # (batch, time, features), as the Keras model takes it
        h = torch.relu(self.conv(x.transpose(1, 2))).transpose(1, 2)
        return self.head(self.lstm(h)[0])

torch.manual_seed(0)
net = Net().eval()
path = os.path.join(work, "savedmodel")
ug.from_torch(net, (torch.from_numpy(x),)).to_savedmodel(path)
saved = tf.saved_model.load(path)
for batch in (2, 3):  # the traced batch size and another (dimension 0 is dynamic)
    xb = np.resize(x, (batch, 6, 4))
    with torch.no_grad():
        want = net(torch.from_numpy(xb)).numpy()
    np.testing.assert_allclose(np.asarray(saved(xb)), want, rtol=RTOL, atol=ATOL)
print("STEP torch->savedmodel ok", flush=True)

assert "triton" not in sys.modules or sys.modules["triton"] is not None, "triton left blocked after unigraph returned"
print("DONE", flush=True)
"""

KERAS_FILE_SCRIPT = """
import sys
import torch
import unigraph as ug

conv = ug.from_keras(sys.argv[1])  # unigraph imports Keras, so TensorFlow: triton must come first
assert "tensorflow" in sys.modules, "this test expects Keras on TensorFlow here"
print("STEP from_keras ok", flush=True)
module = conv.to_torch().train()
optimizer = torch.optim.Adam(module.parameters(), lr=1e-3)  # imports torch._dynamo, so triton
module(torch.randn(2, 8)).square().mean().backward()
optimizer.step()
print("STEP trained ok", flush=True)
assert sys.modules.get("triton") is not None, "unigraph loaded TensorFlow without loading triton first"
print("DONE", flush=True)
"""

CLI_SCRIPT = """
import sys
import tensorflow  # the caller's, before unigraph's command runs
from unigraph.cli import main

pt2, hf, out = sys.argv[1:4]
for source, target in ((pt2, "from_pt2.py"), (hf, "from_hf.py")):
    status = main(["convert", source, "-o", f"{out}/{target}", "--check"])
    assert status == 0, f"unigraph convert {source}: exit status {status}"
    print(f"STEP convert {source} ok", flush=True)
assert "triton" not in sys.modules, "triton left blocked after main() returned"
print("DONE", flush=True)
"""


def _run(script: str, *args, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("KERAS_BACKEND", None)  # Keras on its default backend, TensorFlow
    return subprocess.run(
        [sys.executable, "-X", "faulthandler", "-c", textwrap.dedent(script), *map(str, args)],
        capture_output=True, text=True, cwd=cwd, env=env, timeout=600,
    )


def _write_sources(root: Path) -> dict[str, Path]:
    """A .keras file, a .pt2 file and a Hugging Face folder, written in this process (triton loaded
    first by tests/conftest.py, so torch.export and transformers run safely here)."""
    import keras
    import torch
    import transformers

    keras.utils.set_random_seed(0)
    keras_file = root / "dense.keras"
    keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, activation="relu"), keras.layers.Dense(2)]).save(keras_file)

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3)).eval()
    batch = torch.export.Dim("batch")
    pt2 = root / "mlp.pt2"
    torch.export.save(torch.export.export(net, (torch.randn(2, 8),), dynamic_shapes=({0: batch},)), pt2)

    config = transformers.BertConfig(
        vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=32,
    )
    hf = root / "bert"
    transformers.BertModel(config).eval().save_pretrained(hf)
    return {"keras": keras_file, "pt2": pt2, "hf": hf}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Starts every process of this module, two at a time; maps a name to its future ``CompletedProcess``."""
    root = tmp_path_factory.mktemp("import_order")
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=2)
    futures = {}
    for i, (name, order) in enumerate(ORDERS.items()):
        work = root / f"order{i}"
        work.mkdir()
        futures[name] = pool.submit(_run, ORDER_SCRIPT, work, *order, cwd=work)
    try:
        files = _write_sources(root)  # meanwhile
        out = root / "cli"
        out.mkdir()
        futures["from_keras(file)"] = pool.submit(_run, KERAS_FILE_SCRIPT, files["keras"], cwd=root)
        futures["cli main()"] = pool.submit(_run, CLI_SCRIPT, files["pt2"], files["hf"], out, cwd=root)
        yield futures
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _finished(runs, name: str) -> subprocess.CompletedProcess:
    result = runs[name].result()
    steps = "\n".join(line for line in result.stdout.splitlines() if line.startswith(("STEP", "LOADS")))
    assert result.returncode == 0 and result.stdout.rstrip().endswith("DONE"), (
        f"{name}: exit status {result.returncode} (-11 is a segmentation fault)\n"
        f"stdout:\n{steps}\nstderr:\n{result.stderr[-6000:]}"
    )
    return result


def _check_premises(order: tuple[str, ...], loads: list) -> None:
    """What each import loaded besides the module itself, against the premises the classes rest on:
    the first of tensorflow and keras loads TensorFlow, Keras and JAX; every other import loads
    none of the watched modules (torch not triton nor ``torch._dynamo``; the second of tensorflow
    and keras nothing new; transformers and unigraph nothing)."""
    first = next(name for name in order if name in ("tensorflow", "keras"))
    for name, loaded in loads:
        want = {"tensorflow", "keras", "jax"} - {name} if name == first else set()
        assert set(loaded) - {name} == want, f"import {name} loaded {sorted(loaded)}"


@pytest.mark.parametrize("name", sorted(ORDERS))
def test_keras_to_torch_and_torch_to_savedmodel_in_import_order(runs, name):
    result = _finished(runs, name)
    loads = json.loads(next(line for line in result.stdout.splitlines() if line.startswith("LOADS "))[6:])
    assert [n for n, _ in loads] == list(ORDERS[name])
    _check_premises(ORDERS[name], loads)
    assert "STEP keras->torch ok" in result.stdout and "STEP torch->savedmodel ok" in result.stdout


def test_from_keras_on_a_file_loads_triton_before_tensorflow(runs):
    """``import torch, unigraph``; ``from_keras(path).to_torch()`` trained with Adam (it crashed)."""
    result = _finished(runs, "from_keras(file)")
    assert "STEP trained ok" in result.stdout


def test_cli_main_after_tensorflow(runs):
    """``main(["convert", ...])`` from Python after ``import tensorflow``: .pt2 and Hugging Face (they crashed)."""
    result = _finished(runs, "cli main()")
    assert result.stdout.count("STEP convert") == 2


# ---- the guard itself, in this process (nothing is imported) ----------------------------------------


@pytest.fixture
def tensorflow_without_triton(monkeypatch):
    """This process as if TensorFlow were loaded and triton not (both entries put back afterwards)."""
    monkeypatch.setitem(sys.modules, "tensorflow", sys.modules.get("tensorflow") or object())
    if "triton" in sys.modules:
        monkeypatch.delitem(sys.modules, "triton")


def test_triton_blocked_withholds_triton_and_puts_it_back(tensorflow_without_triton):
    import importlib.util

    from unigraph.native_order import triton_blocked

    with triton_blocked():
        assert importlib.util.find_spec("triton") is None  # what torch reads as "not installed"
        with pytest.raises(ImportError):
            import triton  # noqa: F401
        with triton_blocked():  # nested: the outer block's entry stays
            assert sys.modules["triton"] is None
        assert sys.modules["triton"] is None
    assert "triton" not in sys.modules

    with pytest.raises(RuntimeError), triton_blocked():
        raise RuntimeError("raised inside")
    assert "triton" not in sys.modules

    @triton_blocked()
    def traced():
        return sys.modules["triton"]

    assert traced() is None and "triton" not in sys.modules


def test_triton_blocked_does_nothing_without_tensorflow(monkeypatch):
    from unigraph.native_order import triton_blocked

    monkeypatch.delitem(sys.modules, "tensorflow", raising=False)
    monkeypatch.delitem(sys.modules, "triton", raising=False)
    with triton_blocked():
        assert "triton" not in sys.modules  # triton may load: TensorFlow is not there to crash it
    assert "triton" not in sys.modules
