"""safetensors files read and written one tensor at a time, with NumPy only.

The format: 8 bytes (little-endian length ``n``), ``n`` bytes of JSON header
(``{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {…}}``),
then the tensors' bytes back to back. Reading parses and checks the header
first (a truncated or corrupt file is refused before any tensor is read),
then reads each tensor with one ``readinto`` into its own array: memory holds
one tensor, not the file. Writing takes the tensors' specs first, writes the
header, then asks for each tensor in turn, hashing the bytes as it goes.
bfloat16 and float8 are written as such (``BF16``, ``F8_E4M3``), so
``safetensors.flax.load_file`` returns them as JAX dtypes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import struct
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import BinaryIO

import ml_dtypes
import numpy as np

from unigraph.errors import CheckpointError

#: safetensors dtype tags and the NumPy dtypes they hold.
DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "U8": np.dtype(np.uint8),
    "I8": np.dtype(np.int8),
    "U16": np.dtype(np.uint16),
    "I16": np.dtype(np.int16),
    "U32": np.dtype(np.uint32),
    "I32": np.dtype(np.int32),
    "U64": np.dtype(np.uint64),
    "I64": np.dtype(np.int64),
    "F16": np.dtype(np.float16),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "F32": np.dtype(np.float32),
    "F64": np.dtype(np.float64),
    "F8_E4M3": np.dtype(ml_dtypes.float8_e4m3fn),
    "F8_E5M2": np.dtype(ml_dtypes.float8_e5m2),
}
_TAGS = {dtype: tag for tag, dtype in DTYPES.items()}
_MAX_HEADER = 100 * 1024 * 1024  # the limit the reference implementation enforces


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """A tensor's name, dtype and shape (and, in a file being read, where its bytes are)."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    begin: int = 0
    end: int = 0

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


class SafetensorsFile:
    """A safetensors file opened for reading tensor by tensor.

    ``specs`` lists the tensors in file order; ``read(name)`` returns one as a
    fresh array. ``sha256()`` is the file's digest, computed from the bytes
    already read when the reads covered the file in order, else by reading it.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        try:
            self._file = open(self.path, "rb", buffering=0)
        except FileNotFoundError:
            raise CheckpointError(f"{self.path}: no such file") from None
        except IsADirectoryError:
            raise CheckpointError(f"{self.path}: a directory, not a safetensors file") from None
        except OSError as e:
            raise CheckpointError(f"{self.path}: cannot be read ({e.strerror})") from None
        try:
            self.size = os.fstat(self._file.fileno()).st_size
            self.metadata, specs, self._data_start = self._parse_header()
        except BaseException:
            self._file.close()
            raise
        self.specs = {s.name: s for s in sorted(specs, key=lambda s: s.begin)}
        self._hash = hashlib.sha256()
        self._hashed_to = 0  # bytes of the file hashed so far, in order

    # ---- header ----------------------------------------------------------------------------

    def _fail(self, problem: str) -> CheckpointError:
        return CheckpointError(f"{self.path}: {problem}")

    def _parse_header(self) -> tuple[dict[str, str], list[TensorSpec], int]:
        head = _read_exactly(self._file, 0, min(self.size, 8))
        if len(head) < 8:
            raise self._fail(f"not a safetensors file (truncated: {self.size} bytes)")
        (length,) = struct.unpack("<Q", head)
        if length > _MAX_HEADER:
            raise self._fail("not a safetensors file (its first 8 bytes are not a header length)")
        if 8 + length > self.size:
            raise self._fail(
                f"truncated: the header alone should be {length} bytes, the file has {self.size - 8} after the length"
            )
        raw = _read_exactly(self._file, 8, length)
        self._header_bytes = head + raw
        try:
            header = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise self._fail("not a safetensors file (the header is not JSON)") from None
        if not isinstance(header, dict):
            raise self._fail("corrupt header (not a JSON object)")
        metadata = header.pop("__metadata__", None) or {}
        if not isinstance(metadata, dict):
            raise self._fail("corrupt header (__metadata__ is not an object)")
        specs = [self._spec(name, entry) for name, entry in header.items()]
        data = self.size - 8 - length
        position = 0
        for spec in sorted(specs, key=lambda s: s.begin):
            if spec.begin != position:
                raise self._fail(f"corrupt header (tensor {spec.name!r} does not start where the previous one ends)")
            position = spec.end
        if position > data:
            raise self._fail(f"truncated: the tensors need {position} bytes of data, the file has {data}")
        if position < data:
            raise self._fail(f"corrupt: {data - position} bytes follow the last tensor")
        return {str(k): str(v) for k, v in metadata.items()}, specs, 8 + length

    def _spec(self, name: str, entry) -> TensorSpec:
        try:
            dtype = DTYPES[entry["dtype"]]
            shape = tuple(int(d) for d in entry["shape"])
            begin, end = (int(o) for o in entry["data_offsets"])
        except KeyError as e:
            raise self._fail(f"corrupt header (tensor {name!r}: unknown dtype or missing {e})") from None
        except (TypeError, ValueError):
            raise self._fail(f"corrupt header (tensor {name!r} has a malformed entry)") from None
        spec = TensorSpec(name, dtype, shape, begin, end)
        if min(shape, default=0) < 0 or begin < 0 or end - begin != spec.nbytes:
            raise self._fail(f"corrupt header (tensor {name!r}: {end - begin} bytes for {entry['dtype']}{list(shape)})")
        return spec

    # ---- reading -----------------------------------------------------------------------------

    def names(self) -> list[str]:
        return list(self.specs)

    def read(self, name: str) -> np.ndarray:
        spec = self.specs[name]
        buffer = np.empty(spec.nbytes, np.uint8)
        offset = self._data_start + spec.begin
        got = _read_into(self._file, offset, buffer)
        if got != spec.nbytes:
            raise self._fail(f"truncated while reading tensor {name!r} (the file changed?)")
        self._hash_header()
        if self._hashed_to == offset:
            self._hash.update(buffer)
            self._hashed_to += spec.nbytes
        return buffer.view(spec.dtype).reshape(spec.shape)

    def _hash_header(self) -> None:
        if self._hashed_to == 0:
            self._hash.update(self._header_bytes)
            self._hashed_to = self._data_start

    def sha256(self) -> str:
        """The digest of the whole file (free when every tensor was read in file order)."""
        self._hash_header()
        if self._hashed_to == self.size:
            return self._hash.hexdigest()
        return file_sha256(self.path)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> SafetensorsFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _read_exactly(file: BinaryIO, offset: int, n: int) -> bytes:
    buffer = bytearray(n)
    got = _read_into(file, offset, memoryview(buffer))
    return bytes(buffer[:got])


def _read_into(file: BinaryIO, offset: int, buffer) -> int:
    """Fills ``buffer`` from ``offset`` (short only at end of file); returns the bytes read."""
    view = memoryview(buffer).cast("B")
    file.seek(offset)
    total = 0
    while total < len(view):
        n = file.readinto(view[total:])
        if not n:
            break
        total += n
    return total


# ---- writing -----------------------------------------------------------------------------------


def write(
    file: BinaryIO,
    specs: Iterable[TensorSpec],
    produce: Callable[[str], np.ndarray],
    metadata: Mapping[str, str] | None = None,
) -> tuple[str, int]:
    """Writes a safetensors file to ``file``, calling ``produce(name)`` for each tensor in turn.

    Tensors are laid out largest element size first (every tensor stays
    aligned to its element size, as safetensors' own writer does). Each
    produced array must match its spec; it may be any view (a transpose): it
    is made contiguous one tensor at a time. Returns the sha256 of the bytes
    written and their count.
    """
    ordered = sorted(specs, key=lambda s: -s.dtype.itemsize)
    header: dict = {"__metadata__": dict(metadata)} if metadata else {}
    offset = 0
    for spec in ordered:
        if spec.dtype not in _TAGS:
            raise ValueError(f"tensor {spec.name!r}: safetensors cannot hold dtype {spec.dtype}")
        header[spec.name] = {"dtype": _TAGS[spec.dtype], "shape": list(spec.shape), "data_offsets": [offset, offset + spec.nbytes]}
        offset += spec.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    digest = hashlib.sha256()
    written = 0

    def emit(chunk) -> None:
        nonlocal written
        file.write(chunk)
        digest.update(chunk)
        written += len(chunk)

    emit(struct.pack("<Q", len(raw)) + raw)
    for spec in ordered:
        array = np.asarray(produce(spec.name))
        if array.dtype != spec.dtype or tuple(array.shape) != spec.shape:
            raise ValueError(
                f"tensor {spec.name!r}: produced {array.dtype}{list(array.shape)}, "
                f"the header says {spec.dtype}{list(spec.shape)}"
            )
        emit(np.ascontiguousarray(array).reshape(-1).view(np.uint8))
    return digest.hexdigest(), written


def save(path: str | os.PathLike, tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None):
    """Writes ``tensors`` to ``path`` (not atomically: callers stage with ``unigraph.output``)."""
    arrays = {name: np.asarray(a) for name, a in tensors.items()}
    specs = [TensorSpec(name, a.dtype, tuple(a.shape)) for name, a in arrays.items()]
    with open(path, "wb") as f:
        return write(f, specs, arrays.__getitem__, metadata)


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    buffer = bytearray(1 << 20)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buffer):
            digest.update(view[:n])
    return digest.hexdigest()
