"""The ``unigraph`` command (a placeholder until the CLI issue lands: prints help)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="unigraph",
        description="Convert trained models between PyTorch, Keras/TensorFlow and JAX/Flax.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    options = parser.parse_args(argv)
    if options.version:
        from unigraph import __version__

        print(__version__)
        return 0
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
