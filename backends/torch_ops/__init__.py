"""torch lowerings of unigraph ops: the code a converted model runs as in PyTorch.

Each op has one lowering, a plain function with the op's signature (tensors
positional, attributes keyword-only) written with nothing but ``torch``,
``torch.nn.functional as F`` and ``math``, plus private helpers of its own
module. The code generator (``backends/torch_codegen.py``) inlines a lowering
whose body is a single ``return`` expression (``torch.relu(x)``) and copies the
others, with the helpers they call, into the generated file, so the generated
model needs nothing but torch::

    @lowers("leaky_relu")
    def leaky_relu(x, /, *, alpha=0.01):
        return F.leaky_relu(x, alpha)

Tensors arrive in the op's semantics: activations in the source layout,
kernels in Flax layout (a dense kernel ``(in, out)``); the code generator
feeds parameters stored in torch layout through a ``permute`` view.
"""

from __future__ import annotations

from collections.abc import Callable

from unigraph.registry import Registry


LOWERINGS: Registry[str, Callable] = Registry("torch lowering")


def lowers(*ops: str) -> Callable[[Callable], Callable]:
    """Registers the decorated function as the torch lowering of each op."""
    return LOWERINGS.registers(*ops)


from unigraph.backends.torch_ops import (  # noqa: E402,F401  (importing registers the lowerings)
    attention,
    conv,
    creation,
    elementwise,
    index,
    linalg,
    norm,
    pool,
    recurrent,
    reduce,
    resize,
    shape,
)

__all__ = ["LOWERINGS", "lowers"]
