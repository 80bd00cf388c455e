"""The PyTorch backend: generated modules that train, move, trace, and stand alone as source files."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

import unigraph as ug


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.norm = nn.BatchNorm2d(8)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.embed = nn.Embedding(10, 8)
        self.ln = nn.LayerNorm(8)
        self.head = nn.Linear(8, 4)

    def forward(self, x, ids):
        h = self.pool(torch.relu(self.norm(self.conv(x)))).flatten(1)
        h = self.ln(h + self.embed(ids).mean(1))
        return self.head(h) * torch.arange(4, device=x.device)


def _inputs(batch):
    generator = torch.Generator().manual_seed(batch)
    return torch.randn(batch, 3, 8, 8, generator=generator), torch.randint(0, 10, (batch, 5), generator=generator)


@pytest.fixture(scope="module")
def conv():
    torch.manual_seed(0)
    return ug.from_torch(Net().eval(), _inputs(2))


def test_generated_code_uses_torch_layers_and_loads_the_state_dict_strictly(conv):
    from unigraph.backends.torch_codegen import generate

    source = generate(conv)
    for layer in ("nn.Conv2d(3, 8, 3, padding=1)", "nn.BatchNorm2d(8", "nn.Embedding(10, 8)", "nn.LayerNorm(8", "nn.Linear(8, 4)"):
        assert layer in source, layer
    module = conv.to_torch()
    assert sorted(module.state_dict()) == sorted(conv.to_state_dict())


def test_the_module_trains(conv):
    module = conv.to_torch().train()
    optimizer = torch.optim.SGD([p for p in module.parameters() if p.is_floating_point()], lr=0.05)
    x, ids = _inputs(8)
    target = torch.randn(8, 4)
    losses = []
    for _ in range(5):
        optimizer.zero_grad()
        loss = ((module(x, ids) - target) ** 2).mean()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert module.head.weight.grad is not None


def test_the_module_moves_with_to(conv):
    module = conv.to_torch().to(dtype=torch.float64)
    x, ids = _inputs(2)
    out = module(x.double(), ids)
    assert out.dtype == torch.float64
    meta = conv.to_torch().to("meta")  # every tensor follows the module, arange included
    assert meta(x.to("meta"), ids.to("meta")).device.type == "meta"


def test_the_module_traces_with_torch_export_at_a_dynamic_batch(conv):
    module = conv.to_torch()
    batch = torch.export.Dim("batch")
    program = torch.export.export(module, _inputs(2), dynamic_shapes=({0: batch}, {0: batch}))
    x, ids = _inputs(5)
    torch.testing.assert_close(program.module()(x, ids), module(x, ids))


def test_the_source_file_needs_only_torch(conv, tmp_path):
    path = tmp_path / "net.py"
    conv.to_torch_source(path, class_name="Net")
    torch.save(conv.to_state_dict(), tmp_path / "state.pt")
    x, ids = _inputs(3)
    torch.save((x, ids), tmp_path / "inputs.pt")
    with torch.no_grad():
        want = conv.to_torch()(x, ids)
    torch.save(want, tmp_path / "want.pt")
    code = (
        "import sys, torch\n"
        f"sys.path.insert(0, {str(tmp_path)!r})\n"
        "from net import Net\n"
        "model = Net()\n"
        f"model.load_state_dict(torch.load({str(tmp_path / 'state.pt')!r}), strict=True)\n"
        "model.eval()\n"
        f"x, ids = torch.load({str(tmp_path / 'inputs.pt')!r})\n"
        f"torch.testing.assert_close(model(x, ids), torch.load({str(tmp_path / 'want.pt')!r}))\n"
        "print(sorted(m for m in ('unigraph', 'jax', 'keras', 'tensorflow') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
    with pytest.raises(ug.OutputExistsError):
        conv.to_torch_source(path)


class Versioned(nn.Module):
    """A module whose state-dict format is versioned and that refuses a state dict without its version
    (as torchvision's MNASNet does)."""

    _version = 2

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2)
        self.bn = nn.BatchNorm1d(2)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, *args):
        if local_metadata.get("version") != 2:
            raise ValueError(f"version should be 2, not {local_metadata.get('version')}")
        super()._load_from_state_dict(state_dict, prefix, local_metadata, *args)

    def forward(self, x):
        return self.bn(self.fc(x))


def test_the_state_dict_carries_the_source_modules_versions():
    conv = ug.from_torch(Versioned().eval(), (torch.randn(4, 3),))
    state = conv.to_state_dict()
    assert dict(state._metadata) == {"": {"version": 2}, "bn": {"version": 2}}  # BatchNorm's own version 2
    Versioned().load_state_dict(state, strict=True)


def test_state_dict_of_another_origin_uses_torch_conventions():
    import flax.linen as fnn
    import jax

    class Model(fnn.Module):
        @fnn.compact
        def __call__(self, x):
            x = fnn.Conv(4, (3, 3), name="conv")(x)
            return fnn.Dense(2, name="head")(x.reshape(x.shape[0], -1))

    x = np.random.default_rng(0).normal(size=(2, 6, 6, 3)).astype(np.float32)
    module = Model()
    variables = module.init(jax.random.key(0), x)
    conv = ug.from_flax(module, variables, x)
    state = conv.to_state_dict()
    assert state["conv.weight"].shape == (4, 3, 3, 3)  # (out, in, kh, kw)
    assert state["head.weight"].shape == (2, 6 * 6 * 4)  # (out, in)
    np.testing.assert_array_equal(state["head.weight"].numpy(), np.asarray(variables["params"]["head"]["kernel"]).T)
    with torch.no_grad():
        got = conv.to_torch()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, np.asarray(module.apply(variables, x)), rtol=1e-5, atol=1e-5)


# ---- what the source model takes: one dict (Keras), keywords, nested structures -----------------


def _token_inputs(batch: int, length: int, vocab: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(batch)
    inputs = {"token_ids": rng.integers(1, vocab, (batch, length)).astype(np.int32)}
    mask = np.ones((batch, length), np.int32)
    mask[0, length - 2 :] = 0  # padding in the first row
    inputs["padding_mask"] = mask
    return inputs


def _keras_dict_model():
    """Functional, named inputs (a dict), any sequence length: sine positions are made from nothing."""
    import keras
    import keras_hub

    keras.utils.set_random_seed(0)
    tokens = keras.Input((None,), dtype="int32", name="token_ids")
    mask = keras.Input((None,), dtype="int32", name="padding_mask")
    x = keras.layers.Embedding(50, 8)(tokens)
    x = x + keras_hub.layers.SinePositionEncoding()(x)
    x = keras.layers.Dense(4)(x * keras.ops.cast(mask, "float32")[..., None])
    return keras.Model({"token_ids": tokens, "padding_mask": mask}, x)


def _keras_case():
    """A Keras model taking a dict, its conversion, inputs and Keras's own output (NumPy). keras_hub's
    backbones take a dict too: tests/zoo/test_keras_zoo.py runs BertBackbone's and GPT2Backbone's modules."""
    model, inputs = _keras_dict_model(), _token_inputs(3, 7, 50)
    return ug.from_keras(model), inputs, _numpy(model(inputs, training=False))


def _numpy(out):
    if isinstance(out, dict):
        return {k: _numpy(v) for k, v in out.items()}
    return np.array(out)


def _torch(out):
    if isinstance(out, dict):
        return {k: _torch(v) for k, v in out.items()}
    return torch.from_numpy(np.array(out))


def _assert_close(got, want, where):
    torch.testing.assert_close(got, _torch(want), rtol=1e-4, atol=1e-5, msg=lambda m: f"{where}: {m}")


def test_a_keras_model_with_named_inputs_takes_a_dict_or_keywords(tmp_path):
    conv, inputs, want = _keras_case()
    tensors = {k: torch.from_numpy(v) for k, v in inputs.items()}
    module = conv.to_torch()
    with torch.no_grad():
        _assert_close(module(tensors), want, "dict")
        _assert_close(module(**tensors), want, "keywords")
        _assert_close(module(inputs=tensors), want, "inputs=")
    with pytest.raises(TypeError, match="one dict or as keywords"):
        module(tensors, token_ids=tensors["token_ids"])
    _assert_close(_torch(conv(**inputs)), want, "the Converted, by keywords")

    conv.to_torch_source(tmp_path / "model.py")
    torch.save(conv.to_state_dict(), tmp_path / "state.pt")
    torch.save((tensors, _torch(want)), tmp_path / "io.pt")
    code = (
        "import sys, torch\n"
        f"sys.path.insert(0, {str(tmp_path)!r})\n"
        "from model import Model\n"
        "model = Model()\n"
        f"model.load_state_dict(torch.load({str(tmp_path / 'state.pt')!r}), strict=True)\n"
        f"inputs, want = torch.load({str(tmp_path / 'io.pt')!r})\n"
        "with torch.no_grad():\n"
        "    torch.testing.assert_close(model.eval()(inputs), want, rtol=1e-4, atol=1e-5)\n"
        "    torch.testing.assert_close(model(**inputs), want, rtol=1e-4, atol=1e-5)\n"
        "print(sorted(m for m in ('unigraph', 'jax', 'keras', 'tensorflow') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


class Keywords(nn.Module):
    """Keyword arguments: a fixed one before tensors, a nested dict of a tuple and a tensor."""

    def forward(self, x, scale=2.0, mask=None, extra=None):
        y = x * scale * mask
        return {"sum": y + extra["pair"][0] * extra["pair"][1], "parts": [y, extra["bias"]]}


class Batch(nn.Module):
    """One positional dict, as a training loop's batch."""

    def forward(self, batch):
        return batch["x"] * batch["weights"][1] + batch["weights"][0]


def test_torch_models_keep_keywords_and_nesting():
    rng = torch.Generator().manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, generator=rng)

    x, mask = randn(2, 3), (randn(2, 3) > 0).float()
    kwargs = {"scale": 2.0, "mask": mask, "extra": {"pair": (randn(2, 3), randn(3)), "bias": randn(3)}}
    model = Keywords()
    module = ug.from_torch(model, (x,), kwargs).to_torch()
    torch.testing.assert_close(module(x, **kwargs), model(x, **kwargs))
    torch.testing.assert_close(module(x, 2.0, mask, kwargs["extra"]), model(x, **kwargs))

    batch = {"x": randn(2, 3), "weights": [randn(3), randn(3)]}
    model = Batch()
    module = ug.from_torch(model, (batch,)).to_torch()
    torch.testing.assert_close(module(batch), model(batch))
    torch.testing.assert_close(module(**batch), model(batch))
