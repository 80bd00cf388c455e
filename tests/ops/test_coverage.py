"""Every registered op is exercised by at least one numeric case against torch."""

import importlib
import pkgutil

import tests.ops
from unigraph.ops import REGISTRY


def _cases():
    for info in pkgutil.iter_modules(tests.ops.__path__):
        if info.name.startswith("test_") and info.name != "test_coverage":
            module = importlib.import_module(f"tests.ops.{info.name}")
            yield from getattr(module, "CASES", [])


def test_every_op_has_a_numeric_case():
    named = {op for case in _cases() if not case.xfail for op in case.ops}
    untested = sorted(set(REGISTRY.names()) - named)
    assert not untested, f"ops without a passing numeric case against torch: {untested}"


def test_cases_name_only_registered_ops():
    unknown = sorted({op for case in _cases() for op in case.ops} - set(REGISTRY.names()))
    assert not unknown
