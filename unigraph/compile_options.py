"""The XLA compiler options a converted model is jitted with.

On x86 CPUs, XLA hands convolutions to YNNPACK by default, and XLA's own
(Eigen) convolution runs them faster: a 3x3 ResNet convolution 1.2x at batch 1
and 1.7x at batch 8 on two AVX-512 cores (bench/bench_conv.py), ResNet-18 2x. Turning
YNNPACK's convolutions off also turns off its reductions, which transformers
run about 5% faster, so the options apply only to graphs that still hold a
``lax`` convolution after ``unigraph.ops.conv`` has lowered 1x1, patch and
depthwise convolutions without one. YNNPACK keeps the standalone dots.

Options named in ``XLA_FLAGS`` win: these are left out when the user sets the
same option there, and when the installed jaxlib does not know them. JAX
accepts compiler options only on a top-level ``jit``: under a caller's ``jit``,
``vmap`` or ``grad`` a converted model compiles as part of the caller's
computation, with the caller's options.
"""

from __future__ import annotations

import functools
import os
import platform

import jax
from jax._src import core as jax_core

from unigraph.ir import Graph
from unigraph.ops.conv import lowering

_CONVOLUTIONS_ON_XLA = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"}


def compiler_options(graph: Graph) -> dict[str, str]:
    """Options for ``jax.jit(..., compiler_options=...)`` running ``graph`` here (empty when none apply)."""
    return convolution_options() if has_convolution(graph) else {}


def convolution_options() -> dict[str, str]:
    """The options for a graph that keeps ``lax`` convolutions, those of them that apply here."""
    return dict(_usable())


def has_convolution(graph: Graph) -> bool:
    """Whether any node of ``graph`` is lowered as a ``lax`` convolution."""
    for node in graph.nodes:
        if node.op == "conv_transpose":
            return True
        if node.op == "conv":
            x, kernel = (graph.types[name].shape for name in node.inputs[:2])
            attrs = node.attrs
            how = lowering(
                x,
                kernel,
                attrs["strides"],
                attrs["padding"],
                attrs["dilation"],
                attrs.get("groups", 1),
                attrs.get("channels_last", False),
            )
            if how == "convolution":
                return True
    return False


@functools.cache
def _usable() -> tuple[tuple[str, str], ...]:
    """The convolution options that apply on this process's default backend and that XLA_FLAGS leave open."""
    if jax.default_backend() != "cpu" or platform.machine().lower() not in ("x86_64", "amd64"):
        return ()
    user_flags = os.environ.get("XLA_FLAGS", "")
    options = {name: value for name, value in _CONVOLUTIONS_ON_XLA.items() if name not in user_flags}
    if options and not _accepted(options):
        return ()
    return tuple(options.items())


def _accepted(options: dict[str, str]) -> bool:
    """Whether this jaxlib compiles with ``options`` (an option it does not know is an error at compile time)."""
    try:
        jax.jit(lambda x: x + 1, compiler_options=options).lower(0.0).compile()
    except Exception:  # noqa: BLE001 - any refusal means: compile without them
        return False
    return True


def at_top_level() -> bool:
    """Whether no JAX transformation is tracing the caller, so a ``jit`` may carry compiler options.

    JAX has no public test for this; without its private one, every call counts as nested.
    """
    trace_context = getattr(jax_core, "trace_ctx", None)
    return bool(trace_context is not None and trace_context.is_top_level())
