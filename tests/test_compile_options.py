"""The XLA compiler options converted models are jitted with, and calls under a caller's JAX transformations."""

import os
import platform
import subprocess
import sys

import jax
import numpy as np
import pytest
import torch

import unigraph as ug
from unigraph import compile_options

X86 = platform.machine().lower() in ("x86_64", "amd64")


@pytest.fixture(scope="module")
def converted():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(8 * 36, 5))
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        expected = model.eval()(x).numpy()
    return ug.from_torch(model, (x,)), x.numpy(), expected


def test_top_level_call_matches_torch(converted):
    conv, x, expected = converted
    np.testing.assert_allclose(np.asarray(conv(x)), expected, rtol=1e-4, atol=1e-5)


def test_calls_under_jit_vmap_and_grad_match_the_top_level_call(converted):
    """Compiler options are refused on a nested jit: these calls compile with the caller's computation."""
    conv, x, expected = converted
    closed_over = jax.jit(lambda: conv(x))()
    traced = jax.jit(lambda x: conv(x))(x)
    mapped = jax.vmap(lambda row: conv(row[None])[0])(x)
    for result in (closed_over, traced, mapped):
        np.testing.assert_allclose(np.asarray(result), expected, rtol=1e-4, atol=1e-5)
    gradient = jax.grad(lambda x: conv(x).sum())(x)
    step = np.zeros_like(x)
    step[0, 0, 4, 4] = 1e-2
    finite_difference = (float(conv(x + step).sum()) - float(conv(x - step).sum())) / 2e-2
    np.testing.assert_allclose(float(gradient[0, 0, 4, 4]), finite_difference, rtol=1e-2, atol=1e-3)


def _graph(module, x):
    return ug.from_torch(module.eval(), (x,)).graph


def test_only_graphs_that_keep_a_convolution_get_options():
    x = torch.randn(1, 4, 8, 8)
    assert compile_options.has_convolution(_graph(torch.nn.Conv2d(4, 4, 3), x))
    assert compile_options.has_convolution(_graph(torch.nn.ConvTranspose2d(4, 4, 2), x))
    for lowered_otherwise in (torch.nn.Conv2d(4, 4, 1), torch.nn.Conv2d(4, 4, 4, stride=4), torch.nn.Conv2d(4, 4, 3, groups=4)):
        graph = _graph(lowered_otherwise, x)
        assert not compile_options.has_convolution(graph)
        assert compile_options.compiler_options(graph) == {}


@pytest.mark.skipif(not X86 or jax.default_backend() != "cpu", reason="the options apply to XLA:CPU on x86")
def test_options_apply_on_x86_cpu(converted):
    conv, _, _ = converted
    assert compile_options.compiler_options(conv.graph) == compile_options._CONVOLUTIONS_ON_XLA


@pytest.mark.skipif(not X86 or jax.default_backend() != "cpu", reason="the options apply to XLA:CPU on x86")
def test_an_option_jaxlib_does_not_know_is_dropped(monkeypatch):
    monkeypatch.setattr(compile_options, "_CONVOLUTIONS_ON_XLA", {"xla_cpu_no_such_option": "1"})
    assert compile_options._usable.__wrapped__() == ()
    monkeypatch.undo()
    assert compile_options._usable.__wrapped__() == tuple(compile_options._CONVOLUTIONS_ON_XLA.items())


def test_xla_flags_naming_the_option_win():
    """A user's own setting in XLA_FLAGS is not overridden (checked in a fresh process: the choice is cached)."""
    env = dict(os.environ, XLA_FLAGS="--xla_cpu_experimental_ynn_fusion_type=")
    code = (
        "from unigraph.compile_options import convolution_options\n"
        "print(convolution_options())"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "{}"
