"""The ``unigraph`` command line: the application built on the core, the frontends and the backends.

- ``command``: the parser and the commands (convert, check, inspect, translate);
- ``sources``: opening a model file (.pt2, Hugging Face folder, factory, .keras, .ug);
- ``checkpoints``: reading weights tensor by tensor (safetensors, torch state dicts);
- ``targets``: writing a format from a converted model or a streamed checkpoint, and reading it back;
- ``verify``: checking a written output against its source (``sampling``: the seeded inputs);
- ``translate``: batches of checkpoints (manifest, worker processes, progress);
- ``demo``: ``python -m unigraph.cli.demo``.

Importing this package loads nothing but argparse and unigraph's errors, so
``unigraph --help`` answers before JAX or any framework starts.
"""

from unigraph.cli.command import main

__all__ = ["main"]
