"""Running code in a fresh Python process that imports TensorFlow and NumPy, and never torch or unigraph.

That is how a converted model is used in production: the process that loads
a SavedModel has neither the source framework nor the converter, so tests
reload their outputs there rather than in the pytest process.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest

_PRELUDE = "import sys\nimport numpy as np\nimport tensorflow as tf\n"
_EPILOGUE = """
_leaked = [m for m in ("torch", "unigraph") if m in sys.modules]
assert not _leaked, f"the TensorFlow process imported {_leaked}"
"""


def import_tensorflow():
    """TensorFlow for the pytest process, through the backend; skips the module without TensorFlow.

    The backend loads triton before TensorFlow (their other order crashes the
    process in a later torchvision, transformers or torch.export import).
    """
    if importlib.util.find_spec("tensorflow") is None:
        pytest.skip("TensorFlow is not installed", allow_module_level=True)
    import unigraph.backends.savedmodel  # noqa: F401
    import tensorflow as tf

    return tf


def run_tensorflow(code: str, *args, cwd, keras_backend: str | None = None, timeout: float = 600) -> str:
    """Runs ``code`` (after ``import sys, numpy as np, tensorflow as tf``) with ``sys.argv[1:] = args``.

    Fails the test with the process's stderr if it exits non-zero, or if it
    imported torch or unigraph. ``cwd`` should be a scratch directory (the
    current directory is on ``sys.path`` of ``python -c``). Returns stdout.
    """
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    if keras_backend:
        env["KERAS_BACKEND"] = keras_backend
    script = _PRELUDE + textwrap.dedent(code) + _EPILOGUE
    result = subprocess.run(
        [sys.executable, "-c", script, *map(str, args)],
        capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout,
    )
    assert result.returncode == 0, f"TensorFlow process failed ({result.returncode}):\n{result.stderr[-6000:]}"
    return result.stdout
