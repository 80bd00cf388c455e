"""TF SavedModel backend: conversion time, and the SavedModel's latency against torch eager.

Per model: the time to convert with ``from_torch``, to write the SavedModel
(jax2tf lowering, forward and VJP, plus TensorFlow's save), and to load it;
then the median latency of torch eager and of the reloaded SavedModel's
``serving_default`` signature (what TF Serving runs), measured in the same
run on the same machine. The models are bench_spine.py's (random weights).

    python bench/bench_savedmodel.py                          # every model, batch 1
    python bench/bench_savedmodel.py --models resnet18 bert_base --batch 8
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

import unigraph as ug
from bench_spine import _models
import unigraph.backends.savedmodel  # noqa: F401  (loads triton, then TensorFlow)
from unigraph.signature import input_names as signature_input_names
from unigraph.signature import bind

import tensorflow as tf  # noqa: E402 (after the backend: see there)


def _interleaved(fns, repeats: int) -> list[float]:
    """Median wall time of each function in ms, after two warm-up calls, the runs alternating.

    Alternating keeps the comparison fair when the machine's load changes
    during the run.
    """
    for fn in fns:
        fn()
        fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, samples in zip(fns, times):
            start = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - start)
    return [statistics.median(samples) * 1e3 for samples in times]


def bench(name: str, batch: int, repeats: int, directory: Path) -> dict:
    torch.manual_seed(0)
    model, make = _models()[name]()
    model.eval()
    args, kwargs = make(batch)

    start = time.perf_counter()
    conv = ug.from_torch(model, args, kwargs)
    convert_s = time.perf_counter() - start
    start = time.perf_counter()
    path = conv.to_savedmodel(directory / name)
    save_s = time.perf_counter() - start
    start = time.perf_counter()
    serving = tf.saved_model.load(str(path)).signatures["serving_default"]
    load_s = time.perf_counter() - start

    inputs = {
        n: tf.constant(x) for n, x in zip(signature_input_names(conv.graph), bind(conv.graph, args, kwargs))
    }
    with torch.no_grad():
        eager_ms, savedmodel_ms = _interleaved(
            [lambda: model(*args, **kwargs), lambda: [t.numpy() for t in serving(**inputs).values()]], repeats
        )
    return dict(
        model=name, convert_s=convert_s, save_s=save_s, load_s=load_s,
        eager_ms=eager_ms, savedmodel_ms=savedmodel_ms,
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=None)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=20)
    options = parser.parse_args(argv)
    names = options.models or list(_models())
    print(
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), tensorflow {tf.__version__} "
        f"on {', '.join(d.device_type for d in tf.config.list_logical_devices())}"
    )
    print(f"batch {options.batch}, median of {options.repeats} runs\n")
    header = (
        f"{'model':20} {'convert s':>9} {'save s':>7} {'load s':>7} {'eager ms':>9} "
        f"{'savedmodel ms':>13} {'eager/sm':>8}"
    )
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as directory:
        for name in names:
            r = bench(name, options.batch, options.repeats, Path(directory))
            print(
                f"{r['model']:20} {r['convert_s']:9.1f} {r['save_s']:7.1f} {r['load_s']:7.1f} "
                f"{r['eager_ms']:9.2f} {r['savedmodel_ms']:13.2f} {r['eager_ms'] / r['savedmodel_ms']:8.2f}",
                flush=True,
            )
    print("\neager/sm > 1: the SavedModel (TensorFlow running the XLA-compiled graph) is faster than eager.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
