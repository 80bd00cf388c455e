"""Every op's torch lowering takes what the op takes, with the op's defaults.

The op's JAX lowering (``@op`` in ``unigraph/ops``) is the schema; its torch
lowering (``@lowers`` in ``backends/torch_ops``) mirrors that signature. The
code generator passes every attribute by name with the schema's defaults
filled in, so a lowering whose attribute is named differently fails to
generate, and one whose default differs misleads whoever reads or calls the
function copied into a generated file. One case per op, so a failure names it.
"""

import inspect

import pytest

from unigraph.backends.torch_ops import LOWERINGS
from unigraph.ops import REGISTRY


def _shape(fn) -> dict:
    """The parts of a signature that must agree: tensor inputs, variadic-ness, attributes with defaults."""
    params = inspect.signature(fn).parameters.values()
    return {
        "tensor inputs": [
            (p.name, "optional" if p.default is None else "required")
            for p in params
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ],
        "variadic": any(p.kind is p.VAR_POSITIONAL for p in params),
        # type and repr, so that 1 and 1.0 (or True and 1) count as different defaults
        "attributes": {
            p.name: None if p.default is p.empty else (type(p.default).__name__, repr(p.default))
            for p in params
            if p.kind is p.KEYWORD_ONLY
        },
        "takes **kwargs": any(p.kind is p.VAR_KEYWORD for p in params),
    }


@pytest.mark.parametrize("name", REGISTRY.names())
def test_torch_lowering_takes_the_ops_signature(name):
    lowering = LOWERINGS.get(name)
    assert lowering is not None, f"op {name!r} has no torch lowering"
    opdef = REGISTRY[name]
    if not lowering.__module__.startswith("unigraph."):
        # a torch function registered as is (torch.relu): the generator passes the
        # node's inputs positionally and nothing else, so the op must have nothing more
        assert not (opdef.attrs or opdef.optional or opdef.variadic), (
            f"op {name!r} has attributes, optional or variadic inputs; "
            f"its torch lowering must be a function with its signature, not {lowering!r}"
        )
        return
    assert _shape(lowering) == _shape(opdef.jax)


def test_every_lowering_is_of_a_registered_op():
    assert not [name for name in LOWERINGS.names() if name not in REGISTRY]
