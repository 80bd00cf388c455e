"""Frontends: a source framework's model in, a ``Converted`` out.

This package imports no framework; each frontend module imports its own when
it is imported (Keras only when called: importing Keras fixes its backend),
and the core imports frontend modules only when called.
"""
