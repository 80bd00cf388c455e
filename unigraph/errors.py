"""The one exception hierarchy of unigraph.

Every error a user can trigger is a ``UnigraphError``; each subclass also
derives from the built-in exception a caller would naturally catch
(``ValueError``, ``TypeError``, ``NotImplementedError``), so existing
``except`` clauses keep working. Messages say what went wrong, where, and what
to do next.
"""

from __future__ import annotations

from dataclasses import dataclass


class UnigraphError(Exception):
    """Base class of every error unigraph raises on purpose."""


class GraphError(UnigraphError, ValueError):
    """A graph is malformed: unknown op, bad attribute, undefined value, …"""


class LoweringError(UnigraphError, RuntimeError):
    """An op's lowering failed or produced a value that contradicts its type."""


class InputError(UnigraphError, ValueError):
    """A converted model was called with inputs that do not fit its signature."""


class ShapeMismatchError(UnigraphError, ValueError):
    """A tensor (usually a parameter) does not have the shape that was expected."""

    def __init__(self, name: str, expected, found, where: str = ""):
        self.name, self.expected, self.found = name, tuple(expected), tuple(found)
        at = f" in {where}" if where else ""
        super().__init__(
            f"tensor {name!r}{at}: expected shape {list(self.expected)}, found {list(self.found)}"
        )


class CheckpointError(UnigraphError, ValueError):
    """A file cannot be read: missing, truncated, corrupt or of the wrong format."""


class OutputExistsError(UnigraphError, FileExistsError):
    """The output path already exists and the caller did not ask to overwrite it."""


class ExportError(UnigraphError, RuntimeError):
    """The source framework could not trace the model."""


@dataclass(frozen=True)
class UnsupportedOp:
    """One op that no frontend handler translates, and every place it was used."""

    op: str
    locations: tuple[str, ...]

    def __str__(self) -> str:
        where = "\n".join(f"      at {loc}" for loc in self.locations[:5])
        more = len(self.locations) - 5
        if more > 0:
            where += f"\n      … and {more} more"
        return f"  - {self.op} (used {len(self.locations)}×)\n{where}"


class UnsupportedOpError(UnigraphError, NotImplementedError):
    """Every op of a model that cannot be translated, listed at once."""

    def __init__(self, ops: list[UnsupportedOp], framework: str = "the source"):
        self.ops = list(ops)
        listing = "\n".join(str(op) for op in self.ops)
        super().__init__(
            f"{len(self.ops)} op(s) of {framework} model have no unigraph translation:\n"
            f"{listing}\n"
            "Nothing was converted. Rewrite these calls with supported ones, or open an "
            "issue naming the ops above."
        )


class TranslationError(UnigraphError, RuntimeError):
    """A frontend failed to translate one source op (a bug worth reporting)."""


def first_line(error: BaseException | str) -> str:
    """The first line of an error's message (its class name when the message is empty): for one-line reports."""
    text = str(error).strip()
    if text:
        return text.splitlines()[0].strip()
    return type(error).__name__ if isinstance(error, BaseException) else ""
