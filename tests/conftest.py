"""Test session setup: triton is loaded before anything imports TensorFlow (see unigraph/native_order.py).

The suite's process imports torch, TensorFlow, Keras, torchvision and
transformers in whatever order pytest collects the test modules, and uses
``torch.export``, ``torch.optim`` and torchvision, which import triton: after
TensorFlow that import crashes the process. Loading triton first, here, makes
every order of the test modules safe. What a user's process does in each
import order (without this) is tested in fresh processes by
``tests/test_import_order.py``.
"""

from unigraph.native_order import before_tensorflow

before_tensorflow()
