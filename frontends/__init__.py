"""Frontends: a source framework's model in, a ``Converted`` out. Each imports its framework lazily."""
