"""The formats unigraph writes: one table for ``Converted.write``, ``unigraph.convert`` and the command line.

Plain data, importing nothing: the command line builds its help from it
before any framework is loaded.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import PurePath


@dataclasses.dataclass(frozen=True)
class Format:
    """One output format: how it is named, what it holds, and the ``Converted`` method that writes it."""

    name: str
    suffix: str  # of outputs named after their input: run3.safetensors -> run3<suffix>; "" if none
    directory: bool  # a directory (else one file)
    graph: bool  # holds the graph: its dtypes must be those the weights have
    weights: bool  # holds the weights: one output per checkpoint (``unigraph translate``)
    method: str  # the ``Converted`` method writing it: ``method(path, *, overwrite=False, **options)``
    summary: str  # one line, for help texts


#: Every format, in the order help texts list them. An output's suffix names the first format that has it.
FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("savedmodel", ".savedmodel", True, True, True, "to_savedmodel",
               "TF SavedModel directory: serving_default signature, fine-tunes in TensorFlow"),
        Format("safetensors", ".safetensors", False, False, True, "save_safetensors",
               "the Flax variables, '/'-joined paths (params/fc/kernel), as safetensors"),
        Format("torch", ".safetensors", False, False, True, "save_state_dict",
               "state dict in torch names and layouts, as safetensors"),
        Format("torch_source", ".py", False, True, False, "to_torch_source",
               "a Python file defining the model as a torch nn.Module (imports only torch)"),
        Format("keras", "", True, True, False, "save_keras",
               "a folder: model.py (a Keras 3 model, imports only keras), its .weights.h5, and model.keras"),
        Format("tflite", ".tflite", False, True, False, "to_tflite",
               "TFLite (LiteRT) flatbuffer, float32, checked in the TFLite interpreter before it is written"),
        Format("orbax", ".orbax", True, False, True, "save_orbax",
               "Orbax checkpoint of the Flax variables"),
        Format("ug", ".ug", False, True, True, "save",
               "unigraph bundle: graph + weights; unigraph.load() needs neither torch nor TF"),
    )
}

#: Formats holding weights: what a batch of checkpoints can be translated into.
WEIGHT_FORMATS = tuple(name for name, f in FORMATS.items() if f.weights)


def get(name: str) -> Format:
    """The format called ``name``; ``ValueError`` listing the formats for any other name."""
    try:
        return FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown format {name!r}; unigraph writes {', '.join(FORMATS)}") from None


def from_suffix(path: str | os.PathLike) -> str | None:
    """The format an output path's suffix names (``model.ug`` -> ``ug``), or None."""
    suffix = PurePath(path).suffix.lower()
    return next((name for name, f in FORMATS.items() if suffix and f.suffix == suffix), None)


def describe(names=None) -> str:
    """The formats as help text: a line each, ``name  summary``."""
    chosen = [FORMATS[n] for n in (names or FORMATS)]
    width = max(len(f.name) for f in chosen)
    return "\n".join(f"  {f.name.ljust(width)}  {f.summary}" for f in chosen)
