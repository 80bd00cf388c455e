"""Slows ``unigraph translate`` down from the outside, so that a test's kill lands in the middle of a file.

Why it exists: the tests that kill ``unigraph translate`` midway
(``tests/cli/test_translate.py``) need the kill to land while outputs are
staged and half-written, and the product has no test hooks to slow itself
down. A translation of the test's small checkpoints takes milliseconds, so
the slowing is done here, outside the product.

How: a test puts this folder first on ``PYTHONPATH`` in the environment of the
``unigraph`` subprocess alone, with ``SLOW_WRITES_DELAY_S`` set. Python imports
``sitecustomize`` at start-up in every process of the run: the command's own
process, the ``multiprocessing`` forkserver (started with ``sys.executable``,
inheriting the environment) and so the pool workers forked from it. Once
``unigraph.io.safetensors_file`` is imported (not before: nothing is imported
here that the command would not import itself, nor earlier), its ``write`` is
replaced by a wrapper that, before producing a file's first tensor, flushes
what is written so far (the header) and sleeps ``SLOW_WRITES_DELAY_S``
seconds. ``unigraph.io.variables.write`` (the safetensors output of
``translate``) calls ``safetensors_file.write`` as a module attribute at call
time, so it gets the wrapper. During the sleep the output is staged (a
hidden ``.<name>.<hex>.partial`` sibling in the output folder) and holds the
header and no tensor yet.

Without ``SLOW_WRITES_DELAY_S`` (or with 0) this does nothing.
"""

from __future__ import annotations

import functools
import os
import sys
import time

MODULE = "unigraph.io.safetensors_file"
DELAY = float(os.environ.get("SLOW_WRITES_DELAY_S") or 0)


def slowed(write):
    """``write`` sleeping ``DELAY`` seconds before the first tensor of each file, its header flushed."""

    @functools.wraps(write)
    def slow_write(file, specs, produce, *args, **kwargs):
        first = True

        def produce_slowly(name):
            nonlocal first
            if first:
                first = False
                file.flush()  # the header on disk: the staged output is half-written while this sleeps
                time.sleep(DELAY)
            return produce(name)

        return write(file, specs, produce_slowly, *args, **kwargs)

    return slow_write


class _PatchOnImport:
    """A meta path finder that lets the usual finders find ``MODULE``, then patches it once executed."""

    def find_spec(self, fullname, path, target=None):
        if fullname != MODULE:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        exec_module = spec.loader.exec_module

        def exec_and_patch(module):
            exec_module(module)
            module.write = slowed(module.write)

        spec.loader.exec_module = exec_and_patch  # the loader is this spec's own
        return spec


if DELAY > 0:
    if MODULE in sys.modules:  # not expected at start-up, but then patch it now
        sys.modules[MODULE].write = slowed(sys.modules[MODULE].write)
    else:
        sys.meta_path.insert(0, _PatchOnImport())
