"""Weight checkpoints read tensor by tensor: safetensors (one file or sharded) and torch state dicts.

``open_checkpoint(path)`` takes a ``.safetensors`` file, a Hugging Face shard
index (``model.safetensors.index.json``, ``pytorch_model.bin.index.json``), a
folder holding one of those, or a torch ``.pt``/``.bin``/``.pth`` state dict.
Every kind answers ``names()``, ``spec(name)`` (dtype and shape, from the
header alone for safetensors) and ``read(name)`` (a NumPy array).

Nothing a file contains is run: safetensors is plain data, and torch files are
read with ``torch.load(weights_only=True)``; a file that needs arbitrary
unpickling is refused unless the caller passes ``trust_pickle=True`` (the
command line's ``--trust-pickle``). torch is imported only for torch files.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from unigraph.errors import CheckpointError, first_line
from unigraph.io import sniff
from unigraph.io.safetensors_file import SafetensorsFile, TensorSpec, file_sha256

#: File names of a Hugging Face folder's weights, in order of preference.
HF_WEIGHTS = (
    "model.safetensors.index.json",
    "model.safetensors",
    "pytorch_model.bin.index.json",
    "pytorch_model.bin",
)
TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")


class Checkpoint:
    """Named tensors in a file (or files); ``read`` returns one at a time."""

    path: Path
    nbytes: int

    def names(self) -> list[str]:
        raise NotImplementedError

    def spec(self, name: str) -> TensorSpec:
        raise NotImplementedError

    def read(self, name: str) -> np.ndarray:
        raise NotImplementedError

    def sha256(self) -> str:
        raise NotImplementedError

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {n: self.spec(n).shape for n in self.names()}

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class SafetensorsCheckpoint(Checkpoint):
    def __init__(self, path: Path, *, digest: bool = False):
        self.path = path
        self._file = SafetensorsFile(path, digest=digest)
        self.nbytes = self._file.size

    def names(self) -> list[str]:
        return self._file.names()

    def spec(self, name: str) -> TensorSpec:
        return self._file.specs[name]

    def read(self, name: str) -> np.ndarray:
        return self._file.read(name)

    def sha256(self) -> str:
        return self._file.sha256()

    def close(self) -> None:
        self._file.close()


class TorchCheckpoint(Checkpoint):
    """A state dict saved with ``torch.save``, loaded memory-mapped with ``weights_only=True``."""

    def __init__(self, path: Path, *, trust_pickle: bool = False):
        self.path = path
        self.nbytes = path.stat().st_size
        self._tensors = load_torch_state_dict(path, trust_pickle=trust_pickle)

    def names(self) -> list[str]:
        return list(self._tensors)

    def spec(self, name: str) -> TensorSpec:
        from unigraph.frontends.torch_tensors import numpy_dtype

        t = self._tensors[name]
        return TensorSpec(name, numpy_dtype(t.dtype), tuple(t.shape))

    def read(self, name: str) -> np.ndarray:
        from unigraph.frontends.torch_tensors import to_numpy

        return to_numpy(self._tensors[name])

    def sha256(self) -> str:
        return file_sha256(self.path)


class ShardedCheckpoint(Checkpoint):
    """A Hugging Face shard index and the shards it names, read as one checkpoint."""

    def __init__(self, index: Path, *, trust_pickle: bool = False, digest: bool = False):
        self.path = index
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
            if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
                raise TypeError
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError, KeyError, TypeError):
            raise CheckpointError(
                f"{index}: not a shard index (a JSON object with a 'weight_map' of tensor names to file names)"
            ) from None
        for shard_name in weight_map.values():
            if (
                Path(shard_name).name != shard_name
                or shard_name in ("", ".", "..")
                or "\x00" in shard_name
                or shard_name.endswith(".index.json")
            ):
                raise CheckpointError(f"{index}: names a shard {shard_name!r} that is not a weights file beside it")
        self._shards: dict[str, Checkpoint] = {}
        self._where: dict[str, Checkpoint] = {}
        try:
            for shard_name in dict.fromkeys(weight_map.values()):
                shard = open_checkpoint(index.parent / shard_name, trust_pickle=trust_pickle, digest=digest)
                self._shards[shard_name] = shard
                for name in shard.names():
                    self._where[name] = shard
            listed = [n for n, s in weight_map.items() if n not in self._where or self._where[n] is not self._shards[s]]
            if listed:
                raise CheckpointError(f"{index}: tensor {listed[0]!r} is not in the shard the index names")
        except BaseException:
            self.close()
            raise
        self.nbytes = index.stat().st_size + sum(s.nbytes for s in self._shards.values())

    def names(self) -> list[str]:
        return list(self._where)

    def spec(self, name: str) -> TensorSpec:
        return self._where[name].spec(name)

    def read(self, name: str) -> np.ndarray:
        return self._where[name].read(name)

    def sha256(self) -> str:
        digest = hashlib.sha256(self.path.read_bytes())
        for name, shard in self._shards.items():
            digest.update(f"\n{name} {shard.sha256()}".encode())
        return digest.hexdigest()

    def close(self) -> None:
        for shard in self._shards.values():
            shard.close()


def open_checkpoint(path: str | os.PathLike, *, trust_pickle: bool = False, digest: bool = False) -> Checkpoint:
    """The checkpoint at ``path``; ``CheckpointError`` says what is wrong with it.

    ``digest=True``: ``sha256()`` will be asked for after the tensors are read; safetensors
    files then hash the bytes as they are read (see ``SafetensorsFile``) instead of reading
    them again, and the arrays ``read`` returns are read-only.
    """
    path = Path(path)
    if path.is_dir():
        path = hf_weights_file(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file")
    name = path.name
    if name.endswith(".index.json"):
        return ShardedCheckpoint(path, trust_pickle=trust_pickle, digest=digest)
    if name.endswith(".safetensors"):
        return SafetensorsCheckpoint(path, digest=digest)
    if name.endswith(TORCH_SUFFIXES):
        return TorchCheckpoint(path, trust_pickle=trust_pickle)
    if sniff.is_zip(path):
        return TorchCheckpoint(path, trust_pickle=trust_pickle)
    if sniff.is_safetensors(path):
        return SafetensorsCheckpoint(path, digest=digest)
    raise CheckpointError(f"{path}: not a checkpoint unigraph reads (safetensors, or a torch state dict .pt/.bin)")


def hf_weights_file(folder: Path) -> Path:
    """The weights of a Hugging Face folder (the shard index when sharded)."""
    for name in HF_WEIGHTS:
        if (folder / name).is_file():
            return folder / name
    indexes = sorted(folder.glob("*.safetensors.index.json"))
    singles = sorted(folder.glob("*.safetensors"))
    if len(indexes) == 1:
        return indexes[0]
    if len(singles) == 1:
        return singles[0]
    raise CheckpointError(f"{folder}: no weights found (looked for {', '.join(HF_WEIGHTS)})")


def has_hf_weights(folder: Path) -> bool:
    try:
        hf_weights_file(folder)
    except CheckpointError:
        return False
    return True


# ---- torch files ---------------------------------------------------------------------------------


def load_torch_state_dict(path: Path, *, trust_pickle: bool = False) -> dict:
    """A ``torch.save``d state dict (names to tensors), read with ``weights_only=True`` unless trusted."""
    import pickle

    import torch

    try:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=not trust_pickle, mmap=True)
        except RuntimeError as e:
            if "mmap" not in str(e):
                raise
            obj = torch.load(path, map_location="cpu", weights_only=not trust_pickle)  # the legacy format
    except pickle.UnpicklingError as e:
        reason = _unpickling_reason(str(e))
        if "Weights only load failed" in str(e) and _needs_code(reason):
            raise CheckpointError(
                f"{path}: refused: loading it needs arbitrary unpickling, which can run code ({reason}). "
                "Nothing was loaded. Save the weights as safetensors, or pass --trust-pickle "
                "(trust_pickle=True) if you trust the file"
            ) from None
        raise CheckpointError(f"{path}: not a readable torch checkpoint (corrupt: {reason or _first_sentence(first_line(e))})") from None
    except (AttributeError, ImportError) as e:  # trusted unpickling of code this process cannot import
        raise CheckpointError(
            f"{path}: cannot unpickle it: it refers to code that is not importable here ({_first_sentence(first_line(e))})"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable torch checkpoint (truncated or corrupt: {_first_sentence(first_line(e))})") from None
    return _state_dict(path, obj)


def _state_dict(path: Path, obj) -> dict:
    import torch

    if isinstance(obj, Mapping) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        for key in ("state_dict", "model", "module"):  # common wrappers of training checkpoints
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a state dict (names to tensors)")
    others = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if others:
        raise CheckpointError(f"{path}: not a state dict: {others[0]!r} is a {type(obj[others[0]]).__name__}, not a tensor")
    return dict(obj)


def _unpickling_reason(message: str) -> str:
    """The weights-only unpickler's own reason, first sentence only ("Unsupported global: GLOBAL x.Y ...")."""
    marker = "WeightsUnpickler error:"
    if marker not in message:
        # a global of a blocked module (os.system, subprocess): "Trying to load unsupported GLOBAL posix.system whose module posix is blocked."
        blocked = [line.strip() for line in message.splitlines() if "unsupported GLOBAL" in line]
        return _first_sentence(blocked[0]) if blocked else ""
    rest = message.split(marker, 1)[1].strip()  # the reason may be on the next line
    return _first_sentence(rest.splitlines()[0]) if rest else ""


def _needs_code(reason: str) -> bool:
    """Whether a weights-only refusal is about what the pickle would build (code), not a damaged file."""
    return any(word in reason for word in ("GLOBAL", "global", "allowlisted", "add_safe_globals", "must be imported"))


def _first_sentence(text: str) -> str:
    return text.strip().split(". ")[0].rstrip(".")
