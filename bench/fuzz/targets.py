"""The readers under fuzzing: each one's seeds (files written here from tiny models) and how it loads.

A seed is a dict of file names to bytes: one file, or a folder's files (a
Hugging Face folder). ``load(path)`` runs the reader the way ``unigraph``
runs it on a user's file; every input must load or raise a ``UnigraphError``
naming ``path``.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

Seed = dict[str, bytes]


@dataclasses.dataclass(frozen=True)
class Target:
    name: str
    seeds: Callable[[], list[Seed]]
    load: Callable[[Path], object]
    folder: bool = False  # the reader takes the seed's folder, not its one file
    nested: tuple[str, ...] = ()  # safetensors metadata values that hold JSON texts


def _written(write: Callable[[Path], object], name: str) -> Seed:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        write(path)
        if path.is_dir():
            return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}
        return {name: path.read_bytes()}


# ---- safetensors ---------------------------------------------------------------------------------


def _safetensors_seeds() -> list[Seed]:
    import ml_dtypes

    from unigraph.io import safetensors_file
    from unigraph.io.safetensors_file import TensorSpec

    rng = np.random.default_rng(0)
    sets = [
        {"w": rng.standard_normal((2, 3)).astype(np.float32), "b": np.arange(3, dtype=np.int64)},
        {"h": rng.standard_normal(4).astype(ml_dtypes.bfloat16), "s": np.array(1.5, np.float16),
         "e": np.zeros((0, 2), np.float32), "q": np.arange(4, dtype=np.uint8).view(ml_dtypes.float8_e4m3fn),
         "m": np.array([True, False])},
    ]
    seeds = []
    for i, arrays in enumerate(sets):
        def write(path, arrays=arrays, i=i):
            specs = [TensorSpec(k, a.dtype, a.shape) for k, a in arrays.items()]
            with open(path, "wb") as f:
                safetensors_file.write(f, specs, arrays.__getitem__, {"format": "pt"} if i == 0 else None)
        seeds.append(_written(write, "model.safetensors"))
    return seeds


def _load_safetensors(path: Path):
    from unigraph.io.safetensors_file import SafetensorsFile

    with SafetensorsFile(path, digest=True) as f:
        arrays = [f.read(name) for name in f.names()]
        f.sha256()
    return arrays


# ---- .ug bundles -------------------------------------------------------------------------------------


def _ug_seeds() -> list[Seed]:
    import jax.numpy as jnp
    import ml_dtypes

    import unigraph as ug
    from unigraph.io import bundle

    rng = np.random.default_rng(0)
    scale = rng.standard_normal(3).astype(np.float32)  # a constant of the graph
    params = {"w": rng.standard_normal((4, 3)).astype(np.float32), "b": rng.standard_normal(3).astype(np.float32)}

    def mlp(p, x):
        return jnp.tanh(x @ p["w"] + p["b"]) * scale

    def mixed(p, x):
        return (x.astype(jnp.bfloat16) * p["g"]).sum(axis=-1).astype(jnp.float32)

    convs = [
        ug.from_jax(mlp, params, np.ones((2, 4), np.float32)),
        ug.from_jax(mixed, {"g": np.ones(5, ml_dtypes.bfloat16)}, np.ones((2, 5), np.float32), polymorphic_shapes=None),
    ]
    return [_written(lambda path, c=c: bundle.save(c, path), "model.ug") for c in convs]


def _load_ug(path: Path):
    from unigraph.io import bundle

    return bundle.load(path)


# ---- Hugging Face folders ------------------------------------------------------------------------------


def _hf_seeds() -> list[Seed]:
    import torch  # noqa: F401  (before transformers pulls in TensorFlow: unigraph.native_order)
    import transformers

    from unigraph.frontends.torch_tensors import to_numpy
    from unigraph.io import safetensors_file
    from unigraph.io.safetensors_file import TensorSpec

    config = transformers.BertConfig(
        vocab_size=32, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
        max_position_embeddings=16, architectures=["BertModel"],
    )
    torch.manual_seed(0)
    state = {k: to_numpy(v) for k, v in transformers.BertModel(config).state_dict().items()}

    def write(folder: Path, sharded: bool) -> None:
        folder.mkdir()
        (folder / "config.json").write_text(config.to_json_string())
        names = list(state)
        shards = [names[: len(names) // 2], names[len(names) // 2 :]] if sharded else [names]
        weight_map = {}
        for i, part in enumerate(shards):
            file = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" if sharded else "model.safetensors"
            with open(folder / file, "wb") as f:
                safetensors_file.write(f, [TensorSpec(k, state[k].dtype, state[k].shape) for k in part],
                                       state.__getitem__, {"format": "pt"})
            weight_map.update(dict.fromkeys(part, file))
        if sharded:
            index = {"metadata": {"total_size": sum(a.nbytes for a in state.values())}, "weight_map": weight_map}
            (folder / "model.safetensors.index.json").write_text(json.dumps(index))

    return [_written(lambda p, s=s: write(p, s), "hf") for s in (True, False)]


def _load_hf(path: Path):
    from unigraph.cli import sources

    return sources.open_source(str(path))


# ---- .pt2 archives ---------------------------------------------------------------------------------------


def _pt2_seeds() -> list[Seed]:
    import torch

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 3)
            self.register_buffer("shift", torch.arange(3.0))

        def forward(self, x):
            return torch.relu(self.fc(x)) + self.shift

    torch.manual_seed(0)
    program = torch.export.export(Tiny().eval(), (torch.randn(2, 4),))
    return [_written(lambda p: torch.export.save(program, str(p)), "model.pt2")]


def _load_pt2(path: Path):
    from unigraph.cli import sources

    return sources.open_source(str(path))


# ---- Keras files ------------------------------------------------------------------------------------------


def _keras_seeds() -> list[Seed]:
    from unigraph.cli.scoped import environment
    from unigraph.native_order import before_tensorflow

    before_tensorflow()
    with environment(KERAS_BACKEND="jax"):
        import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="relu"), keras.layers.Dense(2)])
    return [_written(lambda p: model.save(p), name) for name in ("model.keras", "model.h5")]


def _load_keras(path: Path):
    from unigraph.cli import sources

    return sources.open_source(str(path))  # safe mode: --trust-remote-code not given


TARGETS = {
    t.name: t
    for t in (
        Target("safetensors", _safetensors_seeds, _load_safetensors),
        Target("ug", _ug_seeds, _load_ug, nested=("graph", "param_map", "metadata", "viewed_dtypes")),
        Target("hf", _hf_seeds, _load_hf, folder=True),
        Target("pt2", _pt2_seeds, _load_pt2),
        Target("keras", _keras_seeds, _load_keras),
    )
}


def write_seed(seed: Seed, directory: Path, folder: bool) -> Path:
    """Writes ``seed``'s files under ``directory``; the path the reader takes."""
    for name, data in seed.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    if folder:
        return directory
    (name,) = seed
    return directory / name
