"""Load order of two native libraries that cannot share a process in the other order.

triton (GPU kernels for torch.compile; torch.export, torchvision and
transformers import it when it is installed) crashes the process (SIGSEGV)
when its native library loads after TensorFlow's. Before TensorFlow is
imported, triton is loaded first; if TensorFlow came first, triton is marked
unimportable, which torch treats as "not installed" (nothing here needs it).
"""

from __future__ import annotations

import importlib.util
import sys


def before_tensorflow() -> None:
    """Call before ``import tensorflow``: loads triton first when it is installed."""
    if "tensorflow" not in sys.modules and "triton" not in sys.modules:
        if importlib.util.find_spec("triton") is not None:
            import triton  # noqa: F401


def before_torch_tracing() -> None:
    """Call before torch.export: keeps triton out if TensorFlow is loaded already."""
    if "tensorflow" in sys.modules and "triton" not in sys.modules:
        sys.modules["triton"] = None
