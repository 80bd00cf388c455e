"""Process-wide settings changed for the duration of a block, then put back as they were.

The command line's ``main()`` can be called from Python: whatever it needs to
change in the process (an environment variable Keras or TensorFlow reads at
import, the current directory on ``sys.path`` to import a user's factory) is
changed here, and only for as long as it is needed.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def environment(**defaults: str) -> Iterator[None]:
    """Sets the environment variables the user has not set, for the duration of the block."""
    added = [name for name in defaults if name not in os.environ]
    for name in added:
        os.environ[name] = defaults[name]
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


@contextlib.contextmanager
def sys_path(entry: str) -> Iterator[None]:
    """``entry`` first on ``sys.path`` for the duration of the block (as ``python -m`` puts the current
    directory), unless it is there already."""
    if entry in sys.path:
        yield
        return
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(entry)
