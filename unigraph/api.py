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
