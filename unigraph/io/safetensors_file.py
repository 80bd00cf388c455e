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

Why not the ``safetensors`` package itself, which the tests use to read what
this writes: its NumPy API holds no bfloat16 or float8; its writers take
every tensor at once (``save_file``), where a checkpoint streamed through a
ParamMap must be produced one tensor at a time; and a batch of checkpoints
needs each file's sha256 computed while it is read or written, not in a
second pass. Every error here names the file, and the tensor when there is
one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import queue
import struct
import threading
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
_MAX_RANK = 64  # NumPy's


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
    fresh array. ``sha256()`` is the file's digest. With ``digest=True`` it is
    computed as the reads go, each byte once whatever the order of the reads,
    by a thread of its own; the arrays ``read`` returns are then read-only (the
    thread may still be hashing them). Otherwise ``sha256()`` reads the file.
    """

    def __init__(self, path: str | os.PathLike, *, digest: bool = False):
        self.path = Path(path)
        try:
            self._file = open(self.path, "rb", buffering=0)  # noqa: SIM115  (closed by close())
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
        self._digest: _Digest | None = None
        self._hashed_to = 0  # bytes of the file hashed so far, in order
        if digest:
            self._digest = _Digest()
            self._digest.update(self._header_bytes)
            self._hashed_to = self._data_start

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
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            raise self._fail("not a safetensors file (the header is not JSON)") from None
        if not isinstance(header, dict):
            raise self._fail("corrupt header (not a JSON object)")
        metadata = header.pop("__metadata__", None) or {}
        if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
            raise self._fail("corrupt header (__metadata__ is not an object of strings)")
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
        return metadata, specs, 8 + length

    def _spec(self, name: str, entry) -> TensorSpec:
        if not isinstance(entry, dict):
            raise self._fail(f"corrupt header (tensor {name!r}: not an object)")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if not isinstance(dtype, str) or dtype not in DTYPES:
            raise self._fail(f"corrupt header (tensor {name!r}: unknown dtype {dtype!r})")
        if not isinstance(shape, list) or not all(_is_size(d) for d in shape) or len(shape) > _MAX_RANK:
            raise self._fail(f"corrupt header (tensor {name!r}: shape {_short(shape)} is not a list of sizes)")
        if not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_size(o) for o in offsets):
            raise self._fail(f"corrupt header (tensor {name!r}: data_offsets {_short(offsets)} are not [begin, end])")
        if math.prod(max(d, 1) for d in shape) * DTYPES[dtype].itemsize >= 2**63:
            raise self._fail(f"corrupt header (tensor {name!r}: shape {shape} is too large for any file)")
        spec = TensorSpec(name, DTYPES[dtype], tuple(shape), *offsets)
        if spec.end - spec.begin != spec.nbytes:
            raise self._fail(f"corrupt header (tensor {name!r}: {spec.end - spec.begin} bytes for {dtype}{shape})")
        return spec

    # ---- reading -----------------------------------------------------------------------------

    def names(self) -> list[str]:
        return list(self.specs)

    def read(self, name: str) -> np.ndarray:
        spec = self.specs[name]
        offset = self._data_start + spec.begin
        if self._digest is not None and offset > self._hashed_to:  # out of file order: hash the bytes between
            self._hash_to(offset)
        buffer = np.empty(spec.nbytes, np.uint8)
        got = _read_into(self._file, offset, buffer)
        if got != spec.nbytes:
            raise self._fail(f"truncated while reading tensor {name!r} (the file changed?)")
        array = buffer.view(spec.dtype).reshape(spec.shape)
        if self._digest is not None:
            if self._hashed_to == offset:
                self._digest.update(buffer)
                self._hashed_to += spec.nbytes
            array.flags.writeable = False
        return array

    def _hash_to(self, end: int) -> None:
        """Hashes the file's bytes from where the digest stands to ``end``."""
        while self._hashed_to < end:
            chunk = bytearray(min(1 << 22, end - self._hashed_to))  # a fresh one each: the thread holds it
            n = _read_into(self._file, self._hashed_to, chunk)
            if not n:
                raise self._fail("truncated while reading it (the file changed?)")
            self._digest.update(memoryview(chunk)[:n])
            self._hashed_to += n

    def sha256(self) -> str:
        """The digest of the whole file."""
        if self._digest is None:
            return file_sha256(self.path)
        self._hash_to(self.size)
        return self._digest.hexdigest()

    def close(self) -> None:
        if self._digest is not None:
            self._digest.close()
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _is_size(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63


def _short(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "…"


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
    written = 0
    with _Digest() as digest:

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
            emit(contiguous(array).reshape(-1).view(np.uint8))
        return digest.hexdigest(), written


class _Digest:
    """A sha256 computed by a thread of its own (hashlib lets go of the GIL): the bytes written are
    hashed while the next tensor is read and laid out. Holds at most a few chunks, never mutated
    after they are handed over."""

    _SMALL = 1 << 16  # hashed in place: not worth a hand-over

    def __init__(self):
        self._hash = hashlib.sha256()
        self._queue: queue.Queue = queue.Queue(maxsize=4)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def update(self, chunk) -> None:
        if self._thread is None and len(chunk) < self._SMALL:
            self._hash.update(chunk)
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="sha256", daemon=True)
            self._thread.start()
        self._queue.put(chunk)

    def _run(self) -> None:
        while (chunk := self._queue.get()) is not None:
            try:
                self._hash.update(chunk)
            except BaseException as e:  # noqa: BLE001  (raised again by hexdigest)
                self._error = e

    def hexdigest(self) -> str:
        """The digest of everything handed over (waits for the thread); the same on later calls."""
        self.close()
        if self._error is not None:
            raise self._error
        return self._hash.hexdigest()

    def close(self) -> None:
        """Waits for the thread to hash what it holds, and ends it."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_TILE = 128


def contiguous(array: np.ndarray) -> np.ndarray:
    """``array`` in C order (``np.ascontiguousarray``, but a 0-d array stays 0-d).

    A large transposed matrix (a Linear weight as a Flax kernel) is copied in
    square tiles: several times faster than NumPy's element order, which walks
    the source a whole row apart at every step.
    """
    if array.flags.c_contiguous:
        return array
    if array.ndim != 2 or array.nbytes < (1 << 20):
        return np.asarray(array, order="C")
    out = np.empty(array.shape, array.dtype)
    rows, cols = array.shape
    for i in range(0, rows, _TILE):
        for j in range(0, cols, _TILE):
            out[i : i + _TILE, j : j + _TILE] = array[i : i + _TILE, j : j + _TILE]
    return out


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    buffer = bytearray(1 << 20)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buffer):
            digest.update(view[:n])
    return digest.hexdigest()
