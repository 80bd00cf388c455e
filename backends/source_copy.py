"""Copies unigraph's own functions into generated source files: lowerings and what they call.

A generated model file (``torch_codegen``: a ``torch.nn.Module``;
``keras_codegen``: a Keras model) runs the backend's lowerings themselves,
not a second rendering of them that could drift: each lowering is read with
``inspect``, parsed with ``ast`` and written into the file, and so is every
unigraph function, class and constant it refers to, under a name unique in
the file (``_shape_slice_bounds``, ``_SHAPE_OPEN``). References to modules
become the names the file imports them as (``F``, ``ops``, ``np``); any other
object a file cannot hold is an error at generation, not a broken file.

A lowering whose body is one ``return`` expression can instead be inlined
at its call site with its arguments substituted (``inline``): the generated
code then reads ``ops.gelu(x, approximate=self.approximate)``.
"""

from __future__ import annotations

import ast
import builtins
import copy
import inspect
import keyword
import math
import re
import sys
import textwrap
import types
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from unigraph.names import unique_name


class Identifiers:
    """Valid, unique Python identifiers for names of any kind (graph values, symbols, layers)."""

    def __init__(self, reserved: Sequence[str]):
        self._taken = set(reserved) | set(keyword.kwlist) | set(dir(builtins))
        self._by_name: dict[str, str] = {}

    def __call__(self, name: str) -> str:
        if name not in self._by_name:
            base = re.sub(r"\W", "_", name) or "v"
            if base[0].isdigit():
                base = f"v{base}"
            candidate = unique_name(base, self._taken)
            self._taken.add(candidate)
            self._by_name[name] = candidate
        return self._by_name[name]


def literal(value: Any, string: Callable[[str], str] = repr) -> str:
    """Python source for a plain value (inf and nan through ``math``); ``string`` writes strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return "math.nan" if math.isnan(value) else ("math.inf" if value > 0 else "-math.inf")
    if isinstance(value, str):
        return string(value)
    if isinstance(value, tuple):
        inner = ", ".join(literal(v, string) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, list):
        return "[" + ", ".join(literal(v, string) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{literal(k, string)}: {literal(v, string)}" for k, v in value.items()) + "}"
    return repr(value)


class Copier:
    """The functions, classes and constants copied into one generated file, in the order they are needed.

    ``modules`` maps each module the file imports to the name it has there
    (``{"torch.nn.functional": "F"}``); ``what`` names the copied code in
    errors (``"torch lowering"``). ``used`` collects the module names the
    copied code refers to, so a file imports only those.
    """

    def __init__(self, modules: Mapping[str, str], what: str):
        self.modules = dict(modules)
        self.what = what
        self.used: set[str] = set()
        self._names: dict[Any, str] = {}
        self._taken: set[str] = set()
        self._sources: list[str] = []

    def sources(self) -> list[str]:
        return ["\n" + s for s in self._sources]

    def reserve(self, *names: str) -> None:
        """Names the file defines itself, which copied code must not take."""
        self._taken.update(names)

    def emit(self, obj: Callable) -> str:
        """The file's name for a unigraph function or class, copied into the file on first use."""
        if obj not in self._names:
            name = unique_name(f"_{obj.__module__.rsplit('.', 1)[-1]}_{obj.__name__.lstrip('_')}", self._taken)
            self._taken.add(name)
            self._names[obj] = name
            self._sources.append(self.definition(obj, name))
        return self._names[obj]

    def definition(self, obj: Callable, name: str) -> str:
        """The source of ``obj`` defined as ``name``, undecorated, the global names it uses renamed to the
        file's (what they refer to copied first).

        The text is ``obj``'s own, edited where the syntax tree says (comments
        and layout kept): the file reads as the module it was copied from.
        """
        text = textwrap.dedent(inspect.getsource(obj))
        tree = ast.parse(text).body[0]
        edits = _Edits(text)
        line = edits.offset(tree.lineno, 0)
        edits.replace(0, line, "")  # the decorators
        header = re.compile(rf"(def|class)\s+{re.escape(obj.__name__)}\b").search(text, line)
        edits.replace(header.end() - len(obj.__name__), header.end(), name)
        skipped = [*tree.decorator_list, *self._drop_annotations(tree, edits)]
        kept = {id(n) for n in ast.walk(tree)} - {id(n) for s in skipped for n in ast.walk(s)}
        local = bound_names(tree)
        rename = self.renamer(obj)
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and id(node) in kept and node.id not in local:
                renamed = rename(node.id)
                if renamed is not None:
                    edits.replace_node(node, renamed)
        return edits.apply()

    def _drop_annotations(self, tree: ast.AST, edits: _Edits) -> list[ast.expr]:
        """Removes the annotations that name anything but builtins and the file's modules (``Mapping``, a
        type alias): they document the source module's types, which the file does not define."""
        known = set(dir(builtins)) | set(self.modules.values())
        dropped = []
        for node in ast.walk(tree):
            if isinstance(node, ast.arg) and node.annotation is not None and not _names_in(node.annotation) <= known:
                edits.replace_node(node, node.arg)
                dropped.append(node.annotation)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns is not None:
                if not _names_in(node.returns) <= known:
                    start, end = edits.span(node.returns)
                    arrow = edits.text.rindex("->", 0, start)
                    edits.replace(len(edits.text[:arrow].rstrip(" ")), end, "")
                    dropped.append(node.returns)
        return dropped

    def qualify(self, fn: Callable) -> str:
        """``torch.relu`` → ``"torch.relu"``, ``keras.ops.relu`` → ``"ops.relu"``: a public function of an imported module."""
        alias = self.modules.get(getattr(fn, "__module__", None) or "")
        if alias is None:  # defined in a private module, public in an imported one (keras.src.ops.nn.relu)
            name = getattr(fn, "__name__", "")
            alias = next(
                (a for m, a in self.modules.items() if getattr(sys.modules.get(m), name, None) is fn), None
            )
        if alias is None:
            raise ValueError(f"{fn!r} is not a public function of {', '.join(self.modules)}")
        self.used.add(alias)
        return f"{alias}.{fn.__name__}"

    def renamer(self, fn: Callable, constants_inline: bool = False) -> Callable[[str], str | None]:
        """Maps a global name used in ``fn`` to its source in the file (copying what it needs); None keeps it.

        With ``constants_inline`` a module-level constant becomes its literal, so
        that tests over it fold away in an inlined expression.
        """
        namespace = _globals(fn)

        def rename(name: str) -> str | None:
            value = namespace.get(name)
            if value is None:  # a builtin, or not a global
                return None
            if isinstance(value, types.ModuleType):
                alias = self.modules.get(value.__name__)
                if alias is None:
                    raise ValueError(f"{self.what} {fn.__qualname__} uses module {value.__name__}")
                self.used.add(alias)
                return None if alias == name else alias
            if isinstance(value, (types.FunctionType, type)) and value.__module__.startswith("unigraph."):
                return self.emit(value)
            if isinstance(value, (int, float, str, tuple, frozenset, dict)):
                return self._value(value) if constants_inline else self._constant(fn, name, value)
            if callable(value):
                return self.qualify(value)
            raise ValueError(f"{self.what} {fn.__qualname__} uses {name!r}, which a generated file cannot hold")

        return rename

    def _constant(self, fn: Callable, name: str, value: Any) -> str:
        key = (fn.__module__, name)
        if key not in self._names:
            emitted = unique_name(f"_{fn.__module__.rsplit('.', 1)[-1]}_{name.lstrip('_')}".upper(), self._taken)
            self._taken.add(emitted)
            self._names[key] = emitted
            self._sources.append(f"{emitted} = {self._value(value)}")
        return self._names[key]

    def _value(self, value: Any) -> str:
        """Source for a constant; functions in it (a table of activations) by their public names."""
        if isinstance(value, dict):
            return "{" + ", ".join(f"{self._value(k)}: {self._value(v)}" for k, v in value.items()) + "}"
        if isinstance(value, tuple):
            inner = ", ".join(self._value(v) for v in value)
            return f"({inner},)" if len(value) == 1 else f"({inner})"
        if callable(value):
            return self.qualify(value)
        return literal(value)


def _globals(obj: Callable) -> dict[str, Any]:
    """The module namespace a function's (or a class's methods') global names resolve in."""
    if isinstance(obj, type):
        return vars(sys.modules[obj.__module__])
    return obj.__globals__


class _Edits:
    """Replacements in a source text at the positions its syntax tree gives, applied back to front."""

    def __init__(self, text: str):
        self.text = text
        self._lines = text.splitlines(keepends=True)
        self._starts = [0]
        for line in self._lines:
            self._starts.append(self._starts[-1] + len(line))
        self._edits: list[tuple[int, int, str]] = []

    def offset(self, lineno: int, col: int) -> int:
        """The text offset of a position of the tree (its columns count UTF-8 bytes)."""
        line = self._lines[lineno - 1] if lineno <= len(self._lines) else ""
        return self._starts[lineno - 1] + len(line.encode()[:col].decode())

    def span(self, node: ast.AST) -> tuple[int, int]:
        return self.offset(node.lineno, node.col_offset), self.offset(node.end_lineno, node.end_col_offset)

    def replace(self, start: int, end: int, text: str) -> None:
        self._edits.append((start, end, text))

    def replace_node(self, node: ast.AST, text: str) -> None:
        self.replace(*self.span(node), text)

    def apply(self) -> str:
        text = self.text
        for start, end, replacement in sorted(self._edits, reverse=True):
            text = text[:start] + replacement + text[end:]
        return text


def _names_in(tree: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}


# ---- reading and inlining functions -------------------------------------------------------------


def function_ast(obj: Callable) -> ast.FunctionDef | ast.ClassDef:
    tree = ast.parse(textwrap.dedent(inspect.getsource(obj)))
    (definition,) = tree.body
    return definition


def _body(func: ast.FunctionDef) -> list[ast.stmt]:
    body = func.body
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
        body = body[1:]  # the docstring
    return body


def inline(fn: Callable, args: list[str], attrs: dict[str, str], copier: Copier) -> str | None:
    """The lowering's single ``return`` expression with the arguments substituted, or None.

    ``args`` and ``attrs`` are source expressions (``bind`` says how they
    fill the lowering's parameters).
    """
    func = function_ast(fn)
    body = _body(func)
    if len(body) != 1 or not isinstance(body[0], ast.Return) or body[0].value is None:
        return None
    mapping = bind(fn, args, attrs, copier.what)
    expression = copy.deepcopy(body[0].value)
    rename = copier.renamer(fn, constants_inline=True)
    expression = _Substitute(mapping, rename, bound_names(expression)).visit(expression)
    return ast.unparse(_Fold().visit(expression))


def bind(fn: Callable, args: list[str], attrs: dict[str, str], what: str) -> dict[str, str]:
    """Source expression of every parameter of the lowering for this call.

    ``attrs`` holds every attribute of the op, defaults filled from its schema:
    nothing is taken from the lowering's own defaults, so a lowering whose
    defaults drifted from the op's cannot change what the generated code does
    (``tests/ops/test_signatures.py`` keeps the two signatures equal). An
    optional tensor input the node leaves out is ``None``.
    """
    mapping: dict[str, str] = {}
    positional = iter(args)
    for p in inspect.signature(fn).parameters.values():
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            mapping[p.name] = next(positional, "None")
        elif p.kind is p.VAR_POSITIONAL:
            rest = list(positional)
            if len(rest) == 1 and rest[0].startswith("*"):  # the caller's own tuple: ``*xs`` binds as ``xs``
                mapping[p.name] = rest[0][1:]
            else:
                mapping[p.name] = "(" + ", ".join(rest) + ("," if len(rest) == 1 else "") + ")"
        elif p.kind is p.KEYWORD_ONLY:
            if p.name not in attrs:
                raise TypeError(f"{what} {fn.__qualname__} takes {p.name}=, which its op has no attribute for")
            mapping[p.name] = attrs[p.name]
    return mapping


class _Substitute(ast.NodeTransformer):
    """Replaces parameters by argument expressions and renames the module globals used."""

    def __init__(self, mapping: dict[str, str], rename: Callable[[str], str | None], local: set[str]):
        self.mapping = mapping
        self.rename = rename
        self.local = local

    def visit_Name(self, node):
        if node.id in self.mapping:
            return ast.parse(self.mapping[node.id], mode="eval").body
        if node.id in self.local:
            return node
        renamed = self.rename(node.id)
        return ast.parse(renamed, mode="eval").body if renamed else node

    def visit_Call(self, node):
        self.generic_visit(node)
        args = []
        for a in node.args:  # f(*(a, b)) -> f(a, b)
            if isinstance(a, ast.Starred) and isinstance(a.value, ast.Tuple):
                args.extend(a.value.elts)
            else:
                args.append(a)
        node.args = args
        return node


def bound_names(tree: ast.AST) -> set[str]:
    """Names a function, class or expression binds itself: parameters, assignments, loop targets, nested defs."""
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    names |= {a.arg for a in ast.walk(tree) if isinstance(a, ast.arg)}
    names |= {
        n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n is not tree
    }
    return names


class _Fold(ast.NodeTransformer):
    """Folds ``a if None is None else b`` and similar tests over constants, and
    ``getattr(torch, 'float32')`` to ``torch.float32``."""

    def visit_Call(self, node):
        self.generic_visit(node)
        fn = node.func
        if (
            isinstance(fn, ast.Name) and fn.id == "getattr" and len(node.args) == 2 and not node.keywords
            and isinstance(node.args[0], ast.Name) and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str) and node.args[1].value.isidentifier()
        ):
            return ast.Attribute(node.args[0], node.args[1].value, ast.Load())
        return node

    def visit_IfExp(self, node):
        self.generic_visit(node)
        names = {n.id for n in ast.walk(node.test) if isinstance(n, ast.Name)}
        if names <= set(_FOLDABLE):
            try:
                verdict = eval(compile(ast.Expression(node.test), "<fold>", "eval"), {"__builtins__": _FOLDABLE})
            except Exception:
                return node
            return node.body if verdict else node.orelse
        return node


#: Builtins a constant test may use and still fold.
_FOLDABLE = {"isinstance": isinstance, "int": int, "float": float, "bool": bool, "str": str, "tuple": tuple, "len": len}
