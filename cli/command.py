"""The ``unigraph`` command: convert, check, inspect and translate models from the shell.

A thin layer of argparse over ``unigraph.cli.sources`` (opening a model),
``Converted.write`` (writing it in a format of ``unigraph.formats``),
``unigraph.cli.verify`` (checking an output against its source) and
``unigraph.cli.translate`` (batches of checkpoints). Errors are one line,
``unigraph: error: <file>: <problem>``, never a traceback (``--traceback``
shows one). Importing this module loads argparse and unigraph's errors and
format table only, so ``--help`` answers before JAX starts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import textwrap

from unigraph import formats
from unigraph.errors import (
    CheckpointError,
    ExportError,
    GraphError,
    InputError,
    LoweringError,
    OutputExistsError,
    ShapeMismatchError,
    TranslationError,
    UnigraphError,
    UnsupportedOpError,
    first_line,
)
from unigraph.cli.quiet import import_tensorflow, quiet_frameworks
from unigraph.native_order import triton_blocked

EXIT_OK = 0
EXIT_FAILED = 1  # a check failed, some files of a batch failed, inspect found unsupported ops
EXIT_INPUT = 2  # usage or input error: bad option; missing, truncated, corrupt, refused or mismatched file
EXIT_CONVERSION = 3  # the model does not convert (tracing fails, unsupported ops), or an internal error
EXIT_INTERRUPTED = 130

EXIT_CODES = f"""\
exit codes:
  {EXIT_OK}    success
  {EXIT_FAILED}    a check failed, some files of a batch failed, or inspect found unsupported ops
  {EXIT_INPUT}    usage or input error: a bad option; a missing, truncated, corrupt or refused file;
       a tensor with the wrong name or shape; an existing output without --overwrite
  {EXIT_CONVERSION}    the model cannot be converted (it does not trace, or uses unsupported ops),
       or an internal error
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C)"""

_FORMATS_HELP = "formats (--to):\n" + formats.describe()
_TRANSLATE_FORMATS_HELP = "formats (--to):\n" + formats.describe(formats.WEIGHT_FORMATS)

_SOURCES_HELP = """\
sources (SRC, detected from the file; --from overrides):
  model.pt2              a saved torch.export ExportedProgram (no Python code needed)
  hf_model_dir/          a Hugging Face folder: config.json + *.safetensors (sharded too) or
                         pytorch_model.bin; built with transformers from its config
  pkg.module:factory     a Python callable returning a torch.nn.Module (or (module, example_args));
                         weights from --weights FILE (.safetensors or .pt); inputs from --input-shape
  model.keras, model.h5  a Keras model (loaded with safe_mode)
  model.ug               a unigraph bundle"""

_SAFETY_HELP = """\
safety: nothing a file contains runs by default. torch files are read with
torch.load(weights_only=True) and .pt2 archives only when their content is plain
tensors (--trust-pickle allows unpickling); Hugging Face folders that ask for
custom code (auto_map) and Keras files with Lambda layers are refused
(--trust-remote-code allows them)."""


def main(argv: list[str] | None = None) -> int:
    """Runs the command; returns its exit code (see ``unigraph --help``)."""
    parser = _parser()
    try:
        options = parser.parse_args(argv)
    except SystemExit as e:  # argparse's --help, --version and usage errors
        return int(e.code or 0) if isinstance(e.code, int) else EXIT_INPUT
    if options.command is None:
        parser.print_help(sys.stderr)
        return EXIT_INPUT
    with quiet_frameworks(), triton_blocked():  # main() called after the caller loaded TensorFlow: see native_order
        try:
            return options.run(options)
        except KeyboardInterrupt:
            print("unigraph: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        except Exception as error:  # every error ends as one message and an exit code
            if options.traceback:
                raise
            return _report(error)


def _report(error: Exception) -> int:
    if isinstance(error, (UnsupportedOpError, ExportError)):
        _error(str(error))
        return EXIT_CONVERSION
    if isinstance(error, OutputExistsError):
        _error(str(error).replace("Pass overwrite=True", "Pass --overwrite"))
        return EXIT_INPUT
    if isinstance(error, (CheckpointError, ShapeMismatchError, InputError)):
        _error(str(error))
        return EXIT_INPUT
    if isinstance(error, (TranslationError, LoweringError, GraphError, UnigraphError)):
        _error(str(error))
        return EXIT_CONVERSION
    if isinstance(error, OSError):
        where = f"{error.filename}: " if error.filename else ""
        _error(f"{where}{error.strerror or error}")
        return EXIT_INPUT
    _error(f"internal error: {type(error).__name__}: {first_line(error)} (a bug; rerun with --traceback and report it)")
    return EXIT_CONVERSION


def _error(message: str) -> None:
    print(f"unigraph: error: {message}", file=sys.stderr)


# ---- the parser -----------------------------------------------------------------------------------------------


class _Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog):
        super().__init__(prog, max_help_position=32)


def _parser() -> argparse.ArgumentParser:
    from unigraph import __version__

    parser = argparse.ArgumentParser(
        prog="unigraph",
        formatter_class=_Formatter,
        description="Convert trained models between PyTorch, Keras/TensorFlow and JAX/Flax.",
        epilog=textwrap.dedent(
            """\
            examples:
              unigraph convert model.pt2 -o model.ug --check
              unigraph convert ./bert-base/ -o bert_savedmodel --to savedmodel
              unigraph check model.pt2 model.ug --locate
              unigraph inspect mypkg.models:make_net --input-shape 1x3x224x224
              unigraph translate 'runs/*.safetensors' -o flax/ --arch model.pt2 --to safetensors -j 8

            A demo (converts ResNet-18 and checks it): python -m unigraph.cli.demo

            """
        )
        + EXIT_CODES,
    )
    parser.add_argument("--version", action="version", version=f"unigraph {__version__}")
    parser.set_defaults(command=None, traceback=False)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", help="'unigraph COMMAND --help' for its options and examples")
    _convert_parser(commands)
    _check_parser(commands)
    _inspect_parser(commands)
    _translate_parser(commands)
    return parser


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--traceback", action="store_true", help="show the full traceback of an error (for bug reports)")


def _source_options(parser: argparse.ArgumentParser, *, what: str = "SRC") -> None:
    group = parser.add_argument_group(f"{what} options")
    group.add_argument("--from", dest="kind", choices=("pt2", "hf", "factory", "keras", "ug"), help=f"the kind of {what} (default: detected from the file)")
    group.add_argument(
        "--input-shape", action="append", default=[], metavar="[NAME=]SHAPE",
        help="an input's shape for tracing and checks, e.g. 1x3x224x224 or input_ids=2x16 (once per input, in order)",
    )
    group.add_argument("--dtype", action="append", default=[], metavar="[NAME=]DTYPE", help="an input's dtype (default float32; int64 for token ids); once per input, or once for all")
    group.add_argument("--trust-pickle", action="store_true", help="allow torch files and .pt2 archives that need arbitrary unpickling (runs code in the file)")
    group.add_argument("--trust-remote-code", action="store_true", help="allow custom code a model asks for: Hugging Face auto_map modules, Keras Lambda layers")


def _check_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("check options")
    group.add_argument("--locate", action="store_true", help="when outputs disagree, name the first node that diverges")
    group.add_argument("--rtol", type=float, default=1e-4, help="relative tolerance (default 1e-4)")
    group.add_argument("--atol", type=float, default=1e-5, help="absolute tolerance (default 1e-5)")
    group.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")


def _convert_parser(commands) -> None:
    p = commands.add_parser(
        "convert", formatter_class=_Formatter, help="convert a model to savedmodel, keras, tflite, torch, safetensors, orbax or ug",
        description="Convert SRC and write it to OUT in one format; with --check, prove the written output against SRC.",
        epilog=textwrap.dedent(
            """\
            examples:
              unigraph convert model.pt2 -o model.ug
              unigraph convert model.pt2 -o served --to savedmodel --check
              unigraph convert ./hf_model/ -o weights.safetensors --to torch --check
              unigraph convert ./hf_model/ -o flax.safetensors --input-shape input_ids=1x128
              unigraph convert mypkg.nets:resnet --weights ckpt.safetensors --input-shape 1x3x224x224 -o ckpt.orbax --to orbax
              unigraph convert model.keras -o model_torch.safetensors --to torch
              unigraph convert model.pt2 -o keras_model --to keras --check
              unigraph convert model.pt2 -o model.tflite --check

            --to defaults from OUT's suffix: .ug, .safetensors (the Flax variables), .orbax, .savedmodel,
            .tflite, .py (torch source).
            --check runs SRC and the written OUT on seeded random inputs (the traced shapes, or
            --input-shape) and fails the command if any output differs beyond --rtol/--atol.

            """
        )
        + _SOURCES_HELP + "\n\n" + _FORMATS_HELP + "\n\n" + _SAFETY_HELP + "\n\n" + EXIT_CODES,
    )
    p.add_argument("source", metavar="SRC", help="the model (see 'sources' below)")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="where to write the converted model")
    p.add_argument("--to", choices=tuple(formats.FORMATS), help="the output format (default: from OUT's suffix)")
    p.add_argument("--weights", metavar="FILE", help="a state dict (.safetensors or .pt) for a pkg.module:factory source")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists (only once the new output is complete)")
    p.add_argument("--check", action="store_true", help="check the written output against SRC; fail if it does not match")
    p.add_argument("--platforms", default=None, metavar="P[,P]", help="SavedModel platforms among cpu,cuda,rocm,tpu (default cpu,cuda)")
    _source_options(p)
    _check_options(p)
    _common(p)
    p.set_defaults(command="convert", run=_run_convert)


def _check_parser(commands) -> None:
    p = commands.add_parser(
        "check", formatter_class=_Formatter, help="compare a converted output with its source, output by output",
        description="Run SRC and CONVERTED on the same seeded inputs and print the checker's table: per output, "
        "max abs and rel error, mismatch fraction and cosine similarity.",
        epilog=textwrap.dedent(
            """\
            examples:
              unigraph check model.pt2 model.ug
              unigraph check ./hf_model/ served/ --input-shape input_ids=4x32
              unigraph check model.pt2 weights.safetensors --locate --rtol 1e-3

            CONVERTED is any output of 'unigraph convert' (a SavedModel or Orbax directory, a .ug
            bundle, a safetensors file of Flax variables or of a torch state dict); --format
            overrides the detection. With --locate, a failing check also names the first graph
            node whose value diverges from the source's (PyTorch, Keras), with its source line;
            where none does, the first node whose SavedModel or torch lowering differs from its
            JAX value.

            """
        )
        + EXIT_CODES,
    )
    p.add_argument("source", metavar="SRC", help="the source model (as for convert)")
    p.add_argument("converted", metavar="CONVERTED", help="the converted output")
    p.add_argument("--format", choices=tuple(formats.FORMATS), help="CONVERTED's format (default: detected)")
    p.add_argument("--weights", metavar="FILE", help="a state dict for a pkg.module:factory source")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    _source_options(p)
    _check_options(p)
    _common(p)
    p.set_defaults(command="check", run=_run_check)


def _inspect_parser(commands) -> None:
    p = commands.add_parser(
        "inspect", formatter_class=_Formatter, help="ops, parameters, inputs, outputs, unsupported ops of a model",
        description="Convert SRC in memory and print its inputs and outputs, parameter count and bytes, the "
        "histogram of its unigraph ops, and every op that has no translation, with its source lines.",
        epilog=textwrap.dedent(
            """\
            examples:
              unigraph inspect model.pt2
              unigraph inspect ./hf_model/ --input-shape input_ids=1x64
              unigraph inspect mypkg.nets:make --input-shape 1x3x32x32

            Exits 1 when the model has unsupported ops (listed with their source lines).

            """
        )
        + EXIT_CODES,
    )
    p.add_argument("source", metavar="SRC", help="the model (as for convert)")
    p.add_argument("--weights", metavar="FILE", help="a state dict for a pkg.module:factory source")
    _source_options(p)
    _common(p)
    p.set_defaults(command="inspect", run=_run_inspect)


def _translate_parser(commands) -> None:
    p = commands.add_parser(
        "translate", formatter_class=_Formatter, help="many checkpoints of one architecture (parallel, resumable)",
        description="Translate every checkpoint of SRC (a folder, or a glob pattern in quotes) into OUT_DIR: "
        "the architecture ARCH is traced once, and each checkpoint is translated by the recorded parameter "
        "map alone, streamed tensor by tensor, in parallel.",
        epilog=textwrap.dedent(
            """\
            examples:
              unigraph translate runs/ -o flax/ --arch model.pt2
              unigraph translate 'runs/*.safetensors' -o bundles/ --arch ./hf_config_dir/ --to ug -j 8
              unigraph translate ckpts/ -o out/ --arch mypkg.nets:make --input-shape 1x3x32x32 --to orbax
              unigraph translate runs/ -o flax/ --arch model.ug --report report.json

            ARCH: a .pt2, a Hugging Face folder (config.json; weights not needed), a factory spec
            pkg.module:factory with --input-shape, or a .ug bundle (needs neither torch nor TF).
            SRC's checkpoints: *.safetensors (preferred: read tensor by tensor), *.pt/*.bin
            state dicts, and Hugging Face folders (sharded too). Outputs are named after the
            inputs: run3.safetensors -> OUT_DIR/run3.<suffix> (.safetensors, .ug, .orbax,
            .savedmodel).

            Each output is written beside its final name and renamed into place when complete,
            after a line in OUT_DIR/unigraph-manifest.jsonl records the sha256 of its input and of
            itself. A re-run skips the outputs the manifest verifies and redoes the rest, so an
            interrupted run loses nothing. A file that fails (truncated, corrupt, wrong shapes,
            another architecture) is reported at the end with its reason; the others go on, and
            the command exits 1.

            """
        )
        + _TRANSLATE_FORMATS_HELP + "\n\n" + _SAFETY_HELP + "\n\n" + EXIT_CODES,
    )
    p.add_argument("source", metavar="SRC_DIR_OR_GLOB", help="a folder of checkpoints, or a quoted glob pattern")
    p.add_argument("-o", "--output", required=True, metavar="OUT_DIR", help="the folder to write into (created if needed)")
    p.add_argument("--arch", required=True, metavar="ARCH", help="the architecture: .pt2, Hugging Face folder, pkg.module:factory or .ug")
    p.add_argument("--to", default="safetensors", choices=formats.WEIGHT_FORMATS, help="output format (default safetensors: the Flax variables)")
    p.add_argument("-j", "--jobs", type=int, default=min(4, os.cpu_count() or 1), metavar="N", help="files translated in parallel (default: min(4, CPUs))")
    p.add_argument("--report", metavar="FILE", help="write a JSON report: files translated, skipped and failed (with reasons), throughput")
    p.add_argument("--overwrite", action="store_true", help="replace outputs that exist but are not in the manifest")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    _source_options(p, what="ARCH")
    _common(p)
    p.set_defaults(command="translate", run=_run_translate, weights=None)


# ---- commands ---------------------------------------------------------------------------------------------------


def _source_from(options, *, require_weights: bool = True, spec: str | None = None):
    from unigraph.cli import sources

    return sources.open_source(
        spec or options.source,
        sources.Options(
            kind=options.kind,
            inputs=sources.parse_inputs(options.input_shape, options.dtype),
            weights=options.weights,
            trust_pickle=options.trust_pickle,
            trust_remote_code=options.trust_remote_code,
            require_weights=require_weights,
        ),
    )


def _run_convert(options) -> int:
    from unigraph.io.atomic import refuse_existing

    fmt = options.to or formats.from_suffix(options.output)
    if fmt is None:
        raise InputError(f"{options.output}: say which format to write with --to ({', '.join(formats.FORMATS)})")
    refuse_existing(options.output, overwrite=options.overwrite)
    if fmt == "savedmodel":
        import_tensorflow()
    source = _source_from(options)
    conv = source.converted
    extra = {}
    if fmt == "savedmodel" and options.platforms:
        extra["platforms"] = tuple(p.strip() for p in options.platforms.split(","))
    conv.write(fmt, options.output, overwrite=options.overwrite, **extra)
    print(f"wrote {options.output} ({fmt}) from {source.spec}: {_counts(conv)}")
    if not options.check:
        return EXIT_OK
    from unigraph.cli.verify import check_output

    report = check_output(
        source, fmt, options.output, seed=options.seed, rtol=options.rtol, atol=options.atol, locate=options.locate
    )
    print(report)
    _locate_note(options, source, report)
    return EXIT_OK if report.ok else EXIT_FAILED


def _run_check(options) -> int:
    from unigraph.cli import targets
    from unigraph.cli.verify import check_output

    fmt = options.format or targets.detect_output(options.converted)
    if fmt == "savedmodel":
        import_tensorflow()
    source = _source_from(options)
    report = check_output(
        source, fmt, options.converted, seed=options.seed, rtol=options.rtol, atol=options.atol, locate=options.locate
    )
    if options.json:
        print(json.dumps(report.to_json(), indent=2, default=str))
    else:
        print(report)
        _locate_note(options, source, report)
    return EXIT_OK if report.ok else EXIT_FAILED


def _locate_note(options, source, report) -> None:
    if report.ok or not options.locate or report.divergence is not None:
        return
    if source.converted.trace is None:
        print("--locate compares node by node against the model a conversion came from (PyTorch, Keras); "
              "this source is not one")
    else:
        print("no single node diverges with these weights (the difference is in the output's own graph or runtime)")


def _run_inspect(options) -> int:
    source = _source_from(options)
    print(f"{source.spec}: {source.description}")
    try:
        conv = source.converted
    except UnsupportedOpError as error:
        tensors = source.tensors()
        _print_example(source)
        print(f"parameters:  {_tensor_summary(tensors)}")
        print(f"unsupported: {len(error.ops)} op(s) have no unigraph translation; nothing converts until they do:")
        for op in error.ops:
            print(str(op))
        return EXIT_FAILED
    from unigraph import tree

    graph = conv.graph
    paths = tree.paths(graph.output_tree)
    print("inputs:")
    width = max((len(n) for n in graph.inputs), default=0)
    for name in graph.inputs:
        print(f"  {name.ljust(width)}  {graph.types[name]}")
    print("outputs:")
    width = max((len(paths.get(n, n)) for n in graph.outputs), default=0)
    for name in graph.outputs:
        print(f"  {paths.get(name, name).ljust(width)}  {graph.types[name]}")
    print(f"parameters:  {_counts(conv)}")
    histogram = graph.op_histogram()
    print(f"ops:         {len(graph.nodes)} nodes, {len(histogram)} kinds")
    width = max((len(op) for op in histogram), default=0)
    for op, count in histogram.items():
        print(f"  {op.ljust(width)}  {count}")
    print("unsupported: none")
    return EXIT_OK


def _print_example(source) -> None:
    """The inputs the source was traced with (a model that does not convert has no graph to list them)."""
    if source.example is None:
        return
    args, kwargs = source.example
    names: list[str] = []
    with contextlib.suppress(TypeError, ValueError, AttributeError):
        import inspect

        names = [p for p in inspect.signature(source.model.forward).parameters if p not in kwargs]
    named = [(names[i] if i < len(names) else f"arg{i}", a) for i, a in enumerate(args)] + list(kwargs.items())
    print("inputs (as traced):")
    width = max((len(n) for n, _ in named), default=0)
    for name, value in named:
        dtype = str(getattr(value, "dtype", type(value).__name__)).removeprefix("torch.")
        shape = ",".join(str(d) for d in getattr(value, "shape", ()))
        print(f"  {name.ljust(width)}  {dtype}[{shape}]")


def _counts(conv) -> str:
    from unigraph.params import flatten_variables

    flat = flatten_variables(conv.variables)
    params = conv.parameter_count()
    others = sum(int(v.size) for k, v in flat.items() if not k.startswith("params/"))
    text = f"{params:,} parameters, {_bytes(conv.parameter_bytes())} in {len(flat)} tensors"
    return text + (f" (of which {others:,} values are not parameters: batch statistics, buffers)" if others else "")


def _tensor_summary(tensors: dict) -> str:
    import math

    values = sum(math.prod(shape) for shape, _ in tensors.values())
    nbytes = sum(math.prod(shape) * dtype.itemsize for shape, dtype in tensors.values())
    return f"{values:,} values, {_bytes(nbytes)} in {len(tensors)} tensors"


def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _run_translate(options) -> int:
    from unigraph.cli import targets, translate

    if options.jobs < 1:
        raise InputError(f"-j {options.jobs}: give at least one job")
    inputs = translate.discover(options.source)
    translate.start_workers(options.jobs)  # their start-up overlaps the trace
    if options.to == "savedmodel":
        import_tensorflow()
    arch = _source_from(options, require_weights=False, spec=options.arch)
    blueprint = targets.Blueprint(arch.converted)
    progress = translate.Progress(enabled=not options.quiet)
    summary = translate.translate(
        blueprint, options.to, inputs, options.output, jobs=options.jobs,
        trust_pickle=options.trust_pickle, overwrite=options.overwrite, progress=progress,
    )
    if options.report:
        translate.write_report(summary, options.report, arch=options.arch, source=options.source, output=options.output)
    rate = summary.to_json()
    speed = f" in {summary.seconds:.1f} s ({rate['files_per_s'] or 0:.1f} files/s, {rate['gb_per_s'] or 0:.3f} GB/s)" if summary.done else ""
    print(
        f"translated {len(summary.done)}, already complete {len(summary.skipped)}, failed {len(summary.failed)} "
        f"of {summary.total} checkpoint(s) into {options.output} ({options.to}){speed}"
    )
    for failure in summary.failed:
        _error(f"{failure['input']}: {failure['error']}")
    return EXIT_FAILED if summary.failed else EXIT_OK

