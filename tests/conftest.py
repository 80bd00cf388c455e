"""Test session setup: triton must load before TensorFlow (see unigraph/native_order.py)."""

from unigraph.native_order import before_tensorflow

before_tensorflow()
