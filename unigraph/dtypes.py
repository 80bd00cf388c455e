"""Dtype names: unigraph writes dtypes as NumPy names (``"float32"``, ``"bfloat16"``)."""

from __future__ import annotations

import ml_dtypes
import numpy as np

_EXTRA = {
    name: np.dtype(getattr(ml_dtypes, name))
    for name in ("bfloat16", "float8_e4m3fn", "float8_e5m2")
}


def numpy_dtype(name: str) -> np.dtype:
    """The NumPy dtype for a unigraph dtype name (bfloat16 and float8 through ml_dtypes)."""
    if name in _EXTRA:
        return _EXTRA[name]
    try:
        return np.dtype(name)
    except TypeError:
        raise ValueError(f"unknown dtype {name!r}") from None


def dtype_name(dtype) -> str:
    """The unigraph name of a NumPy/JAX dtype, dtype-like or name."""
    if isinstance(dtype, str):
        return numpy_dtype(dtype).name
    return np.dtype(dtype).name


def jax_dtype(name: str):
    """The dtype JAX computes with for ``name``: 64-bit types shrink unless x64 is on."""
    import jax

    return jax.dtypes.canonicalize_dtype(numpy_dtype(name))


def same_in_jax(a: str, b: str) -> bool:
    """Whether two dtype names are the same once JAX canonicalizes them."""
    return jax_dtype(a) == jax_dtype(b)


def is_floating(name: str) -> bool:
    return np.issubdtype(numpy_dtype(name), np.floating)
