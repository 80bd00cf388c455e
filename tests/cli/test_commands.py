"""``unigraph check``, ``unigraph inspect``, the help texts, refusing unsafe files, and errors on bad input.

Most tests run ``main([...])`` in this process; a few run the ``unigraph``
console script in a fresh process (``run_cli``): the version, the exit code
and stderr of an error as a shell sees them, and what needs a process of its
own (Keras on JAX, a Hugging Face folder's custom code).
"""

from __future__ import annotations

import errno
import inspect
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.numpy import save_file
from torch import nn

import unigraph
from tests.cli import models
from tests.cli.conftest import quiet, run_cli
from tests.cli.models import CNN
from unigraph.io.bundle import BundleBlueprint
from unigraph.cli import main

CNN_LINE = f"tests/cli/models.py:{inspect.getsourcelines(CNN.forward)[1] + 1}"  # CNN.forward's body (the path as torch recorded it)
DET_LINE = f"tests/cli/models.py:{inspect.getsourcelines(models.Unsupported.forward)[1] + 1}"


class TwoHeads(nn.Module):
    """Two outputs from one body: a weight of one head changes one output only."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Linear(6, 8)
        self.logits = nn.Linear(8, 3)
        self.score = nn.Linear(8, 1)

    def forward(self, x):
        h = torch.tanh(self.body(x))
        return {"logits": self.logits(h), "score": self.score(h)}


def two_heads():
    return TwoHeads().eval(), (torch.randn(4, 6),)


class Note:
    """A custom class: a file holding an instance of it needs arbitrary unpickling."""

    def __init__(self, text: str):
        self.text = text


def perturb(path: Path, suffix: str, delta: float = 0.5) -> str:
    """Adds ``delta`` to the one tensor of a safetensors file (a bundle too) whose name ends with ``suffix``."""
    with safe_open(str(path), "np") as f:
        metadata = f.metadata()
        tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 (a safe_open, not a dict)
    (name,) = [n for n in tensors if n.endswith(suffix)]
    tensors[name] = tensors[name] + np.asarray(delta, tensors[name].dtype)
    save_file(tensors, str(path), metadata=metadata)
    return name


def error_line(stderr: str, *names: str) -> str:
    """The one line of a command-line error; it starts with ``unigraph: error:`` and names ``names``."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert lines[0].startswith("unigraph: error: "), stderr
    for name in names:
        assert str(name) in lines[0], (name, stderr)
    return lines[0]


# ---- help, version, exit codes ----------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["", "convert", "check", "inspect", "translate"])
def test_every_help_has_examples_and_exit_codes(command, capsys):
    assert main([*command.split(), "--help"]) == 0
    text = capsys.readouterr().out
    assert "examples:" in text
    assert f"unigraph {command}".rstrip() + " " in text.split("examples:")[1]  # examples of this command
    codes = text.split("exit codes:")[1]
    for code, meaning in ((0, "success"), (1, "check failed"), (2, "input error"), (3, "cannot be converted"), (130, "interrupted")):
        assert f"  {code} " in codes and meaning in codes, (code, codes)


def test_version_help_and_usage_errors_from_the_shell():
    version = run_cli("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"unigraph {unigraph.__version__}"
    helped = run_cli("--help")
    assert helped.returncode == 0 and "exit codes:" in helped.stdout and quiet(helped.stderr)
    bare = run_cli()  # no command: the help, and the exit code of a usage error
    assert bare.returncode == 2 and "examples:" in bare.stderr
    wrong = run_cli("convert", "model.pt2", "--to", "onnx", "-o", "x")
    assert wrong.returncode == 2 and "invalid choice: 'onnx'" in wrong.stderr and "Traceback" not in wrong.stderr


# ---- check ----------------------------------------------------------------------------------------------------


def test_check_prints_a_row_per_output(tmp_path, capsys):
    out = tmp_path / "heads.ug"
    assert main(["convert", "tests.cli.test_commands:two_heads", "-o", str(out)]) == 0
    capsys.readouterr()
    assert main(["check", "tests.cli.test_commands:two_heads", str(out)]) == 0
    text = capsys.readouterr().out
    rows = {line.split()[0].strip("[']"): line for line in text.splitlines()[3:5]}  # paths as ['logits']
    assert text.splitlines()[1].split() == ["output", "shape", "dtype", "max", "abs", "max", "rel", "mismatch", "cosine"]
    assert rows["logits"].split()[1:3] == ["4x3", "float32"] and rows["logits"].endswith("ok")
    assert rows["score"].split()[1:3] == ["4x1", "float32"] and rows["score"].endswith("ok")
    assert "PASS: 2/2 outputs within tolerance" in text

    perturb(out, "params/score/kernel")  # one head's weight: that output fails, the other still passes
    assert main(["check", "tests.cli.test_commands:two_heads", str(out), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and report["divergence"] is None  # no --locate
    assert {o["path"].strip("[']"): o["ok"] for o in report["outputs"]} == {"logits": True, "score": False}
    assert report["outputs"][0]["shape"] == [4, 3] and report["outputs"][0]["max_abs"] < 1e-5


@pytest.mark.parametrize("fmt, weight", [("ug", "params/bn/scale"), ("safetensors", "params/bn/scale"), ("torch", "bn.weight")])
def test_check_locate_names_the_first_node_that_diverges(fmt, weight, pt2_file, tmp_path, capsys):
    out = tmp_path / f"cnn.{fmt}"
    assert main(["convert", str(pt2_file), "-o", str(out), "--to", fmt]) == 0
    assert main(["check", str(pt2_file), str(out), "--locate"]) == 0
    assert "PASS: 1/1" in capsys.readouterr().out

    perturb(out, weight)  # the batch norm's scale: conv, before it, still agrees
    assert main(["check", str(pt2_file), str(out), "--locate"]) == 1
    text = capsys.readouterr().out
    assert "FAIL: 0/1 outputs within tolerance" in text
    (line,) = [line for line in text.splitlines() if line.startswith("first divergence at ")]
    assert "= batch_norm(…)" in line and "in bn," in line and CNN_LINE in line, line

    assert main(["check", str(pt2_file), str(out), "--locate", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and report["candidate"] == f"{fmt} {out}"
    assert report["divergence"]["op"] == "batch_norm" and CNN_LINE in report["divergence"]["source"]


def test_check_locate_of_a_source_without_torch_says_so(ug_file, tmp_path, capsys):
    out = tmp_path / "cnn.safetensors"
    assert main(["convert", str(ug_file), "-o", str(out)]) == 0
    perturb(out, "params/head/bias")
    assert main(["check", str(ug_file), str(out), "--locate"]) == 1
    text = capsys.readouterr().out
    assert "FAIL: 0/1" in text and "this source is not one" in text


# ---- inspect ----------------------------------------------------------------------------------------------


def test_inspect_lists_inputs_outputs_parameters_and_ops(pt2_file, capsys):
    assert main(["inspect", str(pt2_file)]) == 0
    text = capsys.readouterr().out
    lines = [line.split() for line in text.splitlines()]
    assert ["x", "float32[batch,3,16,16]"] in lines[lines.index(["inputs:"]):]
    assert ["output", "float32[batch,5]"] in lines[lines.index(["outputs:"]):]
    params = sum(p.numel() for p in CNN().parameters())
    buffers = sum(b.numel() for b in CNN().buffers())
    assert f"parameters:  {params:,} parameters, {(params + buffers) * 4 / 1024:.1f} KiB in 9 tensors" in text
    histogram = dict(line for line in lines if len(line) == 2 and line[1].isdigit())
    assert histogram == {"conv": "1", "batch_norm": "1", "relu": "1", "reduce_mean": "1", "dense": "1"}
    assert "unsupported: none" in text


def test_inspect_lists_unsupported_ops_with_their_source_line():
    result = run_cli("inspect", "tests.cli.models:unsupported", "--input-shape", "2x3x3")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "x  float32[2,3,3]" in result.stdout  # the inputs it was traced with
    assert "1 op(s) have no unigraph translation" in result.stdout
    assert "_linalg_det" in result.stdout and DET_LINE in result.stdout
    assert quiet(result.stderr), result.stderr


def test_convert_of_unsupported_ops_fails_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "det.ug"
    assert main(["convert", "tests.cli.models:unsupported", "--input-shape", "2x3x3", "-o", str(out)]) == 3
    assert "_linalg_det" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


# ---- safety ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pickled(tmp_path_factory) -> dict[str, Path]:
    """CNN weights (seed 1) in torch files that plain ``weights_only`` loading refuses."""
    directory = tmp_path_factory.mktemp("pickled")
    state = CNN(seed=1).state_dict()
    torch.save({"state_dict": state, "note": Note("trained 3 epochs")}, directory / "custom_class.pt")
    torch.save({**state, "hook": models.cnn}, directory / "function.pt")
    torch.save({**state, "hook": shutil.rmtree}, directory / "blocked_module.pt")  # what an exploit calls
    return {p.stem: p for p in directory.iterdir()}


FACTORY = ["tests.cli.models:cnn", "--input-shape", "2x3x16x16"]


@pytest.mark.parametrize("name", ["custom_class", "function", "blocked_module"])
def test_torch_files_that_need_unpickling_are_refused(name, pickled, tmp_path, capsys):
    out = tmp_path / "cnn.ug"
    assert main(["convert", *FACTORY, "--weights", str(pickled[name]), "-o", str(out)]) == 2
    line = error_line(capsys.readouterr().err, pickled[name], "refused", "--trust-pickle")
    assert "unpickling" in line
    assert not out.exists()


def test_trust_pickle_accepts_a_file_with_a_custom_class(pickled, tmp_path, capsys):
    out = tmp_path / "cnn.ug"
    args = ["convert", *FACTORY, "--weights", str(pickled["custom_class"]), "-o", str(out), "--check", "--trust-pickle"]
    assert main(args) == 0, capsys.readouterr()
    loaded = unigraph.load(out)
    np.testing.assert_array_equal(
        np.asarray(loaded.variables["params"]["head"]["bias"]), CNN(seed=1).head.bias.detach().numpy()
    )


def test_torch_files_are_read_weights_only(factory_weights, monkeypatch, capsys):
    calls = []
    load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    assert main(["inspect", *FACTORY, "--weights", str(factory_weights["pt"])]) == 0
    assert calls and all(w is True for w in calls), calls


def test_a_hugging_face_bin_that_needs_unpickling_is_refused(hf_bin_folder, tmp_path, capsys):
    folder = tmp_path / "bert"
    folder.mkdir()
    shutil.copy(hf_bin_folder / "config.json", folder)
    state = torch.load(hf_bin_folder / "pytorch_model.bin", weights_only=True)
    torch.save({**state, "hook": models.cnn}, folder / "pytorch_model.bin")
    assert main(["convert", str(folder), "-o", str(tmp_path / "bert.ug")]) == 2
    error_line(capsys.readouterr().err, folder / "pytorch_model.bin", "refused", "--trust-pickle")
    assert not (tmp_path / "bert.ug").exists()


class Opens:
    """Unpickled, it creates a file: what a pickle that runs code on loading could do."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return open, (self.path, "w")


def test_a_pt2_whose_sample_inputs_run_code_is_refused_without_running_it(pt2_file, tmp_path, capsys):
    """torch.export.load retries a pickle that weights_only refuses with full unpickling: unigraph
    refuses such an archive before torch sees it."""
    import io
    import zipfile

    evil, marker = tmp_path / "evil.pt2", tmp_path / "ran"
    with zipfile.ZipFile(pt2_file) as source, zipfile.ZipFile(evil, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if "/data/sample_inputs/" in item.filename:
                buffer = io.BytesIO()
                torch.save(((Opens(str(marker)),), {}), buffer)
                data = buffer.getvalue()
            target.writestr(item, data)
    assert main(["convert", str(evil), "-o", str(tmp_path / "cnn.ug")]) == 2
    error_line(capsys.readouterr().err, evil, "refused", "--trust-pickle")
    assert not marker.exists() and not (tmp_path / "cnn.ug").exists()


FACTORY_FILE = """
import torch


def make():
    return torch.nn.Linear(4, 2).eval(), (torch.randn(2, 4),)
"""


def test_a_command_leaves_the_process_as_it_found_it(hf_folder, tmp_path, monkeypatch):
    """``main()`` called from Python: the environment, ``sys.path`` and torch's global generator are
    the caller's again when it returns (a factory imported from the current directory, Keras's
    backend chosen for the command, an architecture built with seeded random weights)."""
    import os
    import sys

    monkeypatch.chdir(tmp_path)
    (tmp_path / "local_models.py").write_text(FACTORY_FILE)
    arch, runs = tmp_path / "arch", tmp_path / "runs"
    arch.mkdir()
    shutil.copy(hf_folder / "config.json", arch)  # an architecture without weights: built with seeded random ones
    runs.mkdir()
    shutil.copytree(hf_folder, runs / "bert")
    environment, path = dict(os.environ), list(sys.path)
    assert main(["convert", "local_models:make", "-o", str(tmp_path / "linear.ug")]) == 0
    assert "local_models" in sys.modules
    generator = torch.random.get_rng_state()  # (the factory above draws its own weights from it)
    assert main(["translate", str(runs), "-o", str(tmp_path / "out"), "--arch", str(arch), "-j", "1", "-q"]) == 0
    assert (tmp_path / "out" / "bert.safetensors").is_file()
    assert dict(os.environ) == environment
    assert sys.path == path
    assert torch.equal(torch.random.get_rng_state(), generator)


CUSTOM_CODE = '''
from pathlib import Path

from transformers import BertForMaskedLM

Path({marker!r}).touch()  # proves this file ran


class CustomBert(BertForMaskedLM):
    """A Hugging Face folder's own model code."""
'''


def test_a_hugging_face_folder_with_custom_code_needs_trust_remote_code(hf_folder, tmp_path, capsys):
    folder, marker = tmp_path / "custom_bert", tmp_path / "custom_code_ran"
    shutil.copytree(hf_folder, folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(auto_map={"AutoModelForMaskedLM": "modeling_custom.CustomBert"}, architectures=["CustomBert"])
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "modeling_custom.py").write_text(CUSTOM_CODE.format(marker=str(marker)))

    assert main(["convert", str(folder), "-o", str(tmp_path / "bert.ug")]) == 2
    line = error_line(capsys.readouterr().err, folder / "config.json", "refused", "--trust-remote-code")
    assert "custom code" in line and "AutoModelForMaskedLM" in line
    assert not marker.exists() and not (tmp_path / "bert.ug").exists()

    # trusted: in a process of its own (transformers imports the folder's code), into a module cache of its own
    result = run_cli("inspect", folder, "--trust-remote-code", env={"HF_MODULES_CACHE": str(tmp_path / "modules")})
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith(f"{folder}: CustomBert (transformers ")
    assert "unsupported: none" in result.stdout and marker.exists()
    assert quiet(result.stderr), result.stderr


def test_a_keras_file_with_a_lambda_layer_needs_trust_remote_code(keras_files, tmp_path):
    lam, out = keras_files["lambda"], tmp_path / "lambda.ug"
    refused = run_cli("convert", lam, "-o", out)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    line = error_line(refused.stderr, lam, "refused", "--trust-remote-code")
    assert "Lambda" in line and "safe_mode" in line
    assert not out.exists()

    trusted = run_cli("inspect", lam, "--trust-remote-code")
    assert trusted.returncode == 0, trusted.stdout + trusted.stderr
    assert "mul" in trusted.stdout and "unsupported: none" in trusted.stdout


# ---- bad input --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bad(tmp_path_factory, factory_weights, ug_file) -> dict[str, Path]:
    """Damaged and wrong files: truncated, random bytes, text, a tensor of the wrong shape."""
    directory = tmp_path_factory.mktemp("bad")
    rng = np.random.default_rng(0)
    files = {
        "truncated.safetensors": factory_weights["safetensors"].read_bytes()[:1000],
        "truncated.ug": ug_file.read_bytes()[: ug_file.stat().st_size // 2],
        "truncated.pt": factory_weights["pt"].read_bytes()[:3000],
        "random.pt2": rng.bytes(4096),
        "random.ug": rng.bytes(4096),
        "random.pt": rng.bytes(4096),
        "random.safetensors": rng.bytes(4096),
        "notes.txt": b"not a model\n",
    }
    for name, data in files.items():
        (directory / name).write_bytes(data)
    state = CNN(seed=1).state_dict()
    state["head.weight"] = torch.zeros(5, 9)
    from safetensors.torch import save_file as save_torch

    save_torch(state, directory / "wrong_shape.safetensors")
    torch.save(state, directory / "wrong_shape.pt")
    return {p.name: p for p in directory.iterdir()} | {"missing.pt2": directory / "missing.pt2"}


BAD_SOURCES = [
    ("missing.pt2", "no such file"),
    ("truncated.ug", "truncated"),
    ("random.pt2", "not a .pt2 archive"),
    ("random.ug", "not a safetensors file"),
    ("notes.txt", "not a model unigraph reads"),
]
BAD_WEIGHTS = [
    ("truncated.safetensors", "truncated"),
    ("truncated.pt", "truncated or corrupt"),
    ("random.safetensors", "not a safetensors file"),
    ("random.pt", "not a readable torch checkpoint"),
    ("notes.txt", "not a checkpoint unigraph reads"),
    ("wrong_shape.safetensors", "tensor 'head.weight'"),
    ("wrong_shape.pt", "tensor 'head.weight'"),
]


@pytest.mark.parametrize(
    "name, problem, as_weights",
    [(n, p, False) for n, p in BAD_SOURCES] + [(n, p, True) for n, p in BAD_WEIGHTS],
)
def test_bad_input_is_one_line_naming_the_file_and_the_problem(name, problem, as_weights, bad, tmp_path, capsys):
    out = tmp_path / "out.ug"
    source = [*FACTORY, "--weights", str(bad[name])] if as_weights else [str(bad[name])]
    assert main(["convert", *source, "-o", str(out)]) == 2
    line = error_line(capsys.readouterr().err, bad[name], problem)
    if name.startswith("wrong_shape"):
        assert "expected shape [5, 8], found [5, 9]" in line
    assert list(tmp_path.iterdir()) == []  # no output, nothing half-written beside it


@pytest.mark.parametrize(
    "name, problem", [("missing.pt2", "no such file"), ("truncated.ug", "truncated"), ("notes.txt", "not an output")]
)
def test_check_of_a_bad_output_is_one_line(name, problem, bad, pt2_file, capsys):
    assert main(["check", str(pt2_file), str(bad[name])]) == 2
    error_line(capsys.readouterr().err, bad[name], problem)


def test_a_bad_file_from_the_shell_exits_2_with_one_line(bad, tmp_path):
    out = tmp_path / "out.ug"
    result = run_cli("convert", *FACTORY, "--weights", bad["wrong_shape.safetensors"], "-o", out)
    assert result.returncode == 2 and result.stdout == ""
    line = error_line(result.stderr, bad["wrong_shape.safetensors"])
    assert "tensor 'head.weight'" in line and "expected shape [5, 8], found [5, 9]" in line
    assert not out.exists()


# ---- outputs: complete or untouched ---------------------------------------------------------------------------


def test_an_existing_output_is_refused_without_overwrite(pt2_file, tmp_path, capsys):
    out = tmp_path / "cnn.ug"
    out.write_bytes(b"precious")
    assert main(["convert", str(pt2_file), "-o", str(out)]) == 2
    error_line(capsys.readouterr().err, out, "already exists", "--overwrite")
    assert out.read_bytes() == b"precious" and list(tmp_path.iterdir()) == [out]

    assert main(["convert", str(pt2_file), "-o", str(out), "--overwrite"]) == 0
    assert unigraph.load(out).parameter_count() == sum(p.numel() for p in CNN().parameters())


@pytest.mark.parametrize("error, code", [(OSError(errno.ENOSPC, "No space left on device"), 2), (KeyboardInterrupt(), 130)])
@pytest.mark.parametrize("existing", [False, True])
def test_a_write_that_fails_midway_leaves_nothing(error, code, existing, pt2_file, tmp_path, monkeypatch, capsys):
    out = tmp_path / "cnn.ug"
    if existing:
        out.write_bytes(b"the previous output")

    def fail_midway(blueprint, f, specs, produce):
        f.write(b"\0" * 4096)
        raise error

    monkeypatch.setattr(BundleBlueprint, "write", fail_midway)
    assert main(["convert", str(pt2_file), "-o", str(out), "--overwrite"]) == code
    stderr = capsys.readouterr().err
    if code == 2:
        error_line(stderr, out, "No space left on device")
    assert list(tmp_path.iterdir()) == ([out] if existing else [])  # no staged file left beside it
    if existing:
        assert out.read_bytes() == b"the previous output"
