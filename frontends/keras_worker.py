"""The worker ``from_keras`` runs when the caller's Keras is not on JAX: ``python -m unigraph.frontends.keras_worker DIR``.

Keras picks its backend once per process, when it is imported, so a model
built under TensorFlow (or torch) is traced here, in a fresh process started
with ``KERAS_BACKEND=jax``. ``DIR`` holds ``request.json`` (the model file,
custom objects by importable name, example inputs in ``inputs.npz``, and for
a model object the caller's variable paths and layer names) and receives the
``.ug`` bundle and ``result.json``: the warnings the conversion gave, or the
error it raised, which ``from_keras`` raises again in the caller.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
import warnings
from pathlib import Path

import numpy as np


def main(directory: str) -> int:
    directory = Path(directory)
    request = json.loads((directory / "request.json").read_text())
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            convert(request, directory)
        result = {"warnings": [str(w.message) for w in caught if _ours(w)]}
        status = 0
    except BaseException as error:  # everything goes back to the caller, which raises it again
        from unigraph.frontends.keras import error_record

        result = {"error": error_record(error, traceback.format_exc())}
        status = 1
    (directory / "result.json").write_text(json.dumps(result))
    return status


def convert(request: dict, directory: Path) -> None:
    import keras

    from unigraph.frontends.keras import convert_model, decode, load_model, resolve

    if keras.backend.backend() != "jax":
        raise RuntimeError(f"the Keras worker runs with KERAS_BACKEND=jax, not {keras.backend.backend()!r}")
    custom_objects = {name: resolve(target) for name, target in request["custom_objects"].items()}
    with np.load(directory / "inputs.npz") as stored:
        arrays = dict(stored)
    inputs = None if request["inputs"] is None else decode(request["inputs"], arrays)
    # Keras creates each variable with its initializer before the file's weights replace it, and under
    # JAX every random initializer compiles a kernel per shape (10 s for a DenseNet121). In a stateless
    # scope that leaves variables uninitialized, the weights land in the scope instead; the trace reads
    # them from there, and the variables are never initialized (this process ends after).
    with keras.StatelessScope(initialize_variables=False) as scope:
        model = load_model(Path(request["model"]), custom_objects, safe_mode=request["safe_mode"])
        variables = [*model.trainable_variables, *model.non_trainable_variables]
        values = [_value(scope, v) for v in variables]
        unloaded = [v.path for v, value in zip(variables, values) if value is None]
        if unloaded:
            raise RuntimeError(f"the model file holds no value for the variable(s) {', '.join(unloaded[:5])}")
        names = layers = None
        if request["identity"] is not None:
            names, layers = _caller_names(model, request["identity"])
        converted = convert_model(
            model, inputs, request["polymorphic_shapes"], values=values, source_names=names, layer_names=layers
        )
    converted.save(request["bundle"])


def _value(scope, variable):
    """What the file gave ``variable``; for a seed generator's state (never saved), its initial value."""
    value = scope.get_current_value(variable)
    if value is None and "seed_generator" in variable.path and getattr(variable, "_initializer", None):
        value = variable._initializer(variable._shape, dtype=variable._dtype)
    return value


def _caller_names(model, identity: dict) -> tuple[list[str], dict[str, str]]:
    """The caller's variable paths (checked against the rebuilt model's) and a map of layer names to the caller's."""
    variables = [*model.trainable_variables, *model.non_trainable_variables]
    theirs = identity["variables"]
    if len(variables) != len(theirs) or any(list(v.shape) != shape for v, (_, shape) in zip(variables, theirs)):
        raise RuntimeError(
            "the model rebuilt from its .keras file has other variables than the caller's "
            f"({len(variables)} here, {len(theirs)} there); its layers' get_config() or build() "
            "do not rebuild the same model"
        )
    layers = [layer.name for layer in model._flatten_layers(include_self=True, recursive=True)]
    renames: dict[str, str] = {}
    if len(layers) == len(identity["layers"]):
        for here, there in zip(layers, identity["layers"]):
            renames.setdefault(here, there)
    return [path for path, _ in theirs], {k: v for k, v in renames.items() if k != v}


def _ours(w: warnings.WarningMessage) -> bool:
    """Warnings unigraph gave (attributed to its own files), not Keras's or JAX's chatter."""
    import unigraph
    import unigraph.frontends

    roots = [os.path.dirname(os.path.abspath(m.__file__)) + os.sep for m in (unigraph, unigraph.frontends)]
    return os.path.abspath(w.filename).startswith(tuple(roots))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
