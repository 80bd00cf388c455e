"""Every zoo model: torch → unigraph → torch gives back the state dict bit for bit and a module that matches.

Per model: the state dict of ``to_state_dict`` has the original's names,
shapes, dtypes and values (``torch.equal``, tied names included), loads with
``strict=True``; the module of ``to_torch`` (the generated code) matches torch
eager at two batch sizes, and the standalone file of ``to_torch_source``
defines the same module.
"""

import contextlib
import importlib.util

import pytest
import torch

import unigraph as ug
from tests.ops.harness import leaves as _leaves
from tests.zoo import models
from tests.zoo.util import ATOL, RTOL

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_round_trip(name, tmp_path):
    case = models.MODELS[name]()
    model = case.model
    grad = torch.no_grad() if case.no_grad else contextlib.nullcontext()
    args, kwargs = case.make_inputs(case.batches[0])
    with grad:
        conv = ug.from_torch(model, args, kwargs)

    original = model.state_dict()
    state = conv.to_state_dict()
    assert sorted(state) == sorted(original)
    for key, tensor in original.items():
        assert state[key].dtype == tensor.dtype and torch.equal(state[key], tensor), key
    model.load_state_dict(state, strict=True)

    runtime = conv.to_torch()
    path = tmp_path / f"{name}.py"
    conv.to_torch_source(path)
    spec = importlib.util.spec_from_file_location(f"generated_{name}", path)
    generated = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generated)
    from_file = generated.Model()
    from_file.load_state_dict(state, strict=True)
    from_file.eval()

    for batch in case.batches:
        args, kwargs = case.make_inputs(batch)
        with torch.no_grad():
            want = _leaves(model(*args, **kwargs))
            for module in (runtime, from_file):
                got = _leaves(module(*args, **kwargs))
                assert len(got) == len(want)
                for i, (g, w) in enumerate(zip(got, want)):
                    assert g.shape == w.shape and g.dtype == w.dtype, (i, g.shape, w.shape)
                    torch.testing.assert_close(g, w, rtol=RTOL, atol=ATOL, msg=f"output {i} at batch {batch}")
