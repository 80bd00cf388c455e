"""A slice of bench/zoo.py: its worker on three small models of different families, one path each.

The worker runs here, in the test process (the zoo runs it in a process of
its own per model), on what the zoo builds: a hand-written CNN to Flax, a
tiny BERT through the state-dict round trip, a subclassed Keras model to
torch; and a model torch.export cannot trace is recorded apart with the
reason. The results go through the zoo's coverage and markdown.
"""

from __future__ import annotations

import json

import pytest

from bench import zoo

pytestmark = pytest.mark.slow


def _run(model_id: str, path: str, tmp_path) -> dict:
    out = tmp_path / f"{model_id.replace('/', '_')}.json"
    zoo.worker(model_id, [path], out, timeout=120)
    return json.loads(out.read_text())


@pytest.mark.parametrize(
    "model_id, path, bound",
    [("handwritten/cnn", "flax", 1e-5), ("transformers/bert", "roundtrip", 1e-5), ("keras/subclassed", "torch", 1e-5)],
)
def test_zoo_worker_passes_and_bounds_the_error(model_id, path, bound, tmp_path):
    result = _run(model_id, path, tmp_path)
    assert result["export_error"] is None
    assert list(result["paths"]) == [path]
    outcome = result["paths"][path]
    assert outcome["ok"], outcome["reason"]
    assert 0.0 <= outcome["error"] <= bound
    assert outcome["seconds"] > 0


def test_an_untraceable_model_is_listed_apart(tmp_path):
    result = _run("handwritten/python_branch", "flax", tmp_path)
    assert "GuardOnDataDependentSymNode" in result["export_error"]
    assert result["paths"] == {}
    data = {"date": "today", "versions": {"torch": "x"}, "models": {result["model"]: result}}
    data["coverage"] = zoo.coverage(data["models"])
    assert data["coverage"]["flax"]["total"] == 0
    assert "- handwritten/python_branch: ExportError" in zoo.markdown(data)


def test_compare_bounds_the_error_relative_to_the_outputs_scale():
    import numpy as np

    want = {"[0]": np.array([100.0, -50.0], np.float32), "[1]": np.array([1, 2])}
    error, failure = zoo.compare({"[0]": np.array([100.005, -50.0], np.float32), "[1]": np.array([1, 2])}, want)
    assert failure is None and error == pytest.approx(5e-5, rel=1e-2)
    assert "error 0.0002" in zoo.compare({"[0]": np.array([100.02, -50.0]), "[1]": np.array([1, 2])}, want)[1]
    assert "integers differ" in zoo.compare({"[0]": want["[0]"], "[1]": np.array([1, 3])}, want)[1]
    assert "shape" in zoo.compare({"[0]": want["[0]"][:1], "[1]": want["[1]"]}, want)[1]
