"""``unigraph translate``: a batch of checkpoints of one architecture, traced once, translated by its ParamMap.

The batch is 20 checkpoints of ``tests.cli.models.CNN`` (seeds 0-19) saved as
safetensors, two of them damaged (one truncated, one with a tensor of the wrong
shape). The command runs as from a shell (``run_cli``), killed midway with
SIGKILL and SIGINT; the manifest's bookkeeping runs in this process through
``unigraph.cli.translate``.

To have the kill land while files are staged and half-written, the killed runs
are slowed from the outside: ``tests/cli/slow_writes/sitecustomize.py``, first
on the ``PYTHONPATH`` of that ``unigraph`` process alone, makes every process
of the run (workers included) sleep ``SLOW_WRITES_DELAY_S`` seconds before each
file's first tensor, its header written (the product has no test hooks).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file
from safetensors.torch import save_file

import unigraph as ug
from tests.cli.conftest import REPO, UNIGRAPH, hf_model, read_json, run_cli
from tests.cli.models import CNN
from unigraph.cli import targets, translate
from unigraph.params import flatten_variables

N = 20
TRUNCATED, WRONG_SHAPE = 7, 13
GOOD = [k for k in range(N) if k not in (TRUNCATED, WRONG_SHAPE)]
ARCH = ["--arch", "tests.cli.models:cnn", "--input-shape", "2x3x16x16"]
SLOW_WRITES = Path(__file__).with_name("slow_writes")  # its sitecustomize.py slows each file's writing


def name(k: int) -> str:
    return f"run{k:02d}"


def state(k: int) -> dict[str, torch.Tensor]:
    return CNN(seed=k).state_dict()


@pytest.fixture(scope="module")
def conv():
    """The architecture as ``translate --arch tests.cli.models:cnn`` traces it."""
    return ug.from_torch(CNN().eval(), (torch.randn(2, 3, 16, 16),))


def expected(conv, k: int) -> dict[str, np.ndarray]:
    """The Flax variables of checkpoint ``k``, by the architecture's ParamMap."""
    return flatten_variables(conv.param_map.to_variables({n: t.numpy() for n, t in state(k).items()}))


@pytest.fixture(scope="module")
def batch(tmp_path_factory) -> Path:
    """20 checkpoints; number 7 cut short, number 13 with a head of the wrong shape."""
    folder = tmp_path_factory.mktemp("runs")
    for k in range(N):
        tensors = state(k)
        if k == WRONG_SHAPE:
            tensors["head.weight"] = torch.zeros(5, 9)
        save_file(tensors, folder / f"{name(k)}.safetensors")
    path = folder / f"{name(TRUNCATED)}.safetensors"
    path.write_bytes(path.read_bytes()[:-100])
    (folder / "notes.txt").write_text("not a checkpoint: ignored")
    return folder


def outputs(out: Path) -> dict[str, int]:
    """Every entry of an output folder, with its modification time."""
    return {p.name: p.stat().st_mtime_ns for p in out.iterdir()}


def assert_clean(out: Path, suffix: str = ".safetensors") -> None:
    """Nothing in the folder but outputs and the manifest: no staged leftovers."""
    names = set(os.listdir(out))
    assert names == {translate.MANIFEST, *(name(k) + suffix for k in GOOD)}, sorted(names)


def assert_digests(out: Path) -> None:
    """Each manifest line's sha256 of its output and of its input are those of the files' bytes (a folder
    input's: its weights file, or its shard index and shards as ``Checkpoint.sha256`` combines them)."""
    from unigraph.cli.checkpoints import open_checkpoint

    def sha256(path: Path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()

    entries = [json.loads(line) for line in (out / translate.MANIFEST).read_text().splitlines()]
    assert entries
    for entry in entries:
        assert entry["output_sha256"] == sha256(out / entry["output"]), entry["output"]
        source = Path(entry["input"])
        if source.is_file():
            assert entry["input_sha256"] == sha256(source), source
        else:
            with open_checkpoint(source) as ckpt:
                assert entry["input_sha256"] == ckpt.sha256(), source


def assert_failures(report: dict, batch: Path) -> None:
    failed = {Path(f["input"]).name: f["error"] for f in report["failed"]}
    assert sorted(failed) == [f"{name(TRUNCATED)}.safetensors", f"{name(WRONG_SHAPE)}.safetensors"]
    assert "truncated" in failed[f"{name(TRUNCATED)}.safetensors"]
    wrong = failed[f"{name(WRONG_SHAPE)}.safetensors"]
    assert "'head.weight'" in wrong and "[5, 8]" in wrong and "[5, 9]" in wrong, wrong
    assert str(batch) not in wrong  # the file is named once, by the report's "input"


# ---- the batch -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def first_and_second_run(batch, tmp_path_factory):
    out = tmp_path_factory.mktemp("flax") / "out"
    report = out.parent / "report.json"
    first = run_cli("translate", batch, "-o", out, *ARCH, "-j", "1", "--report", report)
    first_report, first_files = read_json(report), outputs(out)
    second = run_cli("translate", batch, "-o", out, *ARCH, "-j", "1", "--report", report)
    return out, (first, first_report, first_files), (second, read_json(report), outputs(out))


def test_a_batch_translates_the_good_checkpoints_and_reports_the_bad(batch, conv, first_and_second_run):
    out, (result, report, _), _ = first_and_second_run
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout.startswith(f"translated {len(GOOD)}, already complete 0, failed 2 of {N} checkpoint(s)")
    assert "GB/s" in result.stderr  # the progress line
    for k in (TRUNCATED, WRONG_SHAPE):
        assert f"unigraph: error: {batch / name(k)}.safetensors: " in result.stderr
    assert_clean(out)
    assert report["total"] == N and report["skipped"] == [] and report["to"] == "safetensors"
    assert sorted(Path(d["output"]).name for d in report["translated"]) == [f"{name(k)}.safetensors" for k in GOOD]
    assert report["input_bytes"] > 0 and report["gb_per_s"] is not None and report["cpu_seconds"] > 0
    assert_failures(report, batch)
    assert_digests(out)
    for k in GOOD:
        written, want = load_file(out / f"{name(k)}.safetensors"), expected(conv, k)
        assert sorted(written) == sorted(want)
        for key, value in want.items():
            np.testing.assert_array_equal(written[key], value, err_msg=f"{name(k)} {key}")


def test_the_outputs_are_what_from_torch_gives(first_and_second_run):
    """Independently of the ParamMap: the variables of a conversion of the checkpoint's own model."""
    out = first_and_second_run[0]
    for k in (0, GOOD[-1]):
        want = flatten_variables(ug.from_torch(CNN(seed=k).eval(), (torch.randn(1, 3, 16, 16),)).variables)
        written = load_file(out / f"{name(k)}.safetensors")
        assert written["params/conv/kernel"].shape == (3, 3, 3, 8)  # HWIO
        for key, value in want.items():
            np.testing.assert_array_equal(written[key], np.asarray(value), err_msg=key)


def test_a_rerun_translates_nothing_and_reports_the_same_failures(batch, first_and_second_run):
    out, (_, first_report, first_files), (result, report, files) = first_and_second_run
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.startswith(f"translated 0, already complete {len(GOOD)}, failed 2 of {N}")
    assert report["translated"] == []
    assert sorted(Path(p).name for p in report["skipped"]) == [f"{name(k)}.safetensors" for k in GOOD]
    assert report["failed"] == first_report["failed"]
    assert_failures(report, batch)
    assert files == first_files  # not one output rewritten
    lines = (out / translate.MANIFEST).read_text().splitlines()
    assert len(lines) == len(GOOD) and {json.loads(line)["output"] for line in lines} == {
        f"{name(k)}.safetensors" for k in GOOD
    }


# ---- killed midway ---------------------------------------------------------------------------------------------


def start(batch: Path, out: Path, *args, delay: float) -> subprocess.Popen:
    """``unigraph translate`` with each file sleeping ``delay`` s before its first tensor (``slow_writes``)."""
    path = os.pathsep.join(p for p in (str(SLOW_WRITES), os.environ.get("PYTHONPATH")) if p)
    return subprocess.Popen(
        [str(UNIGRAPH), "translate", str(batch), "-o", str(out), *ARCH, "-q", *map(str, args)],
        cwd=REPO, env={**os.environ, "PYTHONPATH": path, "SLOW_WRITES_DELAY_S": str(delay)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_as_from_a_shell,
    )


def _as_from_a_shell() -> None:
    """In the child: Ctrl-C delivered and handled by default, as a shell starts a command, whatever this test
    process blocked or ignored (in the full suite the xdist worker had SIGINT so, and the command inherited it
    and ran to the end)."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def staged(out: Path) -> dict[str, int]:
    """The staged outputs (``.run05.safetensors.1f2e3d4c.partial``) that hold bytes, with their sizes."""
    found = {}
    for n in os.listdir(out):
        if n.startswith(".") and n.endswith(".partial"):
            try:
                size = (out / n).stat().st_size
            except FileNotFoundError:  # committed or discarded meanwhile
                continue
            if size:
                found[n] = size
    return found


def output_of(staging: str) -> str:
    """``.run05.safetensors.1f2e3d4c.partial`` -> ``run05.safetensors``."""
    return staging[1:].rsplit(".", 2)[0]


def wait_in_flight(process: subprocess.Popen, out: Path, count: int, timeout: float = 120) -> set[str]:
    """Waits until ``count`` outputs are in place and a file is in flight (staged, its header written,
    the run still going); returns the outputs in flight."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if out.is_dir() and sum(not n.startswith(".") and n != translate.MANIFEST for n in os.listdir(out)) >= count:
            if in_flight := staged(out):
                return {output_of(n) for n in in_flight}
        assert process.poll() is None, process.communicate()
        time.sleep(0.02)
    process.kill()
    raise AssertionError(f"no {count} outputs and a file in flight in {timeout} s: {process.communicate()}")


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        for task in Path(f"/proc/{todo.pop()}/task").glob("*"):
            with open(task / "children") as f:
                children = [int(c) for c in f.read().split()]
            found += children
            todo += children
    return found


def alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def test_sigkill_midway_then_a_rerun_loses_nothing_and_redoes_nothing(batch, conv, tmp_path):
    """Killed with SIGKILL while two workers translate; the re-run (parallel too) finishes the rest."""
    out = tmp_path / "out"
    process = start(batch, out, "-j", "2", delay=0.4)
    wait_in_flight(process, out, 4)
    workers = descendants(process.pid)
    assert len(workers) >= 3, workers  # the forkserver, the two workers (and the resource tracker)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)  # the pipes close once every process holding them is gone
    deadline = time.monotonic() + 30
    while any(alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(p) for p in workers), "a worker outlived the killed run"
    before = {n: t for n, t in outputs(out).items() if not n.startswith(".") and n != translate.MANIFEST}
    assert 4 <= len(before) < len(GOOD)
    complete = (out / next(iter(before))).stat().st_size
    left = staged(out)
    assert any(size < complete for size in left.values()), (left, complete)  # killed with a file half-written
    assert not {output_of(n) for n in left} & set(before)
    (out / f".{name(GOOD[-1])}.safetensors.0badf00d.partial").write_bytes(b"half")  # as a kill mid-file leaves

    report = tmp_path / "report.json"
    result = run_cli("translate", batch, "-o", out, *ARCH, "-j", "2", "--report", report)
    assert result.returncode == 1, result.stdout + result.stderr
    done = read_json(report)
    skipped = {Path(p).stem for p in done["skipped"]}
    translated = {Path(d["input"]).stem for d in done["translated"]}
    assert skipped == {Path(n).stem for n in before}  # every output completed before the kill is kept...
    assert skipped | translated == {name(k) for k in GOOD} and not skipped & translated  # ...the rest done once
    after = outputs(out)
    assert {n: after[n] for n in before} == before  # not rewritten
    assert_clean(out)
    assert_failures(done, batch)
    for k in GOOD:
        written, want = load_file(out / f"{name(k)}.safetensors"), expected(conv, k)
        for key, value in want.items():
            np.testing.assert_array_equal(written[key], value, err_msg=f"{name(k)} {key}")


def test_ctrl_c_midway_stops_cleanly_and_a_rerun_finishes(batch, tmp_path):
    out = tmp_path / "out"
    process = start(batch, out, "-j", "1", delay=0.5)
    in_flight = wait_in_flight(process, out, 3)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stdout + stderr
    assert "unigraph: interrupted" in stderr and "Traceback" not in stderr
    names = os.listdir(out)
    assert not [n for n in names if n.startswith(".")], names  # the file in progress was discarded...
    before = {n: t for n, t in outputs(out).items() if n != translate.MANIFEST}
    assert not in_flight & set(before), (in_flight, sorted(before))  # ...not finished
    assert 3 <= len(before) < len(GOOD)

    result = run_cli("translate", batch, "-o", out, *ARCH, "-j", "1", "-q")
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.startswith(f"translated {len(GOOD) - len(before)}, already complete {len(before)}, failed 2")
    assert {n: outputs(out)[n] for n in before} == before
    assert_clean(out)


# ---- torch files, other formats --------------------------------------------------------------------------------


class Opens:
    """Unpickled, it opens (creates) a file: what a checkpoint that runs code on loading could do."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return open, (self.path, "w")


def test_torch_files_are_read_with_weights_only(tmp_path):
    """``--to torch`` gives back each source state dict bit for bit; a pickle that needs code is refused
    without running it, and read with --trust-pickle; a checkpoint of another architecture is refused."""
    runs, out, marker = tmp_path / "runs", tmp_path / "out", tmp_path / "ran"
    runs.mkdir()
    torch.save(state(1), runs / "plain.pt")
    torch.save({"state_dict": state(2), "args": argparse.Namespace(lr=0.1)}, runs / "training.pt")
    torch.save({"state_dict": state(3), "hook": Opens(str(marker))}, runs / "runs_code.pt")
    torch.save(CNN(seed=4), runs / "module.pt")
    other = state(5)
    other["head2.weight"] = torch.zeros(5, 8)
    save_file(other, runs / "other.safetensors")
    (runs / "garbage.bin").write_bytes(b"not a pickle at all" * 10)

    result = run_cli("translate", runs, "-o", out, *ARCH, "--to", "torch", "-j", "1")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert not marker.exists()  # nothing in the files ran
    errors = {line.split(": ")[2].split("/")[-1]: line for line in result.stderr.splitlines() if line.startswith("unigraph: error:")}
    assert sorted(errors) == ["garbage.bin", "module.pt", "other.safetensors", "runs_code.pt", "training.pt"], errors
    for refused in ("training.pt", "runs_code.pt", "module.pt"):
        assert "refused" in errors[refused] and "--trust-pickle" in errors[refused], errors[refused]
    assert "argparse.Namespace" in errors["training.pt"]
    assert "not a readable torch checkpoint (corrupt" in errors["garbage.bin"], errors["garbage.bin"]
    assert "unexpected tensor(s) 'head2.weight'" in errors["other.safetensors"]
    assert "another architecture" in errors["other.safetensors"]
    assert sorted(os.listdir(out)) == ["plain.safetensors", translate.MANIFEST]
    assert_digests(out)

    (runs / "runs_code.pt").unlink()
    result = run_cli("translate", runs, "-o", out, *ARCH, "--to", "torch", "-j", "1", "--trust-pickle")
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.startswith("translated 1, already complete 1, failed 3 of 5")
    assert "module.pt: holds a CNN, not a state dict" in result.stderr, result.stderr
    for k, stem in ((1, "plain"), (2, "training")):
        written = torch_load(out / f"{stem}.safetensors")
        want = state(k)
        assert sorted(written) == sorted(want)  # loads with strict=True
        for key, tensor in want.items():
            assert written[key].dtype == tensor.dtype and torch.equal(written[key], tensor), key
    CNN().load_state_dict(torch_load(out / "training.safetensors"), strict=True)


def test_a_hugging_face_architecture_and_checkpoints(hf_folder, tmp_path):
    """ARCH: a folder with a config.json alone; checkpoints: a sharded save_pretrained folder, an unsharded
    one, a safetensors file with the tied weight stored once, a pytorch_model.bin state dict."""
    from safetensors.torch import save_model

    arch, runs, out = tmp_path / "arch", tmp_path / "runs", tmp_path / "out"
    arch.mkdir()
    (arch / "config.json").write_text((hf_folder / "config.json").read_text())
    hf_model(1).save_pretrained(runs / "one", max_shard_size="20KB")
    hf_model(4).save_pretrained(runs / "four")
    save_model(hf_model(2), str(runs / "two.safetensors"))
    torch.save(hf_model(3).state_dict(), runs / "three.bin")

    result = run_cli("translate", runs, "-o", out, "--arch", arch, "--to", "torch", "-j", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("translated 4, already complete 0, failed 0 of 4")
    for k, stem in ((1, "one"), (2, "two"), (3, "three"), (4, "four")):
        written, want = torch_load(out / f"{stem}.safetensors"), hf_model(k).state_dict()
        assert sorted(written) == sorted(want)  # tied names included: loads with strict=True
        for key, tensor in want.items():
            assert torch.equal(written[key], tensor), f"{stem} {key}"
    assert_digests(out)


def torch_load(path: Path) -> dict:
    from safetensors.torch import load_file as load_torch

    return load_torch(path)


def test_bundles_and_orbax_checkpoints(batch, conv, tmp_path):
    """--to ug and --to orbax through the API (the command line runs the same ``translate``)."""
    import jax
    import orbax.checkpoint as ocp

    blueprint = targets.Blueprint(conv)
    inputs = [batch / f"{name(k)}.safetensors" for k in (0, 5, TRUNCATED)]
    x = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)
    for fmt in ("ug", "orbax"):
        out = tmp_path / fmt
        summary = translate.translate(blueprint, fmt, inputs, out)
        assert [Path(f["input"]).stem for f in summary.failed] == [name(TRUNCATED)]
        assert sorted(os.listdir(out)) == [f"{name(0)}.{fmt}", f"{name(5)}.{fmt}", translate.MANIFEST]
        for k in (0, 5):
            path = out / f"{name(k)}.{fmt}"
            if fmt == "ug":
                loaded = ug.load(path)
                got = flatten_variables(loaded.variables)
                with torch.no_grad():
                    want_y = CNN(seed=k).eval()(torch.from_numpy(x)).numpy()
                np.testing.assert_allclose(np.asarray(loaded(x)), want_y, rtol=1e-4, atol=1e-5)
            else:
                like = jax.tree.map(ocp.utils.to_shape_dtype_struct, conv.variables)
                got = flatten_variables(ocp.StandardCheckpointer().restore(path.absolute(), like))
            for key, value in expected(conv, k).items():
                np.testing.assert_array_equal(np.asarray(got[key]), value, err_msg=f"{fmt} {name(k)} {key}")
        again = translate.translate(blueprint, fmt, inputs, out)
        assert (again.done, len(again.skipped)) == ([], 2)


# ---- the manifest ----------------------------------------------------------------------------------------------


def test_the_manifest_redoes_what_changed_and_nothing_else(batch, conv, tmp_path):
    blueprint = targets.Blueprint(conv)
    runs, out = tmp_path / "runs", tmp_path / "out"
    runs.mkdir()
    for k in range(4):
        (runs / f"{name(k)}.safetensors").write_bytes((batch / f"{name(k)}.safetensors").read_bytes())
    inputs = translate.discover(str(runs))
    assert len(translate.translate(blueprint, "safetensors", inputs, out).done) == 4

    save_file(state(9), runs / f"{name(1)}.safetensors")  # another checkpoint under the same name
    (out / f"{name(2)}.safetensors").write_bytes(b"damaged")  # an output changed since
    os.utime(runs / f"{name(3)}.safetensors")  # touched, same bytes: still complete
    with open(out / translate.MANIFEST, "a") as f:
        f.write('{"output": "run00.safe')  # a line cut short by a kill
    summary = translate.translate(blueprint, "safetensors", inputs, out)
    assert sorted(Path(d["input"]).stem for d in summary.done) == [name(1), name(2)]
    assert sorted(Path(p).stem for p in summary.skipped) == [name(0), name(3)]
    written = load_file(out / f"{name(1)}.safetensors")
    for key, value in expected(conv, 9).items():
        np.testing.assert_array_equal(written[key], value, err_msg=key)
    manifest = (out / translate.MANIFEST).read_text().splitlines()
    assert len(manifest) == 4 and all(json.loads(line) for line in manifest)

    (out / f"{name(4)}.safetensors").write_bytes(b"someone else's file")  # not in the manifest
    save_file(state(4), runs / f"{name(4)}.safetensors")
    summary = translate.translate(blueprint, "safetensors", translate.discover(str(runs)), out)
    assert [f["error"] for f in summary.failed] == [
        f"{out / name(4)}.safetensors exists and is not in the manifest; pass --overwrite to replace it"
    ]
    assert (out / f"{name(4)}.safetensors").read_bytes() == b"someone else's file"
    summary = translate.translate(blueprint, "safetensors", translate.discover(str(runs)), out, overwrite=True)
    assert [Path(d["input"]).stem for d in summary.done] == [name(4)] and not summary.failed


def test_inputs_by_glob_and_an_output_folder_inside_the_inputs(batch, conv, tmp_path):
    blueprint = targets.Blueprint(conv)
    runs = tmp_path / "runs"
    runs.mkdir()
    for k in (0, 1):
        (runs / f"{name(k)}.safetensors").write_bytes((batch / f"{name(k)}.safetensors").read_bytes())
    out = runs / "flax"
    first = translate.translate(blueprint, "safetensors", translate.discover(str(runs / "**/*.safetensors")), out)
    assert len(first.done) == 2
    again = translate.discover(str(runs / "**/*.safetensors"))
    assert len(again) == 4  # the glob now matches the outputs too...
    summary = translate.translate(blueprint, "safetensors", again, out)
    assert (summary.total, summary.done, len(summary.skipped), summary.failed) == (2, [], 2, [])  # ...not translated


def test_usage_errors_are_one_line(batch, tmp_path):
    result = run_cli("translate", tmp_path / "nothing-here", "-o", tmp_path / "out", *ARCH)
    assert result.returncode == 2 and result.stderr.startswith("unigraph: error: ") and "Traceback" not in result.stderr
    assert "no such file or directory" in result.stderr
    assert not (tmp_path / "out").exists()
