"""Where conversion time goes: ``from_torch`` stage by stage, the first compile, and ``to_savedmodel``.

Per model, in one run: ``torch.export``; decomposition (``decompose`` and the
check for unsupported ops); translation (the handlers and the graph, less
the next column); type inference (each node's output types) and
reconciliation (each node's types checked against torch's); the rest of
``from_torch`` (the ``Converted`` and its variables); the first call's JAX
trace and lowering, and XLA's compile; and ``to_savedmodel``. Stages are timed
by wrapping the frontend's own stage functions, so ``from_torch`` itself is
what runs. ``own/export`` is unigraph's part of ``from_torch`` (everything
but ``torch.export``) over ``torch.export``'s time.

Every model is converted ``--repeats`` times, the models taking turns, and
each stage reports its fastest run: the machine's load changes during a run
and the minimum is the least disturbed figure. The models are
bench_spine.py's, plus MobileNet-V2 (random weights).

    python bench/bench_convert.py                                   # the default models
    python bench/bench_convert.py --models resnet50 --repeats 3 --no-savedmodel
    python bench/bench_convert.py --write bench/results/convert.md  # also as a Markdown table
    python bench/bench_convert.py --profile /tmp/prof               # cProfile of from_torch and to_savedmodel
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

import unigraph as ug
from bench_spine import _image, _models
from unigraph import signature
from unigraph.converted import host_arrays
from unigraph.frontends import builder, torch_export
import unigraph.backends.savedmodel  # noqa: F401  (loads triton, then TensorFlow: see there)

DEFAULT_MODELS = ["resnet18", "resnet50", "mobilenet_v2", "bert_base"]
STAGES = [
    ("export", "torch.export"),
    ("decompose", "decomposition"),
    ("translate", "translation"),
    ("infer", "type inference"),
    ("reconcile", "reconciliation"),
    ("rest", "rest of from_torch"),
    ("lower", "first call: trace+lower"),
    ("compile", "first call: XLA compile"),
    ("savedmodel", "to_savedmodel"),
]
OWN = ("decompose", "translate", "infer", "reconcile", "rest")


def models() -> dict[str, Callable]:
    import torchvision.models as tvm

    return {**_models(), "mobilenet_v2": lambda: (tvm.mobilenet_v2(), _image())}


class StageClock:
    """Accumulates the time spent in wrapped functions, by stage name, while installed."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    def wrap(self, stage: str, fn: Callable) -> Callable:
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start

        return timed

    @contextlib.contextmanager
    def installed(self):
        """The frontend's stage functions wrapped (module attributes: the frontend calls them by name)."""
        patches = [
            (torch_export, "export", "export"),
            (torch_export, "decompose", "decompose"),
            (torch_export, "unsupported_ops", "decompose"),
            (torch_export, "translate", "translate"),
            (torch_export, "_reconcile", "reconcile"),
            (builder, "infer_types", "infer"),
        ]
        saved = [(module, name, getattr(module, name)) for module, name, _ in patches]
        for module, name, stage in patches:
            setattr(module, name, self.wrap(stage, getattr(module, name)))
        try:
            yield self
        finally:
            for module, name, fn in saved:
                setattr(module, name, fn)


def measure(model, args, kwargs, directory: Path, savedmodel: bool, profile: Path | None, label: str) -> dict:
    """One conversion: seconds per stage (``translate`` excludes type inference and reconciliation)."""
    clock = StageClock()
    profiler = cProfile.Profile() if profile else None
    with clock.installed():
        start = time.perf_counter()
        if profiler:
            profiler.enable()
        conv = ug.from_torch(model, args, kwargs)
        if profiler:
            profiler.disable()
            profiler.dump_stats(profile / f"{label}.from_torch.prof")
        total = time.perf_counter() - start
    s = clock.seconds
    s["translate"] -= s.get("infer", 0.0) + s.get("reconcile", 0.0)
    s["rest"] = total - sum(s.get(k, 0.0) for k in ("export", "decompose", "translate", "infer", "reconcile"))
    s["from_torch"] = total

    call_args, call_kwargs = host_arrays((args, kwargs))
    inputs = signature.bind(conv.graph, call_args, call_kwargs)
    start = time.perf_counter()
    lowered = conv._jitted.lower(conv.variables, inputs)
    s["lower"] = time.perf_counter() - start
    start = time.perf_counter()
    lowered.compile()
    s["compile"] = time.perf_counter() - start

    if savedmodel:
        path = directory / f"{label}.savedmodel"
        profiler = cProfile.Profile() if profile else None
        start = time.perf_counter()
        if profiler:
            profiler.enable()
        conv.to_savedmodel(path, overwrite=True)
        if profiler:
            profiler.disable()
            profiler.dump_stats(profile / f"{label}.to_savedmodel.prof")
        s["savedmodel"] = time.perf_counter() - start
    s["nodes"] = len(conv.graph.nodes)
    return s


def table(results: dict[str, dict], repeats: int) -> str:
    names = list(results)
    lines = [
        f"| stage | {' | '.join(names)} |",
        "|---|" + "---:|" * len(names),
    ]
    for key, title in STAGES:
        cells = []
        for name in names:
            r = results[name]
            if key not in r:
                cells.append("–")
                continue
            whole = sum(r.get(k, 0.0) for k, _ in STAGES)
            cells.append(f"{r[key]:.2f} s ({100 * r[key] / whole:.0f} %)")
        lines.append(f"| {title} | {' | '.join(cells)} |")
    for title, value in [
        ("from_torch", lambda r: f"{r['from_torch']:.2f} s"),
        ("own / export", lambda r: f"{sum(r[k] for k in OWN) / r['export']:.2f}"),
        ("to_savedmodel / from_torch", lambda r: f"{r['savedmodel'] / r['from_torch']:.2f}" if "savedmodel" in r else "–"),
        ("graph nodes", lambda r: str(r["nodes"])),
    ]:
        lines.append(f"| **{title}** | {' | '.join(value(results[n]) for n in names)} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch's intra-op threads (default: torch's)")
    parser.add_argument("--no-savedmodel", dest="savedmodel", action="store_false")
    parser.add_argument("--write", type=Path, help="also write the table as Markdown here")
    parser.add_argument("--profile", type=Path, help="write cProfile stats of every run here")
    options = parser.parse_args(argv)
    if options.threads:
        torch.set_num_threads(options.threads)
    if options.profile:
        options.profile.mkdir(parents=True, exist_ok=True)
    heading = (
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), jax {__import__('jax').__version__}, "
        f"{platform.processor() or platform.machine()}; the fastest of {options.repeats} runs per stage, "
        "the models taking turns"
    )
    print(heading, flush=True)
    built = {}
    for name in options.models:
        torch.manual_seed(0)
        model, make = models()[name]()
        built[name] = (model.eval(), *make(1))
    best: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(options.repeats):
            for name, (model, args, kwargs) in built.items():
                s = measure(model, args, kwargs, Path(tmp), options.savedmodel, options.profile, f"{name}.{repeat}")
                print(f"{name} run {repeat + 1}: " + ", ".join(f"{k} {v:.2f}" for k, v in s.items()), flush=True)
                best[name] = {k: min(v, best.get(name, {}).get(k, v)) for k, v in s.items()}
    text = table(best, options.repeats)
    print("\n" + text)
    if options.write:
        options.write.parent.mkdir(parents=True, exist_ok=True)
        options.write.write_text(f"# Conversion time by stage\n\n{heading}.\n\n{text}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
