"""What a path holds, told from its listing or its first bytes: no framework is imported to find out.

The one place each file kind is recognized, for everything that opens files
(the command line's sources, checkpoints and outputs, the Keras frontend,
the SavedModel backend).
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path


def head(path: str | os.PathLike, n: int = 16) -> bytes:
    """The first ``n`` bytes of a file (fewer if it is shorter)."""
    with open(path, "rb") as f:
        return f.read(n)


def is_savedmodel(path: str | os.PathLike) -> bool:
    """A TensorFlow SavedModel directory (``saved_model.pb``, or its text form)."""
    path = Path(path)
    return (path / "saved_model.pb").is_file() or (path / "saved_model.pbtxt").is_file()


def is_orbax(path: str | os.PathLike) -> bool:
    """An Orbax checkpoint directory."""
    path = Path(path)
    return (path / "_CHECKPOINT_METADATA").is_file() or (path / "_METADATA").is_file()


def is_keras_folder(path: str | os.PathLike) -> bool:
    """A folder ``unigraph convert --to keras`` writes: ``model.py``, ``model.weights.h5``, ``model.keras``."""
    path = Path(path)
    return all((path / name).is_file() for name in ("model.py", "model.weights.h5", "model.keras"))


def is_tflite(path: str | os.PathLike) -> bool:
    """A TFLite flatbuffer: its file identifier ``TFL3`` at bytes 4 to 8."""
    return Path(path).is_file() and head(path, 8)[4:8] == b"TFL3"


def is_safetensors(path: str | os.PathLike) -> bool:
    """A file that starts as every safetensors file does: an 8-byte header length, then a JSON object."""
    path = Path(path)
    if not path.is_file():
        return False
    start = head(path, 9)
    return len(start) == 9 and start[8:9] == b"{"


def is_zip(path: str | os.PathLike) -> bool:
    """A zip archive: a ``.pt2``, a ``.keras`` file, or a torch ``.pt`` saved with ``torch.save``."""
    return Path(path).is_file() and head(path, 2) == b"PK"


def zip_names(path: str | os.PathLike) -> list[str]:
    """The members of a zip archive; empty for anything else (not a zip, truncated, unreadable)."""
    if not is_zip(path):
        return []
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return []


def is_pt2(path: str | os.PathLike) -> bool:
    """A ``torch.export.save`` archive (a zip with an ``archive_format`` member)."""
    return any(n == "archive_format" or n.endswith("/archive_format") for n in zip_names(path))


def is_keras_archive(path: str | os.PathLike) -> bool:
    """A ``.keras`` file (a zip holding ``config.json`` and ``metadata.json``), whatever its name."""
    names = zip_names(path)
    return "config.json" in names and "metadata.json" in names


def is_hdf5(path: str | os.PathLike) -> bool:
    """An HDF5 file (a legacy Keras ``.h5``)."""
    return Path(path).is_file() and head(path, 4) == b"\x89HDF"
