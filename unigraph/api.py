"""Entry points that dispatch to frontends and backends, importing them only when called."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from unigraph.converted import Converted


def from_torch(
    model,
    args: Sequence = (),
    kwargs: Mapping | None = None,
    *,
    dynamic_shapes: Any = "batch",
    strict: bool = False,
) -> Converted:
    """Converts a ``torch.nn.Module`` (or ``torch.export.ExportedProgram``) traced on ``args``.

    Any model ``torch.export`` can trace converts, not a table of known layers.
    By default dimension 0 of every tensor input is one dynamic ``batch``
    dimension; ``dynamic_shapes`` takes torch.export's conventions instead
    (``None`` for fully static shapes). Raises ``ExportError`` when torch
    cannot trace the model, ``UnsupportedOpError`` listing every op that has
    no translation.
    """
    from unigraph.frontends.torch_export import from_torch as _from_torch

    return _from_torch(model, args, kwargs, dynamic_shapes=dynamic_shapes, strict=strict)


def from_flax(
    module,
    variables: Mapping,
    *example_inputs,
    kwargs: Mapping | None = None,
    method=None,
    polymorphic_shapes: Any = "batch",
) -> Converted:
    """Converts a ``flax.linen`` module with its variables, traced on ``example_inputs``.

    ``module.apply(variables, *example_inputs, method=method, **kwargs)`` is
    traced into a jaxpr and translated; every variable keeps its Flax path,
    collection and layout. By default dimension 0 of every batched input is
    one dynamic ``batch``; ``polymorphic_shapes`` takes JAX shape specs per
    positional input (``"(batch, seq, 16)"``) or None for static shapes.
    Raises ``UnsupportedOpError`` listing every JAX primitive without a
    translation.
    """
    from unigraph.frontends.jaxpr import from_flax as _from_flax

    return _from_flax(
        module, variables, *example_inputs, kwargs=kwargs, method=method, polymorphic_shapes=polymorphic_shapes
    )


def from_jax(
    fn,
    params,
    *example_inputs,
    kwargs: Mapping | None = None,
    polymorphic_shapes: Any = "batch",
) -> Converted:
    """Converts ``fn(params, *inputs, **kwargs)``, a JAX function of a parameter pytree and inputs.

    ``params`` becomes the variables (a Flax variable dict keeps its
    collections); shapes as in ``from_flax``.
    """
    from unigraph.frontends.jaxpr import from_jax as _from_jax

    return _from_jax(fn, params, *example_inputs, kwargs=kwargs, polymorphic_shapes=polymorphic_shapes)


def from_keras(
    model,
    example_inputs: Any = None,
    *,
    custom_objects: Mapping[str, Any] | None = None,
    polymorphic_shapes: Any = "batch",
    safe_mode: bool = True,
) -> Converted:
    """Converts a Keras 3 model, or a ``.keras``/``.h5`` file, traced under Keras's JAX backend.

    Any model converts, Functional, Sequential or subclassed, with custom
    layers: the model is traced with ``stateless_call`` into a jaxpr, not
    matched against a table of layers (in a worker process when this
    process's Keras runs another backend). Shapes come from the model's
    inputs (dimension 0 a dynamic ``batch``) or from ``example_inputs``;
    ``custom_objects`` are what a file needs, as classes or importable
    names. Variables take Flax names (``gamma`` → ``scale``, ``moving_mean``
    → ``mean`` in ``batch_stats``); the ParamMap gives the Keras names back.
    Files load with Keras's ``safe_mode`` (a ``Lambda`` layer's bytecode is
    refused) unless ``safe_mode=False``, for files you trust. See
    ``unigraph.frontends.keras.from_keras``.
    """
    from unigraph.frontends.keras import from_keras as _from_keras

    return _from_keras(
        model, example_inputs, custom_objects=custom_objects, polymorphic_shapes=polymorphic_shapes, safe_mode=safe_mode
    )


_FRONTEND_OPTIONS = ("dynamic_shapes", "strict", "custom_objects", "polymorphic_shapes")


def convert(
    model, args: Sequence = (), kwargs: Mapping | None = None, *, to: str, output, **options
) -> Converted:
    """Converts ``model`` traced on ``args``/``kwargs`` and writes it as ``to`` at ``output``.

    ``to`` is any format of ``unigraph.formats.FORMATS`` (the command line's
    ``--to``): ``"savedmodel"``, ``"safetensors"`` (the Flax variables),
    ``"torch"`` (the state dict as safetensors), ``"torch_source"`` (a Python
    file defining the model in PyTorch), ``"orbax"`` or ``"ug"``. ``model`` is
    a ``torch.nn.Module`` (or ``ExportedProgram``), a Keras 3 model, or an
    existing ``Converted``. ``options`` go to the frontend (``dynamic_shapes``,
    ``strict``; ``custom_objects``, ``polymorphic_shapes`` for Keras) or to
    the writer (``platforms``, ``class_name``, ``overwrite``). An existing
    ``output`` is refused before anything is converted unless
    ``overwrite=True``. Returns the ``Converted``, to check or write again.
    """
    from unigraph import formats
    from unigraph.io.atomic import refuse_existing

    formats.get(to)  # an unknown format is refused before anything is traced
    refuse_existing(output, overwrite=options.get("overwrite", False))
    frontend = {k: options.pop(k) for k in _FRONTEND_OPTIONS if k in options}
    if isinstance(model, Converted):
        if frontend:
            raise TypeError(f"{sorted(frontend)} apply when tracing a model, not to a Converted")
        converted = model
    elif framework_of(model) == "torch":
        converted = from_torch(model, args, kwargs, **frontend)
    elif framework_of(model) == "keras":
        if len(args) > 1 or kwargs:
            raise TypeError("a Keras model takes one input (an array, a list or a dict of arrays): pass args=(inputs,)")
        converted = from_keras(model, args[0] if args else None, **frontend)
    else:
        raise TypeError(
            f"cannot convert a {type(model).__name__}: convert() takes a torch.nn.Module, an "
            "ExportedProgram, a Keras model or a Converted (for JAX and Flax models, pass what "
            "from_jax or from_flax returns)"
        )
    converted.write(to, output, **options)
    return converted


def framework_of(model) -> str | None:
    """``"torch"``, ``"keras"`` or ``"tensorflow"``: the framework a model object belongs to, by the
    packages of its classes (nothing is imported); None for anything else."""
    packages = {c.__module__.partition(".")[0] for c in type(model).__mro__}
    return next((name for name in ("torch", "keras", "tensorflow") if name in packages), None)
