"""unigraph: convert trained models between PyTorch, Keras/TensorFlow and JAX/Flax.

``import unigraph`` loads only the core (JAX, Flax, NumPy); frontends and
backends import their framework when first used.
"""

from __future__ import annotations

from unigraph.errors import (
    CheckpointError,
    ExportError,
    GraphError,
    InputError,
    LoweringError,
    OutputExistsError,
    ShapeMismatchError,
    TranslationError,
    UnigraphError,
    UnsupportedOpError,
)

__version__ = "0.1.0"

_LAZY = {
    "from_torch": ("unigraph.api", "from_torch"),
    "load": ("unigraph.io.bundle", "load"),
    "from_flax": ("unigraph.api", "from_flax"),
    "from_jax": ("unigraph.api", "from_jax"),
    "from_keras": ("unigraph.api", "from_keras"),
    "convert": ("unigraph.api", "convert"),
    "check": ("unigraph.checker", "check"),
    "Report": ("unigraph.checker", "Report"),
    "Converted": ("unigraph.converted", "Converted"),
    "GraphModule": ("unigraph.flax", "GraphModule"),
    "Graph": ("unigraph.ir", "Graph"),
    "Node": ("unigraph.ir", "Node"),
    "TensorType": ("unigraph.ir", "TensorType"),
    "ParamMap": ("unigraph.params", "ParamMap"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'unigraph' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))


__all__ = [
    "CheckpointError",
    "ExportError",
    "GraphError",
    "InputError",
    "LoweringError",
    "OutputExistsError",
    "ShapeMismatchError",
    "TranslationError",
    "UnigraphError",
    "UnsupportedOpError",
    "__version__",
    *_LAZY,
]
