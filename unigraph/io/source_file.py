"""The Python files unigraph generates (a torch module's, a Keras model's source), imported to be run.

One loader for both, so that a file is imported the same way whatever its
suffix, and its failure (the file's own code can raise anything) names the file.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
from pathlib import Path
from types import ModuleType

from unigraph.errors import CheckpointError, first_line


def import_source(path: str | os.PathLike, *, what: str) -> ModuleType:
    """The module the Python file ``path`` defines, run under a name of its own (not put in ``sys.modules``).

    ``what`` names the file's kind in the error (``"a torch source file"``).
    """
    path = Path(path)
    name = f"unigraph_generated_{path.stem}"
    loader = importlib.machinery.SourceFileLoader(name, str(path))  # whatever the file's suffix
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(name, loader))
    try:
        loader.exec_module(module)
    except Exception as e:  # the file's own code can raise anything
        raise CheckpointError(f"{path}: not {what} unigraph wrote ({type(e).__name__}: {first_line(e)})") from None
    return module
