"""Model sources of the command line: which format a path holds, and opening it.

A source is one of:

- ``pt2``: a ``torch.export`` ExportedProgram saved with ``torch.export.save``
  (no Python code needed);
- ``hf``: a Hugging Face model folder (``config.json`` and ``*.safetensors``,
  sharded or not, or ``pytorch_model.bin``), built from its config with
  transformers and its weights read by ``unigraph.cli.checkpoints``;
- ``factory``: ``pkg.module:factory`` (or ``path/file.py:factory``), a
  callable returning a ``torch.nn.Module`` (or ``(module, example_args)``),
  with weights from ``--weights FILE``;
- ``keras``: a ``.keras`` file, a Keras folder, or a legacy ``.h5`` file;
- ``ug``: unigraph's own bundle.

``open_source`` returns a ``Source``: the model as the checker runs it, the
example inputs it was traced with, and its conversion (done on first use).
Frameworks are imported only by the loader of their kind.

Nothing a file contains runs unless the caller says so: ``.pt2`` archives
whose content needs unpickling and torch files that need more than
``weights_only`` loading are refused without ``trust_pickle``; Hugging Face
configs that name custom code (``auto_map``) and Keras files with Lambda
layers (Keras's ``safe_mode``) are refused without ``trust_remote_code``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import json
import logging
import os
import pickle
import re
import sys
import warnings
import zipfile
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from unigraph.cli import checkpoints, sampling
from unigraph.cli.scoped import environment, sys_path
from unigraph.converted import Converted
from unigraph.errors import CheckpointError, ExportError, InputError, ShapeMismatchError, first_line
from unigraph.io import sniff
from unigraph.io.bundle import is_bundle

KINDS = ("pt2", "hf", "factory", "keras", "ug")
_FACTORY = re.compile(r"(?:[A-Za-z_][\w.]*|.+\.py):[A-Za-z_][\w.]*")


# ---- input specifications ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """One ``--input-shape``/``--dtype`` pair: an input's name (or position), shape and dtype."""

    name: str | None
    shape: tuple[int, ...] | None
    dtype: str | None = None


def parse_inputs(shapes: Sequence[str] = (), dtypes: Sequence[str] = ()) -> list[InputSpec]:
    """``["1x3x32x32", "ids=2x8"]`` and ``["float32", "ids=int64"]`` as input specs.

    Unnamed shapes and dtypes pair up by position; a single unnamed dtype
    applies to every unnamed shape. Named ones pair up by name.
    """
    named: dict[str, dict] = {}
    positional: list[dict] = []
    for text in shapes:
        name, value = _split(text)
        shape = _shape(text, value)
        (named.setdefault(name, {}) if name else _append(positional))["shape"] = shape
    loose = []
    for text in dtypes:
        name, value = _split(text)
        dtype = _dtype(text, value)
        if name:
            named.setdefault(name, {})["dtype"] = dtype
        else:
            loose.append(dtype)
    if loose:
        if len(loose) == 1 and len(positional) != 1:
            for p in positional or [_append(positional)]:
                p["dtype"] = loose[0]
        elif len(loose) == len(positional) or not positional:
            while len(positional) < len(loose):
                positional.append({})
            for p, dtype in zip(positional, loose):
                p["dtype"] = dtype
        else:
            raise InputError(f"{len(loose)} --dtype values for {len(positional)} --input-shape values; give one, or one per shape")
    specs = [InputSpec(None, p.get("shape"), p.get("dtype")) for p in positional]
    specs += [InputSpec(n, v.get("shape"), v.get("dtype")) for n, v in named.items()]
    return specs


def _append(items: list[dict]) -> dict:
    items.append({})
    return items[-1]


def _split(text: str) -> tuple[str | None, str]:
    name, sep, value = text.rpartition("=")
    return (name.strip() or None, value.strip()) if sep else (None, text.strip())


def _shape(text: str, value: str) -> tuple[int, ...]:
    if value in ("", "scalar"):
        return ()
    try:
        shape = tuple(int(d) for d in re.split(r"[x,]", value))
    except ValueError:
        shape = None
    if not shape or any(d < 0 for d in shape):
        raise InputError(f"--input-shape {text!r}: write a shape as sizes joined by 'x' (1x3x224x224), optionally NAME=1x3x224x224")
    return shape


def _dtype(text: str, value: str) -> str:
    from unigraph.dtypes import dtype_name

    try:
        return dtype_name(value)
    except (ValueError, TypeError):
        raise InputError(f"--dtype {text!r}: unknown dtype {value!r} (float32, float16, bfloat16, int64, int32, bool, …)") from None


# ---- sources ----------------------------------------------------------------------------------------


@dataclasses.dataclass
class Options:
    """How to open a source (the command line's source options)."""

    kind: str | None = None  # --from
    inputs: Sequence[InputSpec] = ()
    weights: str | None = None
    trust_pickle: bool = False
    trust_remote_code: bool = False
    require_weights: bool = True  # a Hugging Face folder without weights: an error, or random weights


class Source:
    """An opened model source: what the checker runs, how it was traced, and its conversion."""

    def __init__(
        self,
        spec: str,
        kind: str,
        model: Any,
        description: str,
        convert: Callable[[], Converted],
        tensors: Callable[[], dict[str, tuple[tuple[int, ...], np.dtype]]],
        example: tuple[tuple, dict] | None = None,
        inputs: Sequence[InputSpec] = (),
    ):
        self.spec, self.kind, self.model, self.description = spec, kind, model, description
        self._convert, self._tensors = convert, tensors
        self.example, self.inputs = example, list(inputs)

    @functools.cached_property
    def converted(self) -> Converted:
        return self._convert()

    def tensors(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """The source model's weights by name: shape and dtype (for ``inspect``)."""
        return self._tensors()

    def check_inputs(self, conv: Converted, seed: int = 0) -> tuple[tuple, dict]:
        """Seeded inputs for a check, shaped as ``--input-shape`` says or as the model was traced."""
        graph = conv.graph
        given: dict[str, tuple] = {}
        if any(s.shape is not None for s in self.inputs):
            positional = iter(n for n in graph.inputs)
            for spec in self.inputs:
                name = spec.name or next(positional, None)
                if name not in graph.types:
                    raise InputError(f"--input-shape names {spec.name!r}, but the model's inputs are {list(graph.inputs)}")
                if spec.shape is not None:
                    given[name] = spec.shape
        elif self.example is not None:
            given = sampling.example_shapes(graph, *self.example)
        shapes = sampling.input_shapes(graph, given)
        arrays = sampling.sample_inputs(graph, shapes, seed)
        return sampling.call_arguments(graph, arrays)


def detect(spec: str, kind: str | None = None) -> str:
    """The kind of source ``spec`` names (``--from`` overrides the detection)."""
    if kind is not None:
        if kind not in KINDS:
            raise InputError(f"--from {kind!r}: sources are {', '.join(KINDS)}")
        return kind
    path = Path(spec)
    if not path.exists():
        if _FACTORY.fullmatch(spec):
            return "factory"
        raise CheckpointError(f"{spec}: no such file or directory")
    if path.is_dir():
        if sniff.is_savedmodel(path):
            raise CheckpointError(
                f"{spec}: a TF SavedModel; unigraph writes SavedModels but does not read them: "
                "convert from the model's source (.pt2, .keras, a Hugging Face folder)"
            )
        if (path / "config.json").is_file():
            config = _read_json(path / "config.json")
            return "keras" if "class_name" in config and "model_type" not in config else "hf"
        raise CheckpointError(f"{spec}: a directory without config.json (not a Hugging Face or Keras model folder)")
    name = path.name.lower()
    if name == "config.json":
        return "hf"
    if name.endswith(".pt2") or sniff.is_pt2(path):
        return "pt2"
    if name.endswith((".keras", ".h5", ".hdf5")) or sniff.is_hdf5(path) or sniff.is_keras_archive(path):
        return "keras"
    if name.endswith(".ug") or is_bundle(path):
        return "ug"
    if sniff.is_safetensors(path) or name.endswith(checkpoints.TORCH_SUFFIXES) or sniff.is_zip(path):
        raise CheckpointError(
            f"{spec}: a weights file, which holds no architecture: convert it as "
            f"'pkg.module:factory --weights {spec}', or translate many with "
            "'unigraph translate … --arch ARCH'"
        )
    raise CheckpointError(f"{spec}: not a model unigraph reads (.pt2, a Hugging Face folder, .keras, .h5, .ug)")


def open_source(spec: str, options: Options | None = None) -> Source:
    """Opens the model ``spec`` names; errors say which file and what is wrong with it."""
    options = options or Options()
    kind = detect(spec, options.kind)
    if options.weights is not None and kind != "factory":
        raise InputError(f"--weights applies to a pkg.module:factory source, not to a {kind} source ({spec})")
    return _OPENERS[kind](spec, options)


# ---- .pt2 ----------------------------------------------------------------------------------------------


def _open_pt2(spec: str, options: Options) -> Source:
    import torch

    path = Path(spec)
    if not options.trust_pickle:
        _refuse_unsafe_pt2(path)
    try:
        with _quiet_loggers("torch.export", "torch._export"):
            program = torch.export.load(str(path))
    except pickle.UnpicklingError as e:
        raise _pickle_refusal(path, e) from None
    except Exception as e:  # torch raises many types for a damaged archive
        raise CheckpointError(f"{path}: not a readable torch.export program ({first_line(e)})") from None
    example = _torch_example(options.inputs) if options.inputs else program.example_inputs

    def convert() -> Converted:
        from unigraph.api import from_torch

        return from_torch(program)

    return Source(
        spec, "pt2", program, f"ExportedProgram {path.name} (torch {torch.__version__})", convert,
        lambda: _torch_tensors(program.state_dict), example, options.inputs,
    )


def _refuse_unsafe_pt2(path: Path) -> None:
    """Refuses an archive whose loading would unpickle anything but plain tensors.

    ``torch.export.load`` unpickles the tensors a config marks ``use_pickle``
    with ``weights_only=False``, and its other pickles (the sample inputs)
    with ``weights_only=True`` first, then, if that fails, with
    ``weights_only=False``. So: nothing marked ``use_pickle``, no pickled
    legacy weights, and every other pickle must load with
    ``weights_only=True`` here, which makes torch's first attempt succeed.
    """
    import torch

    try:
        archive = zipfile.ZipFile(path)
    except _ZIP_ERRORS as e:
        raise CheckpointError(f"{path}: not a .pt2 archive (truncated or corrupt: {first_line(e)})") from None
    with archive:
        names = archive.namelist()
        if not any(n.endswith("/archive_format") or n == "archive_format" for n in names):
            raise CheckpointError(
                f"{path}: refused: an old .pt2 format that loads by unpickling, which can run code. "
                "Re-save it with torch.export.save, or pass --trust-pickle if you trust the file"
            )
        for name in names:
            if re.search(r"data/weights/[^/]+\.pt$|data/constants/[^/]+\.pt$", name):
                raise CheckpointError(
                    f"{path}: refused: its weights are pickled ({name}), and unpickling can run code. "
                    "Re-save it with a recent torch.export.save, or pass --trust-pickle if you trust the file"
                )
            if re.search(r"data/sample_inputs/[^/]+\.pt$", name):
                try:
                    torch.load(io.BytesIO(_member(path, archive, name)), weights_only=True)
                except CheckpointError:
                    raise
                except pickle.UnpicklingError as e:
                    raise _pickle_refusal(path, e) from None
                except Exception as e:  # torch raises many types for damaged bytes
                    raise CheckpointError(f"{path}: corrupt .pt2 archive ({name}: {first_line(e)})") from None
            if not re.search(r"data/(weights|constants)/[^/]+_config\.json$", name):
                continue
            try:
                config = json.loads(_member(path, archive, name))["config"]
                if not isinstance(config, dict) or not all(isinstance(e, dict) for e in config.values()):
                    raise ValueError("its 'config' is not an object of objects")
            except (KeyError, TypeError, ValueError, RecursionError) as e:
                raise CheckpointError(f"{path}: corrupt .pt2 archive ({name}: {first_line(e)})") from None
            for fqn, entry in config.items():
                plain = not entry.get("use_pickle") and (
                    "/weights/" in name or str(entry.get("path_name", "")).startswith("tensor_")
                )
                if not plain:
                    raise CheckpointError(
                        f"{path}: refused: {fqn!r} is stored as a pickled object, and unpickling can run "
                        "code. Pass --trust-pickle if you trust the file"
                    )


#: What reading a damaged zip raises: bad headers, CRCs and streams, unknown versions and compressions, names.
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError, ValueError, UnicodeDecodeError)


def _member(path: Path, archive: zipfile.ZipFile, name: str) -> bytes:
    try:
        return archive.read(name)
    except _ZIP_ERRORS as e:
        raise CheckpointError(f"{path}: corrupt archive ({name}: {first_line(e) or type(e).__name__})") from None


# ---- Hugging Face folders ------------------------------------------------------------------------------


def _open_hf(spec: str, options: Options) -> Source:
    folder = Path(spec)
    if folder.is_file():
        folder = folder.parent
    config_json = _read_json(folder / "config.json")
    auto_map = config_json.get("auto_map")
    if auto_map is not None and not isinstance(auto_map, dict):
        raise CheckpointError(f"{folder / 'config.json'}: 'auto_map' should be an object naming classes")
    if auto_map and not options.trust_remote_code:
        raise CheckpointError(
            f"{folder / 'config.json'}: refused: it asks for custom code ({', '.join(sorted(auto_map))}), "
            "which would run on loading. Nothing was run. Pass --trust-remote-code if you trust the folder"
        )
    import torch
    import transformers

    with _quiet_transformers():
        try:
            config = transformers.AutoConfig.from_pretrained(
                str(folder), trust_remote_code=options.trust_remote_code, local_files_only=True
            )
        except Exception as e:  # transformers raises many types for values it does not take
            raise CheckpointError(f"{folder / 'config.json'}: not a configuration transformers reads ({first_line(e)})") from None
        cls = _hf_class(folder, config, auto_map if options.trust_remote_code else None)
        if hasattr(config, "use_cache"):
            config.use_cache = False
        if checkpoints.has_hf_weights(folder):
            model = _hf_with_weights(folder, cls, config, config_json, options)
        elif options.require_weights:
            checkpoints.hf_weights_file(folder)  # raises: no weights found
        else:
            with torch.random.fork_rng(devices=[]):  # seeded weights; the caller's generator as it was
                torch.manual_seed(0)
                model = _hf_build(folder, cls, config)
    model.eval()
    example = _hf_example(model, config, options.inputs)

    def convert() -> Converted:
        from unigraph.api import from_torch

        args, kwargs = example
        dynamic = _hf_dynamic_shapes(kwargs)
        if dynamic is not None:
            try:
                return from_torch(model, args, kwargs, dynamic_shapes=dynamic)
            except ExportError as error:
                warnings.warn(
                    f"{spec}: {type(model).__name__} does not trace with a dynamic sequence length "
                    f"({first_line(error)}); converting it for the traced length, with a dynamic batch only",
                    stacklevel=2,
                )
        return from_torch(model, args, kwargs)

    return Source(
        spec, "hf", model, f"{type(model).__name__} (transformers {transformers.__version__})", convert,
        lambda: _torch_tensors(model.state_dict()), example, options.inputs,
    )


def _hf_class(folder: Path, config, auto_map):
    import transformers

    architectures = getattr(config, "architectures", None)
    architecture = architectures[0] if isinstance(architectures, (list, tuple)) and architectures else None
    if auto_map:
        from transformers.dynamic_module_utils import get_class_from_dynamic_module

        refs = {k: (v[0] if isinstance(v, (list, tuple)) else v) for k, v in auto_map.items() if k.startswith("AutoModel")}
        ref = next((r for r in refs.values() if r.rsplit(".", 1)[-1] == architecture), refs.get("AutoModel"))
        if ref:
            return get_class_from_dynamic_module(ref, str(folder))
    if isinstance(architecture, str) and isinstance(getattr(transformers, architecture, None), type):
        return getattr(transformers, architecture)
    try:
        return transformers.AutoModel._model_mapping[type(config)]
    except KeyError:
        raise CheckpointError(
            f"{folder}: transformers {transformers.__version__} has no model class for "
            f"{getattr(config, 'model_type', '?')!r}"
        ) from None


def _hf_with_weights(folder: Path, cls, config, config_json: dict, options: Options):
    from unigraph.frontends.torch_tensors import from_numpy

    weights = checkpoints.hf_weights_file(folder)
    with checkpoints.open_checkpoint(weights, trust_pickle=options.trust_pickle) as ckpt:
        _check_model_size(folder, cls, config, config_json, ckpt)
        state = {name: from_numpy(ckpt.read(name)) for name in ckpt.names()}
    try:
        model, info = cls.from_pretrained(
            None, config=config, state_dict=state, output_loading_info=True, ignore_mismatched_sizes=True
        )
    except Exception as e:  # transformers raises many types for a config it cannot build
        raise CheckpointError(
            f"{folder / 'config.json'}: transformers cannot build {cls.__name__} from it ({type(e).__name__}: {first_line(e)})"
        ) from None
    for name, found, expected in sorted(info.get("mismatched_keys") or (), key=str):
        raise ShapeMismatchError(name, tuple(expected), tuple(found), str(weights))
    for kind in ("missing", "unexpected"):
        names = sorted(info.get(f"{kind}_keys") or ())
        if names:
            shown = ", ".join(repr(n) for n in names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            raise CheckpointError(
                f"{weights}: {kind} tensor(s) {shown} for {cls.__name__} (is this a checkpoint of another architecture?)"
            )
    return model


def _hf_build(folder: Path, cls, config):
    try:
        return cls(config)
    except Exception as e:  # transformers raises many types for a config it cannot build
        raise CheckpointError(
            f"{folder / 'config.json'}: transformers cannot build {cls.__name__} from it ({type(e).__name__}: {first_line(e)})"
        ) from None


def _check_model_size(folder: Path, cls, config, config_json: dict, ckpt: checkpoints.Checkpoint) -> None:
    """Refuses a config that describes a model larger than its weights, before anything is allocated.

    A damaged or hostile ``config.json`` (a billion layers, a hidden size of
    2**40) would otherwise hang or exhaust memory while the model is built.
    Each layer holds at least one tensor, so a layer count above the
    checkpoint's tensor count is refused at once; the model is then built on
    the meta device (no memory) and refused if its parameters far outnumber
    the weights' elements (they must all come from the weights). A model whose
    code cannot run on the meta device skips that second check.
    """
    import torch

    tensors = len(ckpt.names())
    for key, value in _config_ints(config_json):
        if "layers" in key and value > tensors:
            raise CheckpointError(
                f"{folder / 'config.json'}: {key} = {value}, but the weights hold only {tensors} tensors"
            )
    try:
        with torch.device("meta"):
            model = cls(config)
    except Exception:  # noqa: BLE001  (a model that cannot be built on the meta device is built for real)
        return
    needed = sum(p.numel() for p in model.parameters())
    held = sum(int(np.prod(shape, dtype=object)) for shape in ckpt.shapes().values())
    if needed > 2 * held + 2**20:
        raise CheckpointError(
            f"{folder / 'config.json'}: describes a {cls.__name__} of {needed:,} parameters, "
            f"but the weights hold {held:,} values"
        )


def _config_ints(value, key: str = ""):
    """Every (key, integer) in a JSON config, nested configs included."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _config_ints(v, str(k))
    elif isinstance(value, list):
        for v in value:
            yield from _config_ints(v, key)
    elif isinstance(value, int) and not isinstance(value, bool):
        yield key, value


def _hf_example(model, config, inputs: Sequence[InputSpec]) -> tuple[tuple, dict]:
    """Keyword inputs to trace a Hugging Face model with: its main input, a mask, decoder ids."""
    import inspect

    import torch

    generator = torch.Generator().manual_seed(0)
    parameters = inspect.signature(model.forward).parameters
    if any(s.name for s in inputs):
        unnamed = [s for s in inputs if not s.name]
        if unnamed:
            raise InputError("name every --input-shape of a Hugging Face model (input_ids=2x8), or none")
        kwargs = {}
        for s in inputs:
            if s.name not in parameters:
                raise InputError(f"--input-shape {s.name}=…: {type(model).__name__}.forward takes no {s.name!r}")
            kwargs[s.name] = _random(s.shape or (2, 8), s.dtype or _hf_default_dtype(s.name), _vocab(config), generator)
        return (), kwargs
    main = getattr(model, "main_input_name", "input_ids")
    given = inputs[0] if inputs else InputSpec(None, None)
    if len(inputs) > 1:
        raise InputError("a Hugging Face model takes one unnamed --input-shape (its main input); name the others")
    if main == "input_ids":
        shape = given.shape or (2, 8)
        kwargs = {"input_ids": _random(shape, given.dtype or "int64", _vocab(config), generator)}
        if "attention_mask" in parameters:
            kwargs["attention_mask"] = torch.ones(shape, dtype=torch.int64)
        if getattr(config, "is_encoder_decoder", False) and "decoder_input_ids" in parameters:
            kwargs["decoder_input_ids"] = _random(shape, "int64", _vocab(config), generator)
        return (), kwargs
    defaults = {
        "pixel_values": lambda: (2, getattr(config, "num_channels", 3), *_pair(getattr(config, "image_size", 224))),
        "input_features": lambda: (2, config.num_mel_bins, 2 * config.max_source_positions),
        "input_values": lambda: (2, 1600),
    }
    if given.shape is None and main not in defaults:
        raise InputError(f"{type(model).__name__}: give its inputs with --input-shape NAME=SHAPE (and --dtype NAME=DTYPE)")
    shape = given.shape or defaults[main]()
    kwargs = {main: _random(shape, given.dtype or "float32", _vocab(config), generator)}
    if getattr(config, "is_encoder_decoder", False) and "decoder_input_ids" in parameters:
        kwargs["decoder_input_ids"] = _random((shape[0], 4), "int64", _vocab(config), generator)
    return (), kwargs


def _hf_dynamic_shapes(kwargs: dict):
    """Batch dynamic for every input; the sequence too for token inputs (ids and masks)."""
    import torch
    from torch.export import Dim

    batch = Dim("batch")
    if any(t.shape[0] < 2 for t in kwargs.values()):
        return None  # torch specializes size-1 dimensions: from_torch's default handles a batch of 1
    spec = {}
    for name, t in kwargs.items():
        token = t.ndim == 2 and not t.is_floating_point() and t.dtype != torch.bool
        spec[name] = {0: batch, 1: Dim.AUTO} if token else {0: batch}
    return spec


def _hf_default_dtype(name: str) -> str:
    return "int64" if name.endswith(("_ids", "mask", "_ids_mask")) else "float32"


def _vocab(config) -> int:
    for c in (config, getattr(config, "get_text_config", lambda: None)()):
        size = getattr(c, "vocab_size", None)
        if isinstance(size, int) and size > 0:
            return size
    return 2


def _pair(size) -> tuple[int, int]:
    return tuple(size) if isinstance(size, (list, tuple)) else (size, size)


@contextlib.contextmanager
def _quiet_transformers():
    import transformers

    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    try:
        yield
    finally:
        transformers.logging.set_verbosity(verbosity)
        transformers.utils.logging.enable_progress_bar()


# ---- factories -----------------------------------------------------------------------------------------


def _open_factory(spec: str, options: Options) -> Source:
    import torch

    model, example = _call_factory(spec)
    if options.weights is not None:
        load_weights(model, options.weights, trust_pickle=options.trust_pickle)
    model.eval()
    if options.inputs:
        example = _torch_example(options.inputs)
    elif example is None:
        raise InputError(f"{spec}: give the model's inputs with --input-shape (1x3x224x224, one per input) to trace it")

    def convert() -> Converted:
        from unigraph.api import from_torch

        return from_torch(model, *example)

    return Source(
        spec, "factory", model, f"{type(model).__name__} from {spec} (torch {torch.__version__})", convert,
        lambda: _torch_tensors(model.state_dict()), example, options.inputs,
    )


def _call_factory(spec: str):
    import importlib
    import importlib.util

    import torch

    module_name, _, attr = spec.rpartition(":")
    try:
        if module_name.endswith(".py"):
            location = Path(module_name)
            if not location.is_file():
                raise CheckpointError(f"{spec}: no such file {module_name}")
            module_spec = importlib.util.spec_from_file_location(location.stem, location)
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
        elif "" in sys.path:
            module = importlib.import_module(module_name)
        else:
            with sys_path(os.getcwd()):  # as `python -m` does: the current directory's packages
                module = importlib.import_module(module_name)
    except CheckpointError:
        raise
    except Exception as e:  # the user's module can raise anything while importing
        raise CheckpointError(f"{spec}: cannot import {module_name} ({type(e).__name__}: {first_line(e)})") from None
    try:
        factory = functools.reduce(getattr, attr.split("."), module)
    except AttributeError:
        raise CheckpointError(f"{spec}: {module_name} has no {attr!r}") from None
    try:
        result = factory()
    except Exception as e:  # the user's factory can raise anything
        raise CheckpointError(f"{spec}: {attr}() failed ({type(e).__name__}: {first_line(e)})") from None
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], torch.nn.Module):
        model, args = result
        return model, (tuple(args) if isinstance(args, (tuple, list)) else (args,), {})
    if isinstance(result, torch.nn.Module):
        return result, None
    raise CheckpointError(f"{spec}: {attr}() returned a {type(result).__name__}, not a torch.nn.Module")


def load_weights(model, path: str | os.PathLike, *, trust_pickle: bool = False) -> None:
    """Loads a state dict file into ``model``, refusing missing, unexpected or misshapen tensors."""
    from unigraph.frontends.torch_tensors import from_numpy

    expected = model.state_dict(keep_vars=True)
    tied: dict[int, list[str]] = {}
    for name, tensor in expected.items():
        tied.setdefault(id(tensor), []).append(name)
    with checkpoints.open_checkpoint(path, trust_pickle=trust_pickle) as ckpt:
        shapes = ckpt.shapes()
        missing = [n for n in expected if not any(a in shapes for a in tied[id(expected[n])])]
        unexpected = [n for n in shapes if n not in expected]
        for kind, names in (("missing", missing), ("unexpected", unexpected)):
            if names:
                shown = ", ".join(repr(n) for n in names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
                raise CheckpointError(
                    f"{path}: {kind} tensor(s) {shown} for {type(model).__name__} "
                    "(is this a checkpoint of another architecture?)"
                )
        for name, shape in shapes.items():
            if tuple(expected[name].shape) != shape:
                raise ShapeMismatchError(name, tuple(expected[name].shape), shape, str(path))
        state = {name: from_numpy(ckpt.read(name)) for name in shapes}
    model.load_state_dict(state, strict=False)


def _torch_example(inputs: Sequence[InputSpec]) -> tuple[tuple, dict]:
    import torch

    generator = torch.Generator().manual_seed(0)
    args = tuple(_random(s.shape or (), s.dtype or "float32", 2, generator) for s in inputs if not s.name)
    kwargs = {s.name: _random(s.shape or (), s.dtype or "float32", 2, generator) for s in inputs if s.name}
    return args, kwargs


def _random(shape, dtype: str, high: int, generator):
    import torch

    torch_dtype = getattr(torch, dtype)
    if torch_dtype == torch.bool:
        return torch.randint(0, 2, shape, generator=generator).bool()
    if torch_dtype.is_floating_point:
        return torch.randn(shape, generator=generator).to(torch_dtype)
    return torch.randint(0, high, shape, generator=generator, dtype=torch_dtype)


def _torch_tensors(state_dict) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    from unigraph.frontends.torch_tensors import numpy_dtype

    seen, out = set(), {}
    for name, t in state_dict.items():
        if id(t) not in seen:
            seen.add(id(t))
            out[name] = (tuple(t.shape), numpy_dtype(t.dtype))
    return out


# ---- Keras ---------------------------------------------------------------------------------------------


def _open_keras(spec: str, options: Options) -> Source:
    from unigraph.native_order import before_tensorflow

    before_tensorflow()  # the file may need keras_hub, which loads TensorFlow: triton first (unigraph.native_order)
    with environment(KERAS_BACKEND="jax"):  # a Keras first imported here traces in this process, no worker
        import keras

        from unigraph.frontends import keras as keras_frontend
    model = keras_frontend.load_model(keras_frontend.model_file(spec), {}, safe_mode=not options.trust_remote_code)
    example = _keras_example(options.inputs) if options.inputs else None

    def convert() -> Converted:
        from unigraph.api import from_keras

        return from_keras(model, None if example is None else example[0][0])

    def tensors():
        return {w.path: (tuple(w.shape), np.dtype(w.dtype)) for w in model.weights}

    return Source(
        spec, "keras", model, f"{type(model).__name__} {getattr(model, 'name', '')} (keras {keras.__version__})",
        convert, tensors, example, options.inputs,
    )


def _keras_example(inputs: Sequence[InputSpec]) -> tuple[tuple, dict]:
    """What a Keras model is called with: one array, a list of them, or a dict by input name."""
    rng = np.random.default_rng(0)

    def make(s: InputSpec) -> np.ndarray:
        return rng.standard_normal(s.shape or ()).astype(s.dtype or "float32")

    if all(s.name for s in inputs):
        inputs_value = {s.name: make(s) for s in inputs}
    elif any(s.name for s in inputs):
        raise InputError("name every --input-shape of a Keras model (its input names), or none")
    else:
        inputs_value = make(inputs[0]) if len(inputs) == 1 else [make(s) for s in inputs]
    return (inputs_value,), {}


# ---- unigraph bundles ----------------------------------------------------------------------------------


def _open_ug(spec: str, options: Options) -> Source:
    from unigraph.io.bundle import load
    from unigraph.params import flatten_variables

    conv = load(spec)  # a truncated or corrupt file: refused with what is wrong with it

    def tensors():
        return {k: (tuple(np.shape(v)), np.dtype(v.dtype)) for k, v in flatten_variables(conv.variables).items()}

    source = conv.metadata.get("source_model", "model")
    return Source(spec, "ug", conv, f"unigraph bundle of {source}", lambda: conv, tensors, None, options.inputs)


_OPENERS = {"pt2": _open_pt2, "hf": _open_hf, "factory": _open_factory, "keras": _open_keras, "ug": _open_ug}


# ---- helpers ----------------------------------------------------------------------------------------------


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({first_line(e)})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: not a JSON object")
    return data


def _pickle_refusal(path: Path, error: Exception) -> CheckpointError:
    return CheckpointError(
        f"{path}: refused: loading it needs arbitrary unpickling, which can run code "
        f"({first_line(error)}). Pass --trust-pickle if you trust the file"
    )


@contextlib.contextmanager
def _quiet_loggers(*names: str):
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
