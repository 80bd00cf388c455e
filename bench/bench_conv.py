"""Convolution latency under XLA:CPU: unigraph's lowering and compiler options against plain XLA and torch.

Two choices in unigraph rest on these figures (same run, same machine):

- depthwise convolutions are lowered as a sum of strided slices times weights
  (``unigraph.ops.conv``) instead of a grouped ``lax`` convolution;
- 1x1 and patch (stride = window) convolutions are lowered as matmuls;
- graphs that keep other convolutions are compiled with
  ``unigraph.compile_options`` (XLA's own convolution instead of YNNPACK's on x86).

Whole-model figures are in bench_spine.py.

    python bench/bench_conv.py
"""

from __future__ import annotations

import sys

import jax
import numpy as np
import torch
from jax import lax

from bench_spine import median_ms  # bench/ is the script's folder, so on sys.path

from unigraph.compile_options import convolution_options
from unigraph.ops import REGISTRY
from unigraph.ops.conv import lowering

# (batch, channels in, channels out, size, kernel, stride, groups): shapes from MobileNet, EfficientNet, ConvNeXt,
# ResNet and ViT
DEPTHWISE = [
    (1, 32, 32, 112, 3, 1, 32),
    (1, 96, 96, 112, 3, 2, 96),
    (1, 240, 240, 28, 5, 1, 240),
    (1, 96, 96, 56, 7, 1, 96),
    (8, 96, 96, 56, 7, 1, 96),
]
REPEATS = 30
DENSE = [
    (1, 3, 64, 224, 7, 2, 1),
    (1, 64, 64, 56, 3, 1, 1),
    (1, 256, 64, 56, 1, 1, 1),
    (1, 3, 768, 224, 16, 16, 1),
    (1, 128, 128, 28, 3, 1, 1),
    (8, 64, 64, 56, 3, 1, 1),
]


def _case(batch, cin, cout, size, k, stride, groups):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, cin, size, size), dtype=np.float32)
    kernel = rng.standard_normal((k, k, cin // groups, cout), dtype=np.float32)
    pad = 0 if stride == k else k // 2  # patch embeddings are not padded
    attrs = dict(strides=(stride, stride), padding=((pad, pad),) * 2, dilation=(1, 1), groups=groups)
    return x, kernel, attrs


def _torch_ms(x, kernel, attrs) -> float:
    tx = torch.from_numpy(x)
    tw = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
    pad = attrs["padding"][0][0]
    with torch.no_grad():
        return median_ms(lambda: torch.nn.functional.conv2d(tx, tw, stride=attrs["strides"], padding=pad, groups=attrs["groups"]), REPEATS)


def _jax_ms(fn, x, kernel, **jit_options) -> float:
    jitted = jax.jit(fn, **jit_options)
    return median_ms(lambda: jax.block_until_ready(jitted(x, kernel)), REPEATS)


def _options_for(x, kernel, attrs) -> dict:
    """The compiler options a converted model holding just this convolution gets."""
    how = lowering(x.shape, kernel.shape, attrs["strides"], attrs["padding"], attrs["dilation"], attrs["groups"], False)
    return convolution_options() if how == "convolution" else {}


def _lax_conv(attrs):
    numbers = lax.ConvDimensionNumbers((0, 1, 2, 3), (3, 2, 0, 1), (0, 1, 2, 3))
    return lambda x, k: lax.conv_general_dilated(
        x, k, attrs["strides"], attrs["padding"], dimension_numbers=numbers, feature_group_count=attrs["groups"]
    )


def _table(title, cases, conv):
    header = f"{title:36} {'torch ms':>9} {'lax ms':>9} {'unigraph ms':>11} {'lax/ug':>7} {'torch/ug':>8}"
    print("\n" + header)
    print("-" * len(header))
    for batch, cin, cout, size, k, stride, groups in cases:
        x, kernel, attrs = _case(batch, cin, cout, size, k, stride, groups)
        reference = _torch_ms(x, kernel, attrs)
        plain = _jax_ms(_lax_conv(attrs), x, kernel)
        ours = _jax_ms(lambda x, k: conv(x, k, **attrs), x, kernel, compiler_options=_options_for(x, kernel, attrs))
        label = f"{batch}, {cin}, {size}x{size}, {k}, {stride}" + (f" -> {cout}" if groups == 1 else "")
        print(f"{label:36} {reference:9.3f} {plain:9.3f} {ours:11.3f} {plain / ours:7.2f} {reference / ours:8.2f}", flush=True)


def main() -> int:
    conv = REGISTRY["conv"].jax
    options = convolution_options()
    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads), jax {jax.__version__} on {jax.devices()[0]}")
    print(f"compiler options for graphs with convolutions: {options or 'none apply here'}")

    _table("depthwise (N, C, HxW, k, stride)", DEPTHWISE, conv)
    _table("dense (N, C, HxW, k, stride) -> O", DENSE, conv)
    print("\nlax/ug > 1: unigraph's lowering and options beat a plain lax convolution; torch/ug > 1: torch eager.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
