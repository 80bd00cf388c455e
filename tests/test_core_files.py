"""The core's own files besides the bundle (``unigraph.io``): recognizing a path, Flax variables as
safetensors, and atomic outputs that name the output when the disk fails."""

from __future__ import annotations

import errno
import zipfile

import numpy as np
import pytest
from flax import traverse_util
from safetensors.numpy import save_file

from unigraph.io import sniff
from unigraph.io import variables as variables_file
from unigraph.io.atomic import atomic_directory, atomic_file


@pytest.fixture
def files(tmp_path):
    """One file or folder of each kind, and some that only look like one."""
    save_file({"w": np.zeros(2, np.float32)}, tmp_path / "weights.bin")  # safetensors under another name
    with zipfile.ZipFile(tmp_path / "model.keras", "w") as z:
        z.writestr("config.json", "{}")
        z.writestr("metadata.json", "{}")
    with zipfile.ZipFile(tmp_path / "program.zip", "w") as z:
        z.writestr("program/archive_format", "pt2")
    (tmp_path / "legacy.weights").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(32))
    (tmp_path / "savedmodel").mkdir()
    (tmp_path / "savedmodel" / "saved_model.pb").write_bytes(b"")
    (tmp_path / "orbax").mkdir()
    (tmp_path / "orbax" / "_CHECKPOINT_METADATA").write_text("{}")
    (tmp_path / "notes.txt").write_text("{not a header}")
    (tmp_path / "short").write_bytes(b"PK")
    return tmp_path


KINDS = {
    "is_safetensors": "weights.bin",
    "is_keras_archive": "model.keras",
    "is_pt2": "program.zip",
    "is_hdf5": "legacy.weights",
    "is_savedmodel": "savedmodel",
    "is_orbax": "orbax",
}


@pytest.mark.parametrize("test", KINDS)
def test_each_kind_is_recognized_by_its_content_and_nothing_else_is(test, files):
    recognized = {p.name for p in files.iterdir() if getattr(sniff, test)(p)}
    assert recognized == {KINDS[test]}


def test_zips_are_recognized_and_listed(files):
    assert {p.name for p in files.iterdir() if sniff.is_zip(p)} == {"model.keras", "program.zip", "short"}
    assert sniff.zip_names(files / "short") == []  # truncated: no members, no error
    assert sniff.zip_names(files / "model.keras") == ["config.json", "metadata.json"]


def test_flax_variables_round_trip_and_load_without_unigraph(tmp_path):
    from safetensors.flax import load_file

    variables = {
        "params": {"conv": {"kernel": np.arange(24, dtype=np.float32).reshape(2, 3, 4)}, "head": {"bias": np.ones(3)}},
        "batch_stats": {"bn": {"mean": np.zeros(4, np.float32)}},
    }
    path = variables_file.save(variables, tmp_path / "v.safetensors")
    flat = traverse_util.flatten_dict(variables, sep="/")
    loaded = variables_file.load(path)
    assert traverse_util.flatten_dict(loaded, sep="/").keys() == flat.keys()
    by_jax = traverse_util.unflatten_dict(load_file(str(path)), sep="/")  # as the docs tell JAX users
    for key, value in flat.items():
        np.testing.assert_array_equal(traverse_util.flatten_dict(loaded, sep="/")[key], value)
        np.testing.assert_array_equal(np.asarray(traverse_util.flatten_dict(by_jax, sep="/")[key]), value)


@pytest.mark.parametrize("atomic", [atomic_file, atomic_directory])
def test_a_failed_write_names_the_output_and_leaves_nothing(atomic, tmp_path):
    out = tmp_path / "model.out"
    with pytest.raises(OSError) as caught, atomic(out):
        raise OSError(errno.ENOSPC, "No space left on device")  # a full disk: no file name of its own
    assert caught.value.filename == str(out) and caught.value.errno == errno.ENOSPC
    assert "nothing was written" in caught.value.strerror
    assert list(tmp_path.iterdir()) == []
