"""A short fixed-seed slice of each reader's fuzzer (bench/fuzz; the long runs are there), and the
defect classes the fuzzers found, one input each."""

from __future__ import annotations

import json
import struct

import pytest

from bench.fuzz import runner
from bench.fuzz.mutate import join_safetensors, split_safetensors
from bench.fuzz.targets import TARGETS, Target
from unigraph.errors import CheckpointError

# inputs per reader: a few seconds each, most of it importing the framework and writing the seeds
SLICES = {"safetensors": 400, "ug": 150, "hf": 25, "pt2": 30, "keras": 15}


@pytest.mark.parametrize("reader", list(SLICES))
def test_fuzz_slice(reader, tmp_path):
    if reader in ("pt2", "hf", "keras"):
        import torch  # noqa: F401  (before TensorFlow loads: unigraph.native_order)
    report = runner.run(TARGETS[reader], SLICES[reader], seed=1, out=tmp_path, timeout=20)
    failures = "\n".join(f"{f.count}x {f.kind}: {f.message}" for f in report.failures.values())
    assert report.failed == 0, f"{report.line()}\n{failures}"
    assert report.tried == SLICES[reader]
    assert report.loaded > 0 and report.refused > 0  # the mutations neither all pass nor all break the file


def test_the_runner_reports_raw_exceptions_and_unnamed_files(tmp_path):
    from unigraph.errors import GraphError

    calls = []

    def load(path):
        calls.append(path)
        if len(calls) == 1:
            return  # the seed loads
        if len(path.read_bytes()) % 2:
            raise KeyError("types")
        raise GraphError("a message without the file's name")

    report = runner.run(Target("toy", lambda: [{"f.json": b'{"a": [1, 2, 3]}'}], load), 50, out=tmp_path)
    assert report.failed == 50 and report.loaded == report.refused == 0
    assert {k.split(" at ")[0] for k in report.failures} == {"KeyError", "GraphError without the file name"}
    assert all(f.reproducer is not None and (f.reproducer / "f.json").exists() for f in report.failures.values())


# ---- the defect classes found, one input each ------------------------------------------------------------


def _safetensors(tmp_path, header: dict, body: bytes = b"") -> str:
    path = tmp_path / "t.safetensors"
    path.write_bytes(join_safetensors(header, body))
    return path


@pytest.mark.parametrize(
    "entry",
    [
        {"dtype": "F32", "shape": [0, 2**62], "data_offsets": [0, 0]},  # NumPy cannot even shape it
        {"dtype": "F32", "shape": [1] * 65, "data_offsets": [0, 4]},  # more dimensions than NumPy holds
        {"dtype": "F32", "shape": [1.0], "data_offsets": [0, 4]},
        {"dtype": "F32", "shape": [True], "data_offsets": [0, 4]},
        {"dtype": ["F32"], "shape": [1], "data_offsets": [0, 4]},
        {"dtype": "F32", "shape": [1], "data_offsets": [0, 4, 8]},
        "F32",
    ],
)
def test_safetensors_headers_that_broke_the_reader(tmp_path, entry):
    from unigraph.io.safetensors_file import SafetensorsFile

    path = _safetensors(tmp_path, {"t": entry}, bytes(4))
    with pytest.raises(CheckpointError, match=str(path)):
        SafetensorsFile(path)


def test_safetensors_metadata_must_be_strings(tmp_path):
    from unigraph.io.safetensors_file import SafetensorsFile

    path = _safetensors(tmp_path, {"__metadata__": {"graph": {"nested": 1}}})
    with pytest.raises(CheckpointError, match="object of strings"):
        SafetensorsFile(path)


@pytest.fixture(scope="module")
def bundle_bytes():
    (seed, _) = TARGETS["ug"].seeds()
    (data,) = seed.values()
    return data


def _edited_bundle(tmp_path, data: bytes, edit) -> str:
    header, body = split_safetensors(data)
    edit(header["__metadata__"])
    path = tmp_path / "m.ug"
    path.write_bytes(join_safetensors(header, body))
    return path


def _graph_edit(edit):
    def apply(metadata):
        graph = json.loads(metadata["graph"])
        edit(graph)
        metadata["graph"] = json.dumps(graph)

    return apply


@pytest.mark.parametrize(
    "edit",
    [
        lambda m: m.update(graph="{not json"),  # JSONDecodeError
        lambda m: m.update(version=""),  # int('') ValueError
        lambda m: m.update(param_map='[{"collection": "params"}]'),  # KeyError in ParamMap.from_json
        lambda m: m.update(metadata="[[1, 2, 3]]"),  # dict() of a list
        lambda m: m.pop("graph"),
        _graph_edit(lambda g: g.pop("types")),  # KeyError
        _graph_edit(lambda g: g.update(types=[])),  # AttributeError
        _graph_edit(lambda g: g["nodes"][0].update(source="x")),  # Source(**"x"): TypeError
        _graph_edit(lambda g: g["nodes"][0].update(outputs=[["a"]])),  # unhashable list
        _graph_edit(lambda g: g.update(input_tree={"kind": "tuple", "items": "ab"})),  # tree.py TypeError
        _graph_edit(lambda g: g["variables"].update({k: 0 for k in g["variables"]})),  # int not subscriptable
        _graph_edit(lambda g: next(iter(g["types"].values())).update(dtype="object")),
        _graph_edit(lambda g: next(iter(g["types"].values())).update(shape=[2**62, -1])),
    ],
)
def test_bundles_that_broke_the_reader(tmp_path, bundle_bytes, edit):
    from unigraph.io import bundle

    path = _edited_bundle(tmp_path, bundle_bytes, edit)
    with pytest.raises(CheckpointError, match=str(path)):
        bundle.load(path)


def test_bundle_variables_must_match_the_graph(tmp_path, bundle_bytes):
    from unigraph.io import bundle

    header, body = split_safetensors(bundle_bytes)
    name = next(k for k in header if k.startswith("variables/"))
    header[name.replace("variables/", "variables/x/")] = header.pop(name)  # the graph's variable is gone
    path = tmp_path / "m.ug"
    path.write_bytes(join_safetensors(header, body))
    with pytest.raises(CheckpointError, match="is not in the file"):
        bundle.load(path)


def test_shard_index_naming_files_elsewhere_is_refused(tmp_path):
    from unigraph.cli.checkpoints import open_checkpoint

    index = tmp_path / "model.safetensors.index.json"
    for shard in ("../outside.safetensors", "model.safetensors.index.json", 3):
        index.write_text(json.dumps({"weight_map": {"w": shard}}))
        with pytest.raises(CheckpointError, match=str(index)):
            open_checkpoint(tmp_path)


def test_hf_config_claiming_a_huge_model_is_refused_before_building(tmp_path):
    import torch  # noqa: F401  (before transformers pulls in TensorFlow)

    from unigraph.cli import sources

    (seed, _) = TARGETS["hf"].seeds()
    for name, data in seed.items():
        (tmp_path / name).write_bytes(data)
    config = json.loads((tmp_path / "config.json").read_text())
    for key, value in (("num_hidden_layers", 10**30), ("hidden_size", 2**20)):
        (tmp_path / "config.json").write_text(json.dumps({**config, key: value}))
        with pytest.raises(CheckpointError, match="config.json"):
            sources.open_source(str(tmp_path))


def test_pt2_with_an_undecodable_member_name_is_refused(tmp_path):
    from unigraph.cli import sources

    (seed,) = TARGETS["pt2"].seeds()
    (data,) = seed.values()
    path = tmp_path / "m.pt2"
    at = data.rindex(b"archive_format")  # in the central directory, whose names are UTF-8
    path.write_bytes(data[:at] + b"archive_forma\x85" + data[at + 14 :])
    with pytest.raises(CheckpointError, match=str(path)):
        sources.open_source(str(path))


def test_header_length_past_the_limit(tmp_path):
    from unigraph.io.safetensors_file import SafetensorsFile

    path = tmp_path / "t.safetensors"
    path.write_bytes(struct.pack("<Q", 2**63) + b"{}")
    with pytest.raises(CheckpointError, match=str(path)):
        SafetensorsFile(path)
