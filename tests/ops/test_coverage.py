"""Every registered op is exercised by at least one numeric case against torch."""

import importlib
import pkgutil

import tests.ops
from tests.ops.harness import Case
from unigraph.ops import REGISTRY


def _cases():
    for info in pkgutil.iter_modules(tests.ops.__path__):
        if info.name.startswith("test_") and info.name != "test_coverage":
            module = importlib.import_module(f"tests.ops.{info.name}")
            for value in vars(module).values():  # every module-level table of cases
                if isinstance(value, list) and value and all(isinstance(c, Case) for c in value):
                    yield from value


def test_every_op_has_a_numeric_case():
    named = {op for case in _cases() if not case.xfail for op in case.ops}
    untested = sorted(set(REGISTRY.names()) - named)
    assert not untested, f"ops without a passing numeric case against torch: {untested}"


def test_cases_name_only_registered_ops():
    unknown = sorted({op for case in _cases() for op in case.ops} - set(REGISTRY.names()))
    assert not unknown
