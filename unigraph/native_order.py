"""Load order of two native libraries that cannot share a process in the other order.

triton (GPU kernels for torch.compile) crashes the process (SIGSEGV, in the
static initialisers of its ``libtriton.so``) when it is imported after
TensorFlow's libraries are loaded: ``python -c "import tensorflow, triton"``
dies. triton first, then TensorFlow, works. torch does not import triton
itself, but ``torch._dynamo`` does as soon as it is imported, and torch
imports that lazily from many places: ``torch.export`` (``export`` and
``load``), ``torch.optim`` optimizers, ``torch.utils.checkpoint``, and at
import time torchvision and transformers' model classes. So once TensorFlow is
loaded without triton, any of those crashes the process, with or without
unigraph (``import tensorflow, torch; torch.optim.Adam(...)`` does).

unigraph keeps to two rules:

- ``before_tensorflow()`` before unigraph itself imports anything that loads
  TensorFlow (the SavedModel backend; Keras, imported by ``from_keras`` on a
  file and by the command line; a ``.keras`` file may import keras_hub, which
  imports TensorFlow): triton is loaded first, when it is installed, so the
  process can still use both. This changes the process for good (triton is
  loaded, ~0.4 s and ~110 MB), but it loads nothing the process could not
  have loaded anyway, and not doing it would leave the process unable to
  import ``torch._dynamo`` ever after.
- ``triton_blocked()`` around unigraph's own torch work (tracing with
  ``torch.export``, the checker's runs of torch models, the command line's
  commands, which open ``.pt2`` files and Hugging Face models): when the
  caller loaded TensorFlow without triton, triton is unimportable while it
  runs, which torch takes as "not installed" (nothing on the CPU needs it),
  instead of a crash. It is put back when the block ends.

Why the block is scoped, not left in place: after TensorFlow, importing
triton can only crash, so leaving it blocked would be safe too; but the
process is the caller's, and unigraph leaves no global state changed after a
call returns. What the block leaves behind is only what torch imported while
it ran (``torch._dynamo`` among them) and what those modules remember, that
triton is not available (``torch.utils._triton.has_triton_package()`` is
cached); both are true of a process that loaded TensorFlow first. With
``torch._dynamo`` imported, what would have imported it later
(``torch.optim``, ``torch.utils.checkpoint``, torchvision, transformers'
models) no longer imports triton at all, so it works afterwards where
without unigraph it crashes; what still imports triton later
(``torch.compile``, which needs it for its kernels) crashes as it would have
without unigraph. ``tests/test_import_order.py`` runs the conversions in
fresh processes for each class of import orders.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from collections.abc import Iterator


def before_tensorflow() -> None:
    """Call before importing anything that may load TensorFlow: loads triton first when it is installed.

    Does nothing when TensorFlow is loaded already (too late: ``triton_blocked``
    covers unigraph's own work then) or triton is (loaded, or blocked).
    """
    if "tensorflow" not in sys.modules and "triton" not in sys.modules:
        if importlib.util.find_spec("triton") is not None:
            import triton  # noqa: F401


@contextlib.contextmanager
def triton_blocked() -> Iterator[None]:
    """While the block runs, triton cannot be imported if TensorFlow is loaded and triton is not.

    Use it as ``with triton_blocked():`` or as a decorator
    (``@triton_blocked()``) around code that runs torch in the caller's process.
    triton is made unimportable by ``sys.modules["triton"] = None``:
    ``import triton`` raises ``ImportError`` and ``importlib.util.find_spec``
    returns ``None``, which torch handles as triton not being installed. The
    entry is removed again when the block ends (unless something else put a
    module there meanwhile). Blocks nest (an inner one finds triton
    "present" and does nothing), and it is a no-op when TensorFlow is not
    loaded (triton can load safely) or triton is loaded already (nothing to
    prevent). torch's one log line about it ("triton not found; flop counting
    will not work for triton kernels", printed when torch.export imports
    ``torch.utils.flop_counter``) is kept out while the block runs: triton is
    installed, only withheld.
    """
    if "tensorflow" not in sys.modules or "triton" in sys.modules:
        yield
        return
    import logging

    flop_counter_log = logging.getLogger("torch.utils.flop_counter")
    note = _TritonNotFoundNote()
    sys.modules["triton"] = None
    flop_counter_log.addFilter(note)
    try:
        yield
    finally:
        flop_counter_log.removeFilter(note)
        if "triton" in sys.modules and sys.modules["triton"] is None:
            del sys.modules["triton"]


class _TritonNotFoundNote:
    """A logging filter (duck-typed, so this module imports no ``logging`` until a block runs)."""

    def filter(self, record) -> bool:
        return not str(record.msg).startswith("triton not found")
