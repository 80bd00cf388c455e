"""Every op's torch and Keras lowerings take what the op takes, with the op's defaults.

The op's JAX lowering (``@op`` in ``unigraph/ops``) is the schema; its torch
lowering (``@lowers`` in ``backends/torch_ops``) and its Keras lowering
(``backends/keras_ops``) mirror that signature. They are called with every
attribute by name, the schema's defaults filled in, so a lowering whose
attribute is named differently fails, and one whose default differs misleads
whoever reads or calls the function copied into a generated file. One case
per op and backend, so a failure names both.
"""

import inspect

import pytest

from unigraph.backends.keras_ops import LOWERINGS as KERAS
from unigraph.backends.torch_ops import LOWERINGS as TORCH
from unigraph.ops import REGISTRY

BACKENDS = {"torch": TORCH, "keras": KERAS}


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


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", REGISTRY.names())
def test_lowering_takes_the_ops_signature(name, backend):
    lowering = BACKENDS[backend].get(name)
    assert lowering is not None, f"op {name!r} has no {backend} lowering"
    opdef = REGISTRY[name]
    if not lowering.__module__.startswith("unigraph."):
        # a framework function registered as is (torch.relu, keras.ops.exp): it is passed
        # the node's inputs positionally and nothing else, so the op must have nothing more
        assert not (opdef.attrs or opdef.optional or opdef.variadic), (
            f"op {name!r} has attributes, optional or variadic inputs; "
            f"its {backend} lowering must be a function with its signature, not {lowering!r}"
        )
        return
    assert _shape(lowering) == _shape(opdef.jax)


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_lowering_is_of_a_registered_op(backend):
    assert not [name for name in BACKENDS[backend].names() if name not in REGISTRY]
