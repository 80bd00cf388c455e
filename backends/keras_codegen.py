"""Writes a converted model as a standalone Keras 3 Python file, with its weights beside it.

The file is what people write by hand when they rebuild a PyTorch
architecture in Keras and copy the weights over: ``build_model()`` calls
Keras's own layers where the plan has them (``layers.Conv2D``,
``layers.Dense``) and, for every other node, a small layer defined in the
file, one class per op kind (``class Gelu(layers.Layer)``, the op's
attributes as constructor arguments) whose ``call`` runs the op's Keras
lowering (``backends/keras_ops``), inlined when it is one expression, else
copied into the file with the private helpers it calls
(``backends/source_copy.py``). Loose variables are a ``Weights`` layer, the
class ``to_keras`` uses, copied. The file imports Keras, and NumPy or
``math`` only where a lowering needs them; no torch, no unigraph.

The file builds the model ``to_keras`` builds from the same plan
(``backends/keras_plan.py``): the same layers, names and order. Keras finds a
layer's weights in a ``.weights.h5`` by its class name and its position among
the layers of that class, and the file's op layers hold no weights and take
no class name of Keras's (``AddOp`` where Keras has ``Add``), so
``to_keras``'s ``save_weights`` is the file's weights. Every class is
registered with Keras under the model's name, so a model saved with
``model.save("m.keras")`` loads with ``keras.saving.load_model`` (safe mode
included) in any process that has imported the file.

Dimension symbols (a dynamic batch) that attributes use are read at run time
from the tensors that have them, as ``to_keras``'s ``Op`` layers read them;
an attribute's expression is written as a JSON-able tree (``"2*seq + 1"`` is
``["add", ["mul", 2, "seq"], 1]``) that a few lines of the file evaluate.
Those layers are given their output shapes (``output_shapes``, as the graph
types them): Keras infers a layer's outputs by tracing it, and a size known
only at run time is a tensor under TensorFlow (a ``reshape`` to ``(batch, 10,
-1)`` would lose its last size) and no value at all under JAX (``arange``).
"""

from __future__ import annotations

import ast
import inspect
import json
import os
import re
import tempfile
import textwrap
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from unigraph.native_order import before_tensorflow

before_tensorflow()  # Keras on its default backend loads TensorFlow: triton first (see unigraph.native_order)

import keras  # noqa: E402

import unigraph  # noqa: E402
from unigraph import dims  # noqa: E402
from unigraph.backends.keras_layers import Weights  # noqa: E402
from unigraph.backends.keras_ops import LOWERINGS  # noqa: E402
from unigraph.backends.keras_plan import Call, Plan, plan  # noqa: E402
from unigraph.backends.source_copy import Copier, Identifiers, inline, literal  # noqa: E402
from unigraph.converted import Converted  # noqa: E402
from unigraph.errors import GraphError  # noqa: E402
from unigraph.io.atomic import atomic_file  # noqa: E402
from unigraph.ops import REGISTRY  # noqa: E402
from unigraph.ops.registry import Attr  # noqa: E402

#: The modules a generated file may import, by the names it has them under.
_MODULE_NAMES = {"keras": "keras", "keras.ops": "ops", "numpy": "np", "math": "math"}

#: Lines longer than this are wrapped (one keyword argument a line).
_WIDTH = 110

#: Op attributes whose names a Keras layer already uses, and what a layer of the file calls them instead.
_RENAMED = {"dtype": "output_dtype"}

_FROZEN = '''
def _frozen(value):
    """Lists (what a config's JSON gives back) as the tuples the ops take."""
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    return value
'''

_SYMBOLS = '''
def _sizes(symbols, tensors):
    """The size each dimension symbol stands for: ``{"batch": [k, axis]}`` is ``axis`` of ``tensors[k]``."""
    return {symbol: ops.shape(tensors[k])[axis] for symbol, (k, axis) in symbols.items()}


def _dim(expression, sizes):
    """A dimension's value: an int, a symbol, or ``[operation, *operands]`` of dimensions."""
    if expression is None or isinstance(expression, int):
        return expression
    if isinstance(expression, str):
        return sizes[expression]
    operation, *operands = expression
    return _DIM_OPERATIONS[operation](*(_dim(e, sizes) for e in operands))


def _dims(expressions, sizes):
    return None if expressions is None else tuple(_dim(e, sizes) for e in expressions)


def _specs(shapes, dtype):
    """A layer's outputs as the graph types them, rather than traced: tracing cannot see run-time sizes."""
    specs = [keras.KerasTensor(shape, dtype=dtype) for shape in shapes]
    return specs[0] if len(specs) == 1 else specs


_DIM_OPERATIONS = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "floordiv": lambda a, b: a // b,
    "mod": lambda a, b: a % b,
    "neg": lambda a: -a,
    "max": lambda a, b: max(a, b) if isinstance(a, int) and isinstance(b, int) else ops.maximum(a, b),
    "min": lambda a, b: min(a, b) if isinstance(a, int) and isinstance(b, int) else ops.minimum(a, b),
}
'''


def generate(source: Plan | Converted, *, channels_last: bool = False, stem: str = "model") -> str:
    """The Python source of a file whose ``build_model()`` builds the Keras model of ``source``.

    ``channels_last`` (for a ``Converted``) plans the model with images
    ``(N, *spatial, C)``, as ``to_keras(conv, channels_last=True)``; ``stem`` is
    the file's module name, which its docstring's example imports.
    """
    if isinstance(source, Plan):
        return _Generator(source, stem, source.name).source()
    return _Generator(plan(source, channels_last=channels_last), stem, _origin(source)).source()


def save(conv: Converted, path: str | os.PathLike, *, channels_last: bool = False, overwrite: bool = False) -> str:
    """Writes the model's source to ``path`` and its weights beside it (``net.py``, ``net.weights.h5``).

    Both are written atomically: an error leaves neither. An existing file
    raises ``OutputExistsError`` unless ``overwrite``. Returns the source.
    """
    from unigraph.backends.keras import build  # keras.py reaches this module lazily too

    path = Path(path)
    the_plan = plan(conv, channels_last=channels_last)
    source = _Generator(the_plan, path.stem, _origin(conv)).source()
    model = build(the_plan)
    with atomic_file(path, overwrite=overwrite) as staged, atomic_file(weights_path(path), overwrite=overwrite) as staged_weights:
        staged.write_text(source)
        _save_weights(model, staged_weights)
    return source


def weights_path(path: str | os.PathLike) -> Path:
    """Where the weights of the source file ``path`` go: ``net.py`` → ``net.weights.h5``."""
    return Path(path).with_suffix(".weights.h5")


def _save_weights(model: keras.Model, staged: Path) -> None:
    """``model.save_weights`` to ``staged``, a path without the ``.weights.h5`` suffix that Keras insists on."""
    with tempfile.TemporaryDirectory(prefix=".", dir=staged.parent) as scratch:
        written = Path(scratch) / "model.weights.h5"
        model.save_weights(written)
        os.replace(written, staged)


def _origin(conv: Converted) -> str:
    meta = conv.metadata
    return f"{meta.get('source_model', 'a model')} ({meta.get('source_framework', 'unknown framework')})"


class _Generator:
    def __init__(self, p: Plan, stem: str, origin: str):
        self.plan = p
        self.stem = stem
        self.origin = origin
        self.copier = Copier(_MODULE_NAMES, "Keras lowering")
        self.copier.reserve("build_model", "Weights", "_frozen", "_sizes", "_dim", "_dims", "_DIM_OPERATIONS")
        self.register = f"@keras.saving.register_keras_serializable(package={_quoted(p.name)})"
        self.classes: dict[str, str] = {}  # op -> its class in the file
        self.class_sources: list[str] = []
        self.freezes = False  # whether a class uses _frozen
        self.symbolic = False  # whether a class evaluates dimension expressions
        self.math = False  # whether build_model writes math.inf or math.nan
        self.env: dict[str, str] = {}  # plan value -> its expression in build_model

    # ---- the file ---------------------------------------------------------------------------

    def source(self) -> str:
        for call in self.plan.calls:
            if call.kind == "Op":
                self._op_class(call.config["op"])
        self.ids = Identifiers(["keras", "layers", "ops", "np", "math", "Weights", *self.classes.values()])
        weights = any(call.kind == "Weights" for call in self.plan.calls)
        weights_class = f"\n{self.register}\n{self.copier.definition(Weights, 'Weights')}\n" if weights else ""
        build = self._build_model()
        parts = [self._header(), *self.copier.sources()]
        parts += [_FROZEN] * self.freezes + [_SYMBOLS] * self.symbolic
        parts += [weights_class, *self.class_sources, build]
        return "\n\n\n".join(part.strip("\n") for part in parts if part.strip()) + "\n"

    def _header(self) -> str:
        used = self.copier.used | ({"ops"} if self.symbolic else set()) | ({"math"} if self.math else set())
        imports = ["from __future__ import annotations", ""]
        imports += ["import math", ""] * ("math" in used)
        imports += ["import keras"] + ["import numpy as np"] * ("np" in used)
        imports += ["from keras import layers, ops" if "ops" in used else "from keras import layers"]
        p = self.plan
        return (
            f'"""{p.name}: a Keras 3 model generated by unigraph {unigraph.__version__} from {self.origin}.\n\n'
            "It needs only Keras (any of its backends). Build it and load its weights with\n\n"
            f"    from {self.stem} import build_model\n"
            "    model = build_model()\n"
            f'    model.load_weights("{self.stem}.weights.h5")\n\n'
            f'Its layers are registered with Keras (package "{p.name}"): a model saved with\n'
            f'``model.save("{self.stem}.keras")`` loads with ``keras.saving.load_model`` (safe mode\n'
            "too) in any process that has imported this file.\n"
            '"""\n\n' + "\n".join(imports) + "\n"
        )

    # ---- a layer class per op ----------------------------------------------------------------

    def _op_class(self, op: str) -> str:
        """The file's class for ``op``, written on first use."""
        if op in self.classes:
            return self.classes[op]
        name = "".join(part.capitalize() for part in op.split("_"))
        if _snake_case(name) in _TAKEN_CLASS_NAMES:  # Keras would file the other's weights under this class
            name += "Op"
        self.classes[op] = name
        opdef = REGISTRY[op]
        fields = {attr: _field(attr) for attr in opdef.attrs}
        symbolic = any(a.symbolic for a in opdef.attrs.values())
        self.symbolic |= symbolic
        frozen = {attr for attr, a in opdef.attrs.items() if _holds_tuples(a.annotation)}
        self.freezes |= bool(frozen)
        lines = [f'"""The graph\'s ``{op}`` op."""']
        if opdef.attrs:
            lines += ["", *self._init(opdef.attrs, fields, frozen, symbolic)]
        lines += ["", *self._call_method(op, fields, symbolic)]
        if symbolic:
            lines += ["", *self._output_spec_method(op, fields)]
        if opdef.attrs:
            config = [f"{_quoted(f)}: self.{f}" for f in fields.values()]
            config += ['"symbols": self.symbols', '"output_shapes": self.output_shapes'] * symbolic
            lines += ["", "def get_config(self):", _enclosed("return {", ["**super().get_config()", *config], "}", prefix="    ")]
        body = textwrap.indent("\n".join(lines), "    ")
        self.class_sources.append(f"\n{self.register}\nclass {name}(layers.Layer):\n{body}\n")
        return name

    def _init(self, attrs: Mapping[str, Attr], fields: Mapping[str, str], frozen: set[str], symbolic: bool) -> list[str]:
        required = [fields[a] for a, attr in attrs.items() if attr.required] + ["output_shapes"] * symbolic
        optional = [f"{fields[a]}={literal(attr.default, _quoted)}" for a, attr in attrs.items() if not attr.required]
        params = ["self", "*", *required, *optional, *(["symbols=None"] if symbolic else []), "**kwargs"]
        lines = [_enclosed("def __init__(", params, "):"), "    super().__init__(**kwargs)"]
        for attr, field in fields.items():
            lines.append(f"    self.{field} = _frozen({field})" if attr in frozen else f"    self.{field} = {field}")
        if symbolic:
            lines.append("    self.symbols = dict(symbols or {})")
            lines.append("    self.output_shapes = _frozen(output_shapes)")
        return lines

    def _call_method(self, op: str, fields: Mapping[str, str], symbolic: bool) -> list[str]:
        params, args = _parameters(op)
        attrs = {}
        for attr, a in REGISTRY[op].attrs.items():
            value = f"self.{fields[attr]}"
            if a.symbolic:
                value = f"_dims({value}, sizes)" if _holds_tuples(a.annotation) else f"_dim({value}, sizes)"
            attrs[attr] = value
        lines = [f"def call(self, {', '.join(params)}):"]
        if symbolic:
            lines.append("    sizes = _sizes(self.symbols, sized)")
        return lines + [self._run(op, args, attrs)]

    def _output_spec_method(self, op: str, fields: Mapping[str, str]) -> list[str]:
        """``compute_output_spec`` from the instance's ``output_shapes``, in its dtype attribute or its input's."""
        params, args = _parameters(op)
        dtype = f"self.{fields['dtype']}" if "dtype" in fields else f"{args[0]}.dtype"
        return [f"def compute_output_spec(self, {', '.join(params)}):", f"    return _specs(self.output_shapes, {dtype})"]

    def _run(self, op: str, args: list[str], attrs: dict[str, str]) -> str:
        """``return`` of ``op``'s lowering run on ``args`` (source expressions) with ``attrs``: inlined, or a call."""
        fn = LOWERINGS[op]
        keywords = [f"{k}={v}" for k, v in attrs.items()]
        if not fn.__module__.startswith("unigraph."):  # a keras.ops function registered as is
            return _enclosed(f"return {self.copier.qualify(fn)}(", args + keywords, ")", prefix="    ")
        inlined = inline(fn, args, attrs, self.copier)
        if inlined is not None:
            return f"    return {inlined}"
        return _enclosed(f"return {self.copier.emit(fn)}(", args + keywords, ")", prefix="    ")

    # ---- build_model -------------------------------------------------------------------------

    def _build_model(self) -> str:
        p = self.plan
        lines = []
        for spec in p.inputs:
            local = self.ids(spec.name)
            self.env[spec.value] = local
            lines.append(
                f"{local} = keras.Input(batch_shape={literal(spec.batch_shape)}, dtype={_quoted(spec.dtype)}, name={_quoted(spec.name)})"
            )
        for call in p.calls:
            lines.append(self._statement(call))
        locals_ = [self.env[spec.value] for spec in p.inputs]
        if p.structure == "tensor":
            inputs = locals_[0]
        elif p.structure == "list":
            inputs = "[" + ", ".join(locals_) + "]"
        else:
            inputs = "{" + ", ".join(f"{_quoted(spec.name)}: {local}" for spec, local in zip(p.inputs, locals_)) + "}"
        lines.append(f"return keras.Model({inputs}, {self._structure(p.outputs)}, name={_quoted(p.name)})")
        doc = f'"""The {p.name} model, its weights not loaded (``model.load_weights("{self.stem}.weights.h5")``)."""'
        body = textwrap.indent("\n".join([doc, *lines]), "    ")
        return f"\n\ndef build_model() -> keras.Model:\n{body}\n"

    def _statement(self, call: Call) -> str:
        """``local = Layer(config, name=…)(inputs)`` for one call of the plan."""
        if call.kind == "Weights":
            callee, kwargs, args = "Weights", {"weights": call.config["weights"]}, [self.env[v] for v in call.inputs]
        elif call.kind == "Op":
            callee, kwargs, args = self._op_call(call)
        else:
            callee, kwargs, args = f"layers.{call.kind}", dict(call.config), [self.env[v] for v in call.inputs]
        kwargs = {k: self._literal(v) for k, v in kwargs.items()}
        kwargs["name"] = _quoted(call.name)
        if call.kind == "Weights":
            target = self.ids(call.name)
            self.env.update((value, f"{target}[{_quoted(key)}]") for value, key in zip(call.outputs, call.config["weights"]))
        elif len(call.outputs) == 1:
            target = self.ids(call.name)
            self.env[call.outputs[0]] = target
        else:
            targets = [self.ids(f"{call.name}_{i}") for i in range(len(call.outputs))]
            self.env.update(zip(call.outputs, targets))
            target = ", ".join(targets)
        return _wrapped(target, callee, kwargs, args)

    def _op_call(self, call: Call) -> tuple[str, dict[str, Any], list[str]]:
        """An op layer's class, its constructor's arguments and what it is called on."""
        config = call.config
        opdef = REGISTRY[config["op"]]
        kwargs = {}
        for attr, value in config["attrs"].items():
            schema = opdef.attrs[attr]
            if not schema.required and type(value) is type(schema.default) and value == schema.default:
                continue
            kwargs[_field(attr)] = _expressions(value) if schema.symbolic else value
        if config["symbols"]:
            kwargs["symbols"] = dict(config["symbols"])
        if any(a.symbolic for a in opdef.attrs.values()):
            kwargs["output_shapes"] = [tuple(shape) for shape, _ in config["outputs"]]
        tensors = iter(call.inputs)
        args = []
        for argument in config["arguments"]:
            if argument == "tensor":
                args.append(self.env[next(tensors)])
            elif argument is None:
                args.append("None")
            else:  # a scalar of the graph, as a tensor of its dtype
                args.append(f"ops.convert_to_tensor({self._literal(argument['value'])}, {_quoted(argument['dtype'])})")
                self.copier.used.add("ops")
        sized = [self.env[v] for v in tensors]
        while args and args[-1] == "None" and not sized:
            args.pop()
        return self._op_class(config["op"]), kwargs, args + sized

    def _literal(self, value: Any) -> str:
        text = literal(value, _quoted)
        self.math |= "math." in text
        return text

    def _structure(self, outputs: Any) -> str:
        if isinstance(outputs, Mapping):
            return "{" + ", ".join(f"{literal(k, _quoted)}: {self._structure(v)}" for k, v in outputs.items()) + "}"
        if isinstance(outputs, (list, tuple)):
            return "[" + ", ".join(self._structure(v) for v in outputs) + "]"
        return self.env[outputs]


def _wrapped(target: str, callee: str, kwargs: Mapping[str, str], args: Sequence[str]) -> str:
    """``target = callee(k=v, …)(args)`` on one line if it fits, else one keyword argument a line, and the
    call's arguments too if they do not fit after them."""
    called = ", ".join(args)
    flat = f"{target} = {callee}({', '.join(f'{k}={v}' for k, v in kwargs.items())})"
    if _fits(f"{flat}({called})"):
        return f"{flat}({called})"
    listed = f"{target} = {callee}(" + "".join(f"\n    {k}={v}," for k, v in kwargs.items()) + "\n)"
    if _fits(f")({called})"):
        return f"{listed}({called})"
    head = flat if _fits(f"{flat}(") else listed
    return f"{head}(" + "".join(f"\n    {a}," for a in args) + "\n)"


def _enclosed(opening: str, items: Sequence[str], closing: str, *, prefix: str = "") -> str:
    """A line of a layer class (indented 4): ``prefix opening items closing`` if it fits, else one item a line."""
    flat = f"{prefix}{opening}{', '.join(items)}{closing}"
    if len(flat) + 4 <= _WIDTH:
        return flat
    return f"{prefix}{opening}" + "".join(f"\n{prefix}    {item}," for item in items) + f"\n{prefix}{closing}"


def _fits(line: str) -> bool:
    return len(line) + 4 <= _WIDTH  # indented in build_model


# ---- names and attributes ---------------------------------------------------------------------


def _quoted(text: str) -> str:
    """A string literal in double quotes, as the file writes them."""
    return json.dumps(text)


def _parameters(op: str) -> tuple[list[str], list[str]]:
    """The parameters of a layer's ``call`` for ``op`` (its inputs, ``*sized`` after them for the tensors
    whose sizes its dimension symbols are) and the arguments that pass its inputs on."""
    opdef = REGISTRY[op]
    params, args = [], []
    for p in inspect.signature(opdef.jax).parameters.values():
        if p.kind is p.POSITIONAL_ONLY:
            params.append(f"{p.name}=None" if p.name in opdef.optional else p.name)
            args.append(p.name)
        elif p.kind is p.VAR_POSITIONAL:
            params.append(f"*{p.name}")
            args.append(f"*{p.name}")
    if any(a.symbolic for a in opdef.attrs.values()) or not args:  # a layer with no inputs is called on one it does not read
        if opdef.variadic:
            raise GraphError(f"op {op!r} takes a variable number of inputs and dimension symbols: no layer of the file runs it")
        params.append("*sized")
    return params, args


def _snake_case(name: str) -> str:
    """Keras's name for a class in a weights file (``keras.src.utils.naming.to_snake_case``)."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


#: Keras's own layer classes and unigraph's, as a weights file names them: no op class of the file takes one.
_TAKEN_CLASS_NAMES = frozenset(
    {_snake_case(n) for n in dir(keras.layers) if isinstance(getattr(keras.layers, n), type)} | {"weights", "op"}
)


def _field(attr: str) -> str:
    """The name an op attribute has in a layer of the file (``dtype`` is the layer's own)."""
    return _RENAMED.get(attr, attr)


def _holds_tuples(annotation: Any) -> bool:
    """Whether an attribute's values may be tuples, which a config gives back as lists."""
    if typing.get_origin(annotation) is tuple:
        return True
    return any(_holds_tuples(a) for a in typing.get_args(annotation) if not isinstance(a, str))


def _expressions(value: Any) -> Any:
    """A symbolic attribute's dimension expressions as the file's trees (a shape's each, or the one)."""
    if isinstance(value, tuple):
        return tuple(_expression(d) for d in value)
    return _expression(value)


_OPERATIONS = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.FloorDiv: "floordiv", ast.Mod: "mod"}


def _expression(dim: Any) -> Any:
    """``"2*seq + 1"`` → ``["add", ["mul", 2, "seq"], 1]``; ints and symbols as they are."""
    if not isinstance(dim, str):
        return dim
    dims.check_dim(dim)
    return _tree(ast.parse(dim, mode="eval").body)


def _tree(node: ast.expr) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.BinOp):
        return [_OPERATIONS[type(node.op)], _tree(node.left), _tree(node.right)]
    if isinstance(node, ast.UnaryOp):
        return ["neg", _tree(node.operand)] if isinstance(node.op, ast.USub) else _tree(node.operand)
    assert isinstance(node, ast.Call)
    return [node.func.id, *(_tree(a) for a in node.args)]
