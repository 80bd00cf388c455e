"""``Converted``: what every frontend returns, and what every backend takes."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from unigraph import formats, signature
from unigraph.compile_options import at_top_level, compiler_options
from unigraph.flax import GraphModule, run
from unigraph.ir import Graph
from unigraph.params import ParamMap, flatten_variables


class Converted:
    """A converted model: graph, Flax variables, and the map back to the source tensors.

    - ``conv(*args, **kwargs)`` runs it, jitted, taking and returning the
      source model's structure (NumPy, JAX or torch tensors in, JAX arrays out).
    - ``conv.module.apply(conv.variables, …)`` is the same by hand.
    - ``conv.param_map`` records, for every variable leaf, the source tensor
      name and the exact layout transform.
    - ``conv.write(fmt, path)`` writes it in any format of
      ``unigraph.formats.FORMATS``; each format also has its own method
      (``to_savedmodel``, ``save_state_dict``, ``to_torch_source``,
      ``save_safetensors``, ``save_orbax``, ``save``). The writers import
      their backend when called, not before.
    """

    def __init__(
        self,
        graph: Graph,
        variables: Mapping,
        param_map: ParamMap,
        metadata: Mapping[str, Any] | None = None,
        *,
        trace: Any = None,
        precision: str | None = "highest",
    ):
        self.graph = graph
        self.variables = jax.tree.map(jnp.asarray, dict(variables))
        self.param_map = param_map
        self.metadata = dict(metadata or {})
        self.trace = trace  # frontend data for node-by-node checks; never saved
        self.precision = precision

    @functools.cached_property
    def module(self) -> GraphModule:
        return GraphModule(self.graph, precision=self.precision)

    @functools.cached_property
    def _jitted(self):
        """The graph jitted with the compiler options for it on this machine, for calls outside any JAX transformation."""
        return jax.jit(self._run, compiler_options=compiler_options(self.graph))

    @functools.cached_property
    def _jitted_nested(self):
        """The graph jitted plainly, for calls under a caller's ``jit``/``vmap``/``grad`` (no options allowed there)."""
        return jax.jit(self._run)

    def _run(self, variables, inputs):
        return run(self.graph, variables, inputs, self.precision)

    def _call(self, variables, inputs):
        jitted = self._jitted if at_top_level() else self._jitted_nested
        return jitted(variables, inputs)

    def __call__(self, *args, **kwargs):
        args, kwargs = host_arrays((args, kwargs))
        inputs = signature.bind(self.graph, args, kwargs, self.metadata.get("shape_constraints", ()))
        return signature.structure(self.graph, self._call(self.variables, inputs))

    # ---- export ------------------------------------------------------------------------------

    def write(self, fmt: str, path, *, overwrite: bool = False, **options):
        """Writes the model as ``fmt`` (a name of ``unigraph.formats.FORMATS``) at ``path``; returns what
        that format's method returns. ``options`` go to the method (``platforms``, ``class_name``)."""
        return getattr(self, formats.get(fmt).method)(path, overwrite=overwrite, **options)

    def to_savedmodel(self, path, *, platforms=None, overwrite: bool = False):
        """Writes a TF SavedModel directory at ``path`` (through jax2tf); returns the path.

        It serves (``serving_default``, named inputs and outputs, symbolic
        dimensions dynamic), follows TF Hub's Reusable SavedModel API, and its
        variables can be fine-tuned in TensorFlow. ``platforms`` (default
        ``("cpu", "cuda")``) are those it is lowered for, among cpu, cuda, rocm
        and tpu. Written atomically; an existing ``path`` is replaced only with
        ``overwrite=True``. Needs TensorFlow (imported here, not before).
        """
        from unigraph.backends.savedmodel import save

        return save(self, path, platforms=platforms, overwrite=overwrite)

    def to_state_dict(self) -> dict:
        """The variables as a torch state dict: for a torch-origin model, its own state dict
        (names, layouts, dtypes and values, bit for bit); otherwise torch's names and layouts."""
        from unigraph.backends.torch import to_state_dict

        return to_state_dict(self)

    def save_state_dict(self, path, *, overwrite: bool = False):
        """Writes ``to_state_dict()`` as a safetensors file (torch names, layouts and dtypes) at ``path``;
        ``safetensors.torch.load_file`` reads it back into a state dict. Needs no torch."""
        from unigraph.backends.torch_params import save_state_dict

        return save_state_dict(self, path, overwrite=overwrite)

    def to_torch(self):
        """A ``torch.nn.Module`` that runs the graph with torch ops, the weights loaded (eval mode)."""
        from unigraph.backends.torch import to_module

        return to_module(self)

    def to_keras(self, *, channels_last: bool = False):
        """A Functional ``keras.Model`` of Keras layers (``Dense``, ``Conv2D``, norms, …) and Keras ops, under any
        Keras backend, the weights loaded: it trains with ``fit``, its layers freeze, its head can be replaced
        (``unigraph.backends.keras``). Images keep the source's layout (NCHW from torch), or with
        ``channels_last`` are taken and returned NHWC, with no transposes left around convolutions."""
        from unigraph.backends.keras import to_keras

        return to_keras(self, channels_last=channels_last)

    def to_keras_source(self, path, *, channels_last: bool = False, overwrite: bool = False) -> str:
        """Writes the Keras model as a standalone Python file at ``path`` (``build_model()``; it imports only
        keras, and NumPy where needed) and its weights beside it (``net.py``, ``net.weights.h5``); returns the
        source. Written atomically; existing files are replaced only with ``overwrite=True``."""
        from unigraph.backends.keras_codegen import save

        return save(self, path, channels_last=channels_last, overwrite=overwrite)

    def save_keras(self, path, *, channels_last: bool = False, overwrite: bool = False):
        """Writes a folder at ``path`` holding ``model.py`` and ``model.weights.h5`` (``to_keras_source``) and
        ``model.keras`` (the model that file builds, loadable with ``safe_mode=True`` once ``model.py`` is
        imported); returns the path."""
        from unigraph.backends.keras_files import save_folder

        return save_folder(self, path, channels_last=channels_last, overwrite=overwrite)

    def to_tflite(self, path, *, quantize: str | None = None, dynamic: bool = True, overwrite: bool = False):
        """Writes a TFLite (LiteRT) flatbuffer at ``path``, float32 unless ``quantize`` (``"float16"`` weights,
        ``"dynamic_int8"``); symbolic dimensions stay dynamic where TFLite allows (``dynamic=False`` fixes
        them). It is run in LiteRT's interpreter and checked against this model before it appears at
        ``path``; a model that does not convert raises ``LoweringError`` naming the op, and nothing is
        written (``unigraph.backends.tflite``)."""
        from unigraph.backends.tflite import save

        save(self, path, quantize=quantize, dynamic=dynamic, overwrite=overwrite)
        return path

    def to_torch_source(self, path, *, class_name: str = "Model", overwrite: bool = False) -> str:
        """Writes the torch module as a standalone Python file that imports only torch; returns the source."""
        from unigraph.backends.torch import to_source

        return to_source(self, path, class_name, overwrite=overwrite)

    def save(self, path, *, overwrite: bool = False):
        """Writes the ``.ug`` bundle (graph JSON and variables in one safetensors file); ``unigraph.load`` reads it."""
        from unigraph.io.bundle import save

        return save(self, path, overwrite=overwrite)

    def save_safetensors(self, path, *, overwrite: bool = False):
        """Writes the variables as one safetensors file, ``/``-joined paths (``params/fc/kernel``)."""
        from unigraph.io.variables import save

        return save(self.variables, path, overwrite=overwrite)

    def save_orbax(self, path, *, overwrite: bool = False):
        """Writes the variables as an Orbax checkpoint directory (``orbax.checkpoint`` restores it)."""
        from unigraph.backends.orbax import save

        return save(self, path, overwrite=overwrite)

    # ---- description ------------------------------------------------------------------------

    @property
    def input_names(self) -> list[str]:
        return list(self.graph.inputs)

    @property
    def output_names(self) -> list[str]:
        return list(self.graph.outputs)

    def parameter_count(self) -> int:
        return sum(int(x.size) for x in jax.tree.leaves(self.variables.get("params", {})))

    def parameter_bytes(self) -> int:
        return sum(int(x.size) * x.dtype.itemsize for x in jax.tree.leaves(self.variables))

    def summary(self) -> str:
        source = self.metadata.get("source_model", "model")
        framework = self.metadata.get("source_framework", "?")
        shapes = ", ".join(f"{n}: {self.graph.types[n]}" for n in self.graph.inputs)
        outs = ", ".join(f"{n}: {self.graph.types[n]}" for n in self.graph.outputs)
        ops = ", ".join(f"{op}×{n}" for op, n in list(self.graph.op_histogram().items())[:8])
        return (
            f"{source} from {framework}: {len(self.graph.nodes)} nodes, "
            f"{self.parameter_count():,} parameters in {len(flatten_variables(self.variables))} leaves\n"
            f"  inputs:  {shapes}\n  outputs: {outs}\n  ops:     {ops}"
        )

    def __repr__(self) -> str:
        return f"<Converted {self.summary()}>"


def host_arrays(tree: Any) -> Any:
    """A call's arguments with torch tensors as NumPy arrays, converted by the torch frontend (bfloat16
    included); other leaves as they are (``signature.bind`` makes arrays of NumPy-like ones)."""

    def convert(x):
        if type(x).__module__.partition(".")[0] == "torch":
            from unigraph.frontends.torch_tensors import to_numpy

            return to_numpy(x)
        return x

    return jax.tree.map(convert, tree)
