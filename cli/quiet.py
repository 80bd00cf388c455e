"""The frameworks' start-up chatter kept off the command line's output.

TensorFlow and XLA print notes (CUDA probing, oneDNN, deprecations) that say
nothing about the user's model. While a command runs, unigraph's own warnings
are shown one line each and the frameworks' are not; everything is put back
as it was when the command returns, so ``main()`` called from Python leaves
the caller's process unchanged.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator

from unigraph.cli.scoped import environment
from unigraph.errors import first_line


@contextlib.contextmanager
def quiet_frameworks() -> Iterator[None]:
    """TensorFlow's and JAX's start-up notes off; unigraph's warnings as one line each."""
    own = _own_dirs()
    shown: set[str] = set()

    def show(message, category, filename, lineno, file=None, line=None):
        text = first_line(str(message)) or category.__name__
        if os.path.abspath(filename).startswith(own) and text not in shown:
            shown.add(text)
            print(f"unigraph: warning: {text}", file=sys.stderr)

    loggers = [logging.getLogger(name) for name in ("jax._src.xla_bridge", "absl")]
    original = warnings.showwarning
    with environment(TF_CPP_MIN_LOG_LEVEL="3"):
        for logger in loggers:
            logger.addFilter(_errors_only)
        warnings.showwarning = show
        try:
            yield
        finally:
            warnings.showwarning = original
            for logger in loggers:
                logger.removeFilter(_errors_only)


def _own_dirs() -> tuple[str, ...]:
    """unigraph's source folders (core, frontends, backends, command line): warnings raised there are shown."""
    import unigraph
    import unigraph.backends
    import unigraph.cli
    import unigraph.frontends

    packages = (unigraph, unigraph.frontends, unigraph.backends, unigraph.cli)
    return tuple(os.path.dirname(os.path.abspath(p.__file__)) for p in packages)


def _errors_only(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.ERROR


def import_tensorflow() -> None:
    """Imports TensorFlow (through the SavedModel backend) without the lines its C++ side prints.

    TensorFlow writes start-up notes to file descriptor 2 before its logging
    is set up; they are held back, and shown only if the import fails.
    """
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            import unigraph.backends.savedmodel  # noqa: F401  (loads triton first, then TensorFlow)
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
