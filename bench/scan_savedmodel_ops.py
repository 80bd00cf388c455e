"""Which ops give a SavedModel that TensorFlow cannot run: every op of the registry, through to_savedmodel.

For each registered op, the first numeric case of ``tests/ops`` that names it
(``--all``: every case) is converted from torch as the op tests convert it
(dimension 0 dynamic unless the case says otherwise), and

- its JAX function is exported with ``jax.export`` (the inputs' symbolic
  shapes, as the SavedModel backend lowers it) and the StableHLO searched
  for composites, which TensorFlow's older StableHLO cannot read as written;
- it is written with ``conv.to_savedmodel``, which rewrites the StableHLO for
  the installed TensorFlow and loads and calls the SavedModel in a
  TensorFlow process before it is renamed into place: the case passes when
  the SavedModel is written.

Prints one line per case and a summary; ``--json`` writes the rows.
``--without-rewrite`` writes the StableHLO as jax serializes it (the
backend's rewrite skipped), to see what fails without it.

    python bench/scan_savedmodel_ops.py                  # one case per op (~150 cases, minutes)
    python bench/scan_savedmodel_ops.py --ops top_k sort # those ops' first cases
    python bench/scan_savedmodel_ops.py --all --json scan.json
    python bench/scan_savedmodel_ops.py --without-rewrite --ops acos erf top_k
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402  (before TensorFlow: see unigraph/native_order.py)

import tests.ops  # noqa: E402
from tests.ops.harness import Case, _Fn, _inputs  # noqa: E402

import jax  # noqa: E402

import unigraph as ug  # noqa: E402
from unigraph.backends import stablehlo_compat  # noqa: E402
from unigraph.dtypes import jax_dtype  # noqa: E402
from unigraph.errors import first_line  # noqa: E402
from unigraph.flax import run as run_graph  # noqa: E402
from unigraph.ops import REGISTRY  # noqa: E402


def cases() -> list[Case]:
    """Every non-xfail case of the op tests (as tests/ops/test_coverage.py finds them)."""
    found = []
    for info in pkgutil.iter_modules(tests.ops.__path__):
        if info.name.startswith("test_") and info.name not in ("test_coverage", "test_signatures"):
            module = importlib.import_module(f"tests.ops.{info.name}")
            for value in vars(module).values():
                if isinstance(value, list) and value and all(isinstance(c, Case) for c in value):
                    found += [c for c in value if not c.xfail]
    return found


def choose(all_cases: list[Case], ops: list[str] | None, every: bool) -> list[Case]:
    if every:
        return [c for c in all_cases if not ops or set(c.ops) & set(ops)]
    chosen = {}
    for op in ops or REGISTRY.names():
        case = next((c for c in all_cases if op in c.ops), None)
        if case is not None:
            chosen.setdefault(case.id, case)
    return list(chosen.values())


def composites(conv) -> list[str]:
    """The names of the composites in the StableHLO that jax exports for the graph, in order."""
    graph = conv.graph
    scope = jax.export.SymbolicScope()
    specs = [
        jax.ShapeDtypeStruct(
            jax.export.symbolic_shape(", ".join(map(str, graph.types[n].shape)), scope=scope)
            if graph.types[n].shape else (),
            jax_dtype(graph.types[n].dtype),
        )
        for n in graph.inputs
    ]

    def apply(variables, *inputs):
        return run_graph(graph, variables, list(inputs), conv.precision)

    exported = jax.export.export(jax.jit(apply))(conv.variables, *specs)
    text = exported.mlir_module()
    return sorted({line.split('"')[1] for line in text.splitlines() if "stablehlo.composite " in line})


def scan(case: Case, directory: Path) -> dict:
    torch.manual_seed(0)
    module = case.fn if isinstance(case.fn, torch.nn.Module) else _Fn(case.fn)
    module.eval()
    row = {"case": case.id, "ops": list(case.ops)}
    try:
        conv = ug.from_torch(module, tuple(_inputs(case)), dynamic_shapes="batch" if case.dynamic else None)
    except Exception as error:  # a case the torch frontend cannot convert here says nothing about TensorFlow
        return {**row, "status": "skipped", "reason": f"conversion: {first_line(error)}"}
    row["composites"] = composites(conv)
    start = time.perf_counter()
    try:
        conv.to_savedmodel(directory / case.id.replace("/", "_"))
    except Exception as error:
        return {**row, "status": "fails", "reason": f"{type(error).__name__}: {first_line(error)}"}
    return {**row, "status": "runs", "save_s": round(time.perf_counter() - start, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ops", nargs="*", help="only cases naming these ops")
    parser.add_argument("--all", action="store_true", help="every case, not one per op")
    parser.add_argument("--json", type=Path, help="write the rows here")
    parser.add_argument("--without-rewrite", action="store_true", help="skip the rewrite for TensorFlow")
    args = parser.parse_args()
    if args.without_rewrite:
        stablehlo_compat.rewrite_savedmodel = lambda directory: 0
    chosen = choose(cases(), args.ops, args.all)
    print(f"TensorFlow reads StableHLO {stablehlo_compat.tensorflow_version()}; {len(chosen)} cases")
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for case in chosen:
            row = scan(case, Path(scratch))
            rows.append(row)
            extra = f" composites {row['composites']}" if row.get("composites") else ""
            print(f"{row['status']:8} {case.id:40} {row.get('reason', '')}{extra}", flush=True)
    counts = {s: sum(r["status"] == s for r in rows) for s in ("runs", "fails", "skipped")}
    lowered = sorted({c for r in rows for c in r.get("composites", [])})
    print(f"\n{counts}; composites: {lowered or 'none'}")
    for r in rows:
        if r["status"] == "fails":
            print(f"  {r['case']} ({', '.join(r['ops'])}): {r['reason']}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
