"""Backends: a ``Converted`` in, a target framework's format out."""
