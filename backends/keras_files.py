"""A converted model as a Keras folder: its source file, its weights and a ``.keras`` file (``--to keras``).

``model.py`` and ``model.weights.h5`` are ``to_keras_source``'s; ``model.keras``
is the model that file builds, saved by Keras with the weights, so it loads
(``safe_mode=True``) in any process that has imported ``model.py``, with
neither torch nor unigraph installed.
"""

from __future__ import annotations

import os
from pathlib import Path

from unigraph.native_order import before_tensorflow

before_tensorflow()  # Keras on its default backend loads TensorFlow: triton first (see unigraph.native_order)

import keras  # noqa: E402

from unigraph.backends import keras_codegen  # noqa: E402
from unigraph.converted import Converted  # noqa: E402
from unigraph.io.atomic import atomic_directory  # noqa: E402
from unigraph.io.source_file import import_source  # noqa: E402

SOURCE, WEIGHTS, SAVED = "model.py", "model.weights.h5", "model.keras"


def save_folder(conv: Converted, path: str | os.PathLike, *, channels_last: bool = False, overwrite: bool = False) -> Path:
    """Writes the folder at ``path`` atomically (an error leaves nothing); returns the path."""
    with atomic_directory(path, overwrite=overwrite) as staging:
        keras_codegen.save(conv, staging / SOURCE, channels_last=channels_last)
        model = import_source(staging / SOURCE, what="a Keras source file").build_model()
        model.load_weights(staging / WEIGHTS)
        model.save(staging / SAVED)
    return Path(path)


def load_folder(path: str | os.PathLike) -> keras.Model:
    """The model of a Keras folder: ``model.keras`` loaded in safe mode once ``model.py`` registered its layers."""
    path = Path(path)
    import_source(path / SOURCE, what="a Keras source file")
    return keras.saving.load_model(path / SAVED, safe_mode=True)
