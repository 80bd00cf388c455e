"""``python -m unigraph.cli``: the ``unigraph`` command."""

import sys

from unigraph.cli import main

sys.exit(main())
