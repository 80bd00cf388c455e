"""Writing outputs atomically: a directory (a SavedModel) or a file (a bundle, a source file).

A conversion can fail halfway (an op that does not lower for a platform, a
full disk, an interrupt). Everything is written into a temporary sibling of
the output and renamed into place at the end, so the output path holds either
the complete result or nothing new: never a half-written model that a server
would pick up.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from unigraph.errors import OutputExistsError


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yields an empty temporary directory beside ``path``; renames it to ``path`` on success.

    An existing ``path`` raises ``OutputExistsError`` unless ``overwrite``;
    then it is replaced only once the new output is complete. On any error
    the temporary directory is removed and ``path`` is left as it was.
    """
    path = Path(path)
    refuse_existing(path, overwrite=overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = _sibling(path, "partial")
    staging.mkdir()  # with the caller's umask, unlike mkdtemp's 0700
    try:
        with _naming(path):
            yield staging
        refuse_existing(path, overwrite=overwrite)  # created by someone else meanwhile?
        if os.path.lexists(path):
            _replace(staging, path)
        else:
            os.rename(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yields a temporary path beside ``path`` to write; renames it to ``path`` on success.

    Same contract as ``atomic_directory``: ``path`` ends up complete or untouched.
    """
    path = Path(path)
    refuse_existing(path, overwrite=overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = _sibling(path, "partial")
    try:
        with _naming(path):
            yield staging
        refuse_existing(path, overwrite=overwrite)
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)


@contextlib.contextmanager
def _naming(path: Path) -> Iterator[None]:
    """A failed write of the staged copy (a full disk) names the output, not its hidden staging path."""
    try:
        yield
    except OSError as e:
        if e.filename is not None or isinstance(e, OutputExistsError):
            raise
        raise OSError(e.errno, f"writing failed, nothing was written: {e.strerror or e}", os.fspath(path)) from e


def staging_path(path: str | os.PathLike) -> Path:
    """A fresh hidden sibling of ``path`` to write an output into, for a caller that commits it later.

    The two halves of ``atomic_file``/``atomic_directory`` for work split
    between processes: a worker writes the staged output, the process that
    owns the outputs ``commit``s it (``unigraph translate``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return _sibling(path, "partial")


def commit(staging: str | os.PathLike, path: str | os.PathLike) -> None:
    """Moves a complete staged output to ``path``, replacing what is there."""
    staging, path = Path(staging), Path(path)
    if os.path.lexists(path) and (staging.is_dir() or path.is_dir()):
        _replace(staging, path)
    else:
        os.replace(staging, path)


def remove_staged(path: str | os.PathLike) -> list[Path]:
    """Deletes what interrupted writes of ``path`` left beside it (its hidden staging siblings)."""
    path = Path(path)
    stale = [p for p in path.parent.glob(f".{glob.escape(path.name)}.*") if p.name.endswith((".partial", ".old"))]
    for p in stale:
        discard(p)
    return stale


def discard(path: str | os.PathLike) -> None:
    """Deletes a file or directory if it exists."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        path.unlink()


def refuse_existing(path: str | os.PathLike, *, overwrite: bool = False) -> None:
    """Raises ``OutputExistsError`` if ``path`` exists and ``overwrite`` is false."""
    if os.path.lexists(path) and not overwrite:
        raise OutputExistsError(
            f"{path} already exists; nothing was written. Pass overwrite=True to replace it, "
            "or choose another path."
        )


def _sibling(path: Path, tag: str) -> Path:
    """A fresh hidden name beside ``path``: ``.model.1f2e3d4c.partial``."""
    return path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.{tag}"


def _replace(staging: Path, path: Path) -> None:
    """Moves ``path`` aside, ``staging`` into place, then deletes the old output."""
    aside = _sibling(path, "old")
    os.rename(path, aside)
    try:
        os.rename(staging, path)
    except BaseException:
        os.rename(aside, path)
        raise
    if aside.is_dir() and not aside.is_symlink():
        shutil.rmtree(aside)
    else:
        aside.unlink()
