"""The rules of the layout, enforced (DEVELOPERS.md, "Layout"): arrows go cli → frontends/backends → core.

- The core (the ``unigraph/`` folder: everything ``import unigraph`` can load)
  imports no torch, tensorflow, keras or transformers anywhere, inside
  functions included, and no frontend, backend or command-line module at
  module level. Only ``api``, ``converted`` and ``checker`` reach frontends
  and backends, lazily, as the documented entry points.
- Each core module imports first in a process of its own (so no import cycle
  hides behind the order the others happen to load in) and leaves none of
  those packages loaded.
- ``unigraph --help`` and every ``unigraph COMMAND --help`` answer without
  JAX or torch.
"""

from __future__ import annotations

import ast
import concurrent.futures
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import unigraph

CORE = Path(unigraph.__file__).parent
FRAMEWORKS = ("torch", "tensorflow", "keras", "transformers")
OUTER = ("unigraph.frontends", "unigraph.backends", "unigraph.cli")
ENTRY_POINTS = ("unigraph.api", "unigraph.converted", "unigraph.checker")
COMMANDS = ("convert", "check", "inspect", "translate")


def core_modules() -> list[str]:
    names = ["unigraph"] + [m.name for m in pkgutil.walk_packages([str(CORE)], "unigraph.")]
    return sorted(n for n in names if not n.startswith(OUTER))


def imports(path: Path) -> list[tuple[str, bool, int]]:
    """Every module a file imports: its name, whether at module level, and the line."""
    tree = ast.parse(path.read_text(), str(path))
    top = {id(node) for node in tree.body} | {
        id(child) for node in tree.body if isinstance(node, ast.Try | ast.If) for child in ast.walk(node)
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in top, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [(f"{node.module}.{alias.name}", id(node) in top, node.lineno) for alias in node.names]
    return found


def module_name(path: Path) -> str:
    parts = path.relative_to(CORE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_the_core_imports_no_framework_and_nothing_outside_it():
    problems = []
    files = sorted(CORE.rglob("*.py"))
    assert len(files) > 30
    for path in files:
        name = module_name(path)
        for imported, at_top, line in imports(path):
            where = f"{path.relative_to(CORE.parent)}:{line} imports {imported}"
            if imported.partition(".")[0] in FRAMEWORKS:
                problems.append(where)
            elif imported.startswith(OUTER) and (at_top or name not in ENTRY_POINTS or imported.startswith("unigraph.cli")):
                problems.append(where + (" at module level" if at_top else f" (only {', '.join(ENTRY_POINTS)} may, lazily)"))
    assert not problems, "\n".join(problems)


IMPORT_ALONE = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
print(json.dumps(sorted(m for m in sys.modules if m.partition(".")[0] in {frameworks} or m.startswith({outer}))))
"""


def import_alone(name: str) -> tuple[str, subprocess.CompletedProcess]:
    code = IMPORT_ALONE.format(frameworks=set(FRAMEWORKS), outer=OUTER)
    return name, subprocess.run([sys.executable, "-c", code, name], capture_output=True, text=True, timeout=300)


def test_each_core_module_imports_alone_and_loads_no_framework():
    modules = core_modules()
    assert {"unigraph.ir", "unigraph.checker", "unigraph.io.bundle", "unigraph.ops.conv"} <= set(modules)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = dict(pool.map(import_alone, modules))
    failed = {name: r.stderr.strip().splitlines()[-1:] for name, r in results.items() if r.returncode != 0}
    assert not failed, failed
    loaded = {name: json.loads(r.stdout) for name, r in results.items() if json.loads(r.stdout)}
    assert not loaded, loaded


HELP = """
import contextlib, io, json, sys
from unigraph.cli import main
with contextlib.redirect_stdout(io.StringIO()) as out:
    code = main(sys.argv[1:])
print(json.dumps({"code": code, "help": out.getvalue(), "loaded": sorted(m for m in ("jax", "torch", "tensorflow", "keras", "numpy") if m in sys.modules)}))
"""


@pytest.mark.parametrize("command", [(), *((c,) for c in COMMANDS)], ids=lambda c: " ".join(c) or "unigraph")
def test_help_loads_neither_jax_nor_torch(command):
    result = subprocess.run([sys.executable, "-c", HELP, *command, "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["code"] == 0 and "usage: unigraph" in answer["help"] and "exit codes:" in answer["help"]
    assert answer["loaded"] == []


def test_the_console_script_and_python_m_print_help():
    for command in ([str(Path(sys.executable).with_name("unigraph")), "--help"], [sys.executable, "-m", "unigraph.cli", "--help"]):
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0 and result.stdout.startswith("usage: unigraph"), result.stderr
