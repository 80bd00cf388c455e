"""torch tensors and NumPy arrays, both ways: the one conversion every torch-facing part of unigraph uses.

NumPy has no bfloat16 of its own; unigraph's is ``ml_dtypes.bfloat16``, which
torch's ``.numpy()`` and ``torch.from_numpy`` refuse. Both directions go
through a same-width integer view instead, bit for bit and without a copy.
The torch frontend (parameters, reference runs), the torch backend (state
dicts) and the command line (checkpoints) all convert here.
"""

from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np
import torch


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """A NumPy view of ``t`` (detached, on the CPU); bfloat16 as ``ml_dtypes.bfloat16``."""
    t = t.detach().cpu()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return t.numpy()


def from_numpy(array: Any) -> torch.Tensor:
    """A torch tensor sharing ``array``'s memory where it can: C-ordered, writable, bfloat16 through int16.

    A read-only array (a memory-mapped checkpoint, a hashed read) is copied,
    since torch tensors are always writable.
    """
    array = np.asarray(array)
    if not array.flags.writeable:
        array = array.copy()
    if array.dtype == ml_dtypes.bfloat16:
        return torch.from_numpy(np.ascontiguousarray(array).view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(array)


def numpy_dtype(dtype: torch.dtype) -> np.dtype:
    """The NumPy dtype of a torch dtype (``torch.bfloat16`` -> ``ml_dtypes.bfloat16``)."""
    if dtype == torch.bfloat16:
        return np.dtype(ml_dtypes.bfloat16)
    return torch.empty((), dtype=dtype).numpy().dtype


def as_tensor(x: Any) -> Any:
    """An array-like as a torch tensor (see ``from_numpy``); tensors and plain Python values as they are."""
    if isinstance(x, np.ndarray) or (hasattr(x, "__array__") and not isinstance(x, torch.Tensor) and not np.isscalar(x)):
        return from_numpy(x)
    return x
