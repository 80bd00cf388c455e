"""Conversion time and inference latency: unigraph (jitted JAX) against torch eager and torch.compile.

Every figure is measured in the same run on the same machine, so the ratios
are the result; absolute times depend on the machine. Models are built with
random weights (no download).

``floor ms`` is the model's float32 work (XLA's count of its FLOPs) at the
fastest float32 matrix multiply this machine runs (the best of torch and XLA
on 2048x2048 matrices, measured first): no float32 implementation runs the
model faster, so ``eager/floor`` bounds what ``eager/ug`` can reach.

    python bench/bench_spine.py                     # every model, batch 1
    python bench/bench_spine.py --models bert_base resnet50 --batch 8
    python bench/bench_spine.py --no-compile        # skip torch.compile (slow to compile on CPU)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import jax
import torch

import unigraph as ug


def _image(size=224):
    return lambda batch: ((torch.randn(batch, 3, size, size),), {})


def _tokens(seq=128, vocab=1000, decoder=False):
    def make(batch):
        ids = torch.randint(0, vocab, (batch, seq))
        kwargs = {"input_ids": ids, "attention_mask": torch.ones(batch, seq, dtype=torch.long)}
        if decoder:
            kwargs["decoder_input_ids"] = ids[:, : seq // 2]
        return (), kwargs

    return make


def _models() -> dict[str, Callable[[], tuple[torch.nn.Module, Callable]]]:
    import torchvision.models as tvm
    import transformers as hf

    small = dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024)

    def mlp():
        model = torch.nn.Sequential(torch.nn.Linear(256, 512), torch.nn.ReLU(), torch.nn.Linear(512, 10))
        return model, lambda batch: ((torch.randn(batch, 256),), {})

    def lstm():
        class Model(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.lstm = torch.nn.LSTM(64, 128, num_layers=2, batch_first=True)

            def forward(self, x):
                return self.lstm(x)[0]

        return Model(), lambda batch: ((torch.randn(batch, 32, 64),), {})

    return {
        "mlp": mlp,
        "lstm": lstm,
        "resnet18": lambda: (tvm.resnet18(), _image()),
        "resnet50": lambda: (tvm.resnet50(), _image()),
        "mobilenet_v3_small": lambda: (tvm.mobilenet_v3_small(), _image()),
        "efficientnet_b0": lambda: (tvm.efficientnet_b0(), _image()),
        "convnext_tiny": lambda: (tvm.convnext_tiny(), _image()),
        "vit_b_16": lambda: (tvm.vit_b_16(), _image()),
        "bert_base": lambda: (hf.BertModel(hf.BertConfig()), _tokens(vocab=30522)),
        "gpt2": lambda: (hf.GPT2Model(hf.GPT2Config(use_cache=False, **_gpt2(small))), _tokens()),
        "llama": lambda: (
            hf.LlamaModel(hf.LlamaConfig(use_cache=False, num_key_value_heads=2, **small)),
            _tokens(),
        ),
        "t5": lambda: (
            hf.T5Model(hf.T5Config(use_cache=False, d_model=256, d_ff=1024, num_layers=4, num_heads=4)),
            _tokens(decoder=True),
        ),
    }


def _gpt2(small):
    return dict(n_embd=small["hidden_size"], n_layer=small["num_hidden_layers"], n_head=small["num_attention_heads"])


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn`` in milliseconds, after two warm-up calls."""
    fn()
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def peak_gflops(size: int = 2048) -> float:
    """The fastest float32 matrix multiply here, torch's or XLA's, in GFLOP/s."""
    a = torch.randn(size, size)
    b = torch.randn(size, size)
    ja, jb = jax.numpy.asarray(a.numpy()), jax.numpy.asarray(b.numpy())
    matmul = jax.jit(jax.numpy.matmul)
    with torch.no_grad():
        torch_ms = median_ms(lambda: a @ b, 10)
    xla_ms = median_ms(lambda: jax.block_until_ready(matmul(ja, jb)), 10)
    return 2 * size**3 / min(torch_ms, xla_ms) / 1e6


def bench(name: str, batch: int, repeats: int, compile_torch: bool, peak: float) -> dict:
    torch.manual_seed(0)
    model, make = _models()[name]()
    model.eval()
    args, kwargs = make(batch)

    start = time.perf_counter()
    conv = ug.from_torch(model, args, kwargs)
    convert_s = time.perf_counter() - start
    np_args = [a.numpy() for a in args]
    np_kwargs = {k: v.numpy() for k, v in kwargs.items()}

    def run_jax():
        jax.block_until_ready(conv(*np_args, **np_kwargs))

    with torch.no_grad():
        eager_ms = median_ms(lambda: model(*args, **kwargs), repeats)
        compiled_ms = float("nan")
        if compile_torch:
            compiled = torch.compile(model)
            compiled_ms = median_ms(lambda: compiled(*args, **kwargs), repeats)
    jax_ms = median_ms(run_jax, repeats)
    flops = jax.jit(lambda: conv(*np_args, **np_kwargs)).lower().cost_analysis()["flops"]
    return dict(
        model=name,
        convert_s=convert_s,
        eager_ms=eager_ms,
        compiled_ms=compiled_ms,
        jax_ms=jax_ms,
        floor_ms=flops / peak / 1e6,
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(_models()))
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--no-compile", dest="compile", action="store_false")
    options = parser.parse_args(argv)
    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads), jax {jax.__version__} on {jax.devices()[0]}")
    peak = peak_gflops()
    print(f"batch {options.batch}, median of {options.repeats} runs; float32 matmul peak {peak:.0f} GFLOP/s\n")
    header = (
        f"{'model':20} {'convert s':>9} {'eager ms':>9} {'compile ms':>10} {'unigraph ms':>11} {'eager/ug':>8} "
        f"{'compile/ug':>10} {'floor ms':>8} {'eager/floor':>11}"
    )
    print(header)
    print("-" * len(header))
    for name in options.models:
        r = bench(name, options.batch, options.repeats, options.compile, peak)
        print(
            f"{r['model']:20} {r['convert_s']:9.1f} {r['eager_ms']:9.2f} {r['compiled_ms']:10.2f} "
            f"{r['jax_ms']:11.2f} {r['eager_ms'] / r['jax_ms']:8.2f} {r['compiled_ms'] / r['jax_ms']:10.2f} "
            f"{r['floor_ms']:8.2f} {r['eager_ms'] / r['floor_ms']:11.2f}",
            flush=True,
        )
    print("\neager/ug > 1: unigraph's XLA run is faster than torch eager; compile/ug likewise for torch.compile.")
    print("eager/floor: the most eager/ug any float32 implementation can reach on this machine.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
