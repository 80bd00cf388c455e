"""``unigraph translate``: many checkpoints of one architecture, traced once, translated by its ParamMap.

The architecture is converted once; every checkpoint is then translated with
the recorded ParamMap alone (``targets.CheckpointLeaves``): its names and
shapes are checked from the header, then its tensors are read, laid out and
written one at a time, so memory holds about one tensor per worker
(``savedmodel`` and ``orbax`` outputs hold one checkpoint).

Each output is written to a hidden sibling in the output folder by a worker
process, recorded in the manifest (``unigraph-manifest.jsonl``: one JSON line
per completed output with the sha256 of its input and of itself), then
renamed into place. A killed run leaves no half-written output, and a re-run
skips every output whose manifest line still matches its input and its own
bytes, so it loses nothing and redoes nothing complete (a file whose size and
modification time are those recorded is not hashed again). A file that fails
(truncated, corrupt, wrong shapes, another architecture) is reported with its
reason at the end, without stopping the others.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import glob
import hashlib
import json
import multiprocessing
import multiprocessing.connection
import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from unigraph import formats
from unigraph.cli import targets
from unigraph.cli.checkpoints import TORCH_SUFFIXES, has_hf_weights, hf_weights_file, open_checkpoint
from unigraph.errors import CheckpointError, UnigraphError, first_line
from unigraph.io.atomic import atomic_file, commit, discard, remove_staged, staging_path
from unigraph.io.safetensors_file import file_sha256

MANIFEST = "unigraph-manifest.jsonl"
CHECKPOINT_SUFFIXES = (".safetensors", *TORCH_SUFFIXES)


@dataclasses.dataclass(frozen=True)
class Job:
    input: Path
    output: Path


@dataclasses.dataclass
class Summary:
    """What a run did: outputs written, outputs already complete, and failures with their reasons."""

    to: str
    total: int
    done: list[dict] = dataclasses.field(default_factory=list)
    skipped: list[str] = dataclasses.field(default_factory=list)
    failed: list[dict] = dataclasses.field(default_factory=list)
    seconds: float = 0.0

    @property
    def input_bytes(self) -> int:
        return sum(d["input_bytes"] for d in self.done)

    def to_json(self) -> dict:
        return {
            "to": self.to,
            "total": self.total,
            "translated": self.done,
            "skipped": self.skipped,
            "failed": self.failed,
            "seconds": round(self.seconds, 3),
            "cpu_seconds": round(sum(d["cpu_seconds"] for d in self.done), 3),
            "input_bytes": self.input_bytes,
            "output_bytes": sum(d["output_bytes"] for d in self.done),
            "files_per_s": round(len(self.done) / self.seconds, 3) if self.seconds else None,
            "gb_per_s": round(self.input_bytes / self.seconds / 1e9, 4) if self.seconds else None,
        }


# ---- which files ----------------------------------------------------------------------------------------------


def discover(source: str) -> list[Path]:
    """The checkpoints of a folder (files, and Hugging Face folders in it) or of a glob pattern."""
    path = Path(source)
    if path.is_dir():
        found = [
            child
            for child in sorted(path.iterdir())
            if not child.name.startswith(".")
            and (child.is_file() and child.name.endswith(CHECKPOINT_SUFFIXES) or child.is_dir() and has_hf_weights(child))
        ]
        if not found:
            raise CheckpointError(f"{source}: no checkpoints in it (*.safetensors, *.pt, *.bin, or Hugging Face folders)")
        return found
    found = [Path(p) for p in sorted(glob.glob(source, recursive=True))]
    if not found:
        raise CheckpointError(f"{source}: no such file or directory, and no file matches it")
    return found


def output_name(path: Path, suffix: str) -> str:
    """``run3.safetensors`` -> ``run3<suffix>``; a folder or shard index by its name."""
    name = path.name
    for ending in (".safetensors.index.json", ".bin.index.json", *CHECKPOINT_SUFFIXES):
        if name.endswith(ending) and len(name) > len(ending):
            return name[: -len(ending)] + suffix
    return name + suffix


def plan(inputs: Sequence[Path], out_dir: Path, fmt: str) -> list[Job]:
    suffix = formats.get(fmt).suffix
    jobs, seen = [], {}
    for path in inputs:
        output = out_dir / output_name(path, suffix)
        if output.name in seen:
            raise CheckpointError(f"{seen[output.name]} and {path} would both be written to {output}; rename one")
        if output.name == MANIFEST:
            raise CheckpointError(f"{path}: its output would overwrite the manifest {output}")
        seen[output.name] = path
        jobs.append(Job(path, output))
    return jobs


# ---- the manifest ---------------------------------------------------------------------------------------------


class Manifest:
    """One JSON line per completed output, appended before the output is renamed into place.

    The latest line of an output wins. A line cut short by a kill does not
    parse and is ignored, and a line whose output never got renamed into place
    does not verify: either way the output is redone, never trusted.
    """

    def __init__(self, out_dir: Path):
        self.path = out_dir / MANIFEST
        self.entries: dict[str, dict] = {}
        self._torn = False  # the last line was cut short: the next one starts on a line of its own
        self.changed = False  # whether ``compact`` has anything to rewrite
        if self.path.is_file():
            text = self.path.read_text(errors="replace")
            self._torn = bool(text) and not text.endswith("\n")
            lines = text.splitlines()
            for line in lines:
                try:
                    entry = json.loads(line)
                    self.entries[entry["output"]] = entry
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue
            self.changed = len(lines) != len(self.entries)

    def record(self, entry: dict) -> None:
        with open(self.path, "a") as f:
            f.write("\n" * self._torn + json.dumps(entry, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self._torn = False
        self.entries[entry["output"]] = entry
        self.changed = True

    def complete(self, job: Job, fingerprint: str) -> bool:
        """Whether ``job.output`` is the recorded, unchanged translation of the unchanged ``job.input``."""
        entry = self.entries.get(job.output.name)
        if entry is None or entry.get("fingerprint") != fingerprint or not job.output.exists():
            return False
        stat = _stat(job.input)
        if entry.get("input_stat") != stat:
            try:
                if _input_sha256(job.input) != entry.get("input_sha256"):
                    return False
            except (UnigraphError, OSError):
                return False
            entry["input_stat"] = stat  # touched, same bytes: not hashed again next time
            self.changed = True
        stat = _stat(job.output)
        if entry.get("output_stat") == stat:  # as written (size and modification time): not read again
            return True
        if _digest(job.output)[0] != entry.get("output_sha256"):
            return False
        entry["output_stat"] = stat
        self.changed = True
        return True

    def compact(self) -> None:
        """Rewrites the manifest with one line per output (atomically), if it has changed."""
        if not self.changed:
            return
        with atomic_file(self.path, overwrite=True) as staging:
            staging.write_text("".join(json.dumps(e, sort_keys=True) + "\n" for e in self.entries.values()))
        self.changed = False


def _input_sha256(path: Path) -> str:
    """What ``Checkpoint.sha256`` gives, without loading the file where it is one file."""
    if (single := _single_file(path)) is not None:
        return file_sha256(single)
    with open_checkpoint(path, trust_pickle=False) as ckpt:
        return ckpt.sha256()


def _single_file(path: Path) -> Path | None:
    """The one file a checkpoint is (a Hugging Face folder's weights file); None for a shard index."""
    single = hf_weights_file(path) if path.is_dir() else path
    return None if single.name.endswith(".index.json") else single


def _stat(path: Path) -> list[int]:
    """Total size and latest modification of a file or of the files in a folder (nested too)."""
    files = [p for p in sorted(path.rglob("*")) if p.is_file()] if path.is_dir() else [path]
    stats = [p.stat() for p in files]
    return [sum(s.st_size for s in stats), max((s.st_mtime_ns for s in stats), default=0)]


def _digest(path: Path) -> tuple[str, int]:
    if path.is_dir():
        return targets.tree_sha256(path)
    return file_sha256(path), path.stat().st_size


# ---- one file (in a worker) -----------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Translator:
    """What translating one file needs: the architecture, the format, and whether pickles are trusted.

    Sent with every file to the worker that translates it (a few MB of graph
    at most, next to checkpoints of hundreds), so workers hold no state.
    """

    blueprint: targets.Blueprint
    fmt: str
    trust_pickle: bool

    def __call__(self, source: str, staging: str) -> dict:
        """Writes the translation of ``source`` at ``staging``; returns its digests, or the failure."""
        start, cpu = time.perf_counter(), time.process_time()
        try:
            single = _single_file(Path(source))  # hashed by a thread of its own; shards as they are read
            hashing = _FileDigest(single) if single is not None else contextlib.nullcontext()
            with hashing, open_checkpoint(source, trust_pickle=self.trust_pickle, digest=single is None) as ckpt:
                leaves = targets.CheckpointLeaves(self.blueprint, ckpt, graph_dtypes=formats.get(self.fmt).graph)
                output_sha, output_bytes = targets.stage(self.fmt, self.blueprint, leaves, Path(staging))
                return {
                    "input_sha256": ckpt.sha256() if single is None else hashing.hexdigest(),
                    "input_bytes": ckpt.nbytes,
                    "output_sha256": output_sha,
                    "output_bytes": output_bytes,
                    "seconds": round(time.perf_counter() - start, 4),
                    "cpu_seconds": round(time.process_time() - cpu, 4),  # its process's threads: hashing included
                }
        except UnigraphError as e:
            return {"error": _reason(e, source)}
        except OSError as e:
            return {"error": f"{e.strerror or e}" + (f" ({e.filename})" if e.filename else "")}
        except Exception as e:  # noqa: BLE001  (a bug: reported for this file, the others go on)
            return {"error": f"internal error ({type(e).__name__}: {first_line(e)}); please report it"}


class _FileDigest:
    """The sha256 of the file at ``path``, computed by a thread of its own from the start.

    The translation reads the file's tensors in the order the output needs
    them, not the file's: hashing them as they pass means reading the bytes
    ahead of them a second time anyway, on the translating thread. This thread
    reads the whole file in order instead, 1 MiB at a time (rereading from the
    page cache costs a fraction of hashing), and hashes it while the tensors
    are laid out and written; reads and hashlib let go of the GIL. Leaving the
    ``with`` block stops it.
    """

    _CHUNK = 1 << 20  # larger chunks measured slower (out of L2), smaller no faster

    def __init__(self, path: Path):
        self._result: str | OSError | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(path,), name="sha256-input", daemon=True)
        self._thread.start()

    def _run(self, path: Path) -> None:
        digest, buffer = hashlib.sha256(), bytearray(self._CHUNK)
        view = memoryview(buffer)
        try:
            with open(path, "rb", buffering=0) as f:
                while (n := f.readinto(buffer)) and not self._stop.is_set():
                    digest.update(view[:n])
        except OSError as e:
            self._result = e
            return
        self._result = digest.hexdigest()

    def hexdigest(self) -> str:
        self._thread.join()
        if isinstance(self._result, OSError):
            raise self._result
        return self._result

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _start_worker(fmt: str) -> None:
    """A pool worker's start: tied to the main process, TensorFlow loaded once if the format needs it."""
    _tie_to_parent()
    if fmt == "savedmodel":
        from unigraph.cli.quiet import import_tensorflow

        import_tensorflow()  # not TensorFlow's start-up lines once per file


def _tie_to_parent() -> None:
    """In a pool worker: Ctrl-C is the main process's to handle (it waits for the files in flight, then
    discards what they staged), and a killed run leaves no worker behind writing into the output folder."""
    import signal
    import threading

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = multiprocessing.parent_process()
    if parent is None or parent.sentinel is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])  # ready when the main process has exited
        os._exit(1)

    threading.Thread(target=watch, name="unigraph-parent-watch", daemon=True).start()


def _reason(error: Exception, source: str) -> str:
    """The error's message without the file's name (the report names it once)."""
    text = str(error).strip().removeprefix(f"{source}: ")
    return text.replace(f" in {source}:", ":")


# ---- the run ---------------------------------------------------------------------------------------------------


def translate(
    blueprint: targets.Blueprint,
    fmt: str,
    inputs: Sequence[Path],
    out_dir: str | os.PathLike,
    *,
    jobs: int = 1,
    trust_pickle: bool = False,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> Summary:
    """Translates ``inputs`` into ``out_dir`` as ``fmt``; see the module docstring.

    With ``jobs`` > 1 the files are translated by worker processes started
    with ``forkserver``: as with any ``multiprocessing`` start method but fork,
    a script that calls this must do so under ``if __name__ == "__main__":``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    inside = out_dir.resolve()
    inputs = [p for p in map(Path, inputs) if inside not in (p.resolve(), *p.resolve().parents)]  # not its own outputs
    fingerprint = blueprint.fingerprint(fmt)
    manifest = Manifest(out_dir)
    summary = Summary(fmt, len(inputs))
    todo = []
    for job in plan(inputs, out_dir, fmt):
        remove_staged(job.output)
        if manifest.complete(job, fingerprint):
            summary.skipped.append(str(job.input))
        elif job.output.exists() and job.output.name not in manifest.entries and not overwrite:
            summary.failed.append({"input": str(job.input), "error": f"{job.output} exists and is not in the manifest; pass --overwrite to replace it"})
        else:
            todo.append(job)
    progress = progress or Progress(enabled=False)
    progress.start(len(todo), len(summary.skipped))
    start = time.perf_counter()

    def finished(job: Job, staging: Path, result: dict) -> None:
        if "error" in result:
            discard(staging)
            summary.failed.append({"input": str(job.input), "error": result["error"]})
            progress.advance(ok=False)
            return
        entry = {
            "output": job.output.name,
            "input": str(job.input.absolute()),
            "input_stat": _stat(job.input),
            "output_stat": _stat(staging),  # renaming keeps it
            "fingerprint": fingerprint,
            "to": fmt,
            **result,
        }
        manifest.record(entry)  # before the rename: a recorded output that is not in place does not verify
        commit(staging, job.output)
        summary.done.append({"input": str(job.input), "output": str(job.output), **result})
        progress.advance(ok=True, nbytes=result["input_bytes"])

    stagings = {job: staging_path(job.output) for job in todo}
    translator = Translator(blueprint, fmt, trust_pickle)
    try:
        if jobs <= 1 or len(todo) <= 1:
            for job in todo:
                finished(job, stagings[job], translator(str(job.input), str(stagings[job])))
        else:
            workers = min(jobs, len(todo))
            queue = todo
            while queue:
                suspects, queue = _run_pool(queue, workers, translator, stagings, finished)
                for job in suspects:  # in flight when a worker died: each alone, to tell which one kills it
                    discard(stagings[job])
                    if len(suspects) == 1 or _run_pool([job], 1, translator, stagings, finished)[0]:
                        finished(job, stagings[job], {"error": _DIED})
    finally:
        for staging in stagings.values():
            discard(staging)
        summary.seconds = time.perf_counter() - start
        progress.finish()
        if manifest.entries:
            manifest.compact()
    order = {str(p): i for i, p in enumerate(inputs)}
    summary.failed.sort(key=lambda f: order.get(f["input"], len(order)))
    return summary


def _context():
    context = multiprocessing.get_context("forkserver")  # not fork: the parent runs JAX's and torch's threads
    context.set_forkserver_preload(["unigraph.cli.translate"])
    return context


def start_workers(jobs: int) -> None:
    """Starts the process that worker processes are forked from, if ``jobs`` > 1: it imports
    unigraph meanwhile (while the caller traces the architecture), not when the first file is due."""
    if jobs > 1 and sys.platform != "win32":
        from multiprocessing import forkserver

        _context()
        forkserver.ensure_running()


_DIED = "the process translating it died (killed by the system, out of memory, or a crash in a library)"


def _run_pool(todo: list[Job], workers: int, translator: Translator, stagings: dict, finished) -> tuple[list[Job], list[Job]]:
    """Translates ``todo`` in a pool of ``workers`` processes, as many files in flight as workers.

    Returns ``([], [])`` once every job has ``finished``; if a worker dies,
    the jobs that were in flight (one of them killed it) and those not started.
    """
    context = _context()
    pending = list(reversed(todo))
    running: dict[concurrent.futures.Future, Job] = {}
    with concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=context, initializer=_start_worker, initargs=(translator.fmt,)
    ) as pool:
        try:
            while pending or running:
                while pending and len(running) < workers:
                    job = pending.pop()
                    running[pool.submit(translator, str(job.input), str(stagings[job]))] = job
                done, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
                if any(isinstance(f.exception(), concurrent.futures.process.BrokenProcessPool) for f in done):
                    concurrent.futures.wait(running)  # a broken pool fails every future in flight
                    suspects = []
                    for future, job in running.items():
                        if isinstance(future.exception(), concurrent.futures.process.BrokenProcessPool):
                            suspects.append(job)
                        else:
                            finished(job, stagings[job], future.result())
                    return suspects, list(reversed(pending))
                for future in done:
                    job = running.pop(future)
                    finished(job, stagings[job], future.result())
        except BaseException:  # Ctrl-C: the files in flight are finished and kept, the rest not started
            pool.shutdown(wait=True, cancel_futures=True)
            for future, job in running.items():
                if future.done() and not future.cancelled() and future.exception() is None:
                    finished(job, stagings[job], future.result())
            raise
    return [], []


def write_report(summary: Summary, path: str | os.PathLike, **context) -> None:
    with atomic_file(path, overwrite=True) as staging:
        staging.write_text(json.dumps({**context, **summary.to_json()}, indent=2) + "\n")


# ---- progress ----------------------------------------------------------------------------------------------------


class Progress:
    """A progress line on stderr: files done, failures, files/s, GB/s and time left.

    On a terminal the line redraws in place with a bar; otherwise a line is
    printed at most every ``interval`` seconds, and at the end.
    """

    def __init__(self, stream=None, *, enabled: bool = True, interval: float = 5.0):
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.interval = interval
        self.total = self.done = self.failed = self.nbytes = 0
        self.start_time = self.last = 0.0

    def start(self, total: int, skipped: int) -> None:
        self.total, self.start_time = total, time.perf_counter()
        self.last = self.start_time
        if self.enabled and skipped:
            print(f"translate: {skipped} output(s) already complete (verified by the manifest), skipped", file=self.stream)

    def advance(self, *, ok: bool, nbytes: int = 0) -> None:
        self.done += 1
        self.failed += not ok
        self.nbytes += nbytes
        now = time.perf_counter()
        if self.tty or now - self.last >= self.interval:
            self.last = now
            self._draw()

    def line(self) -> str:
        elapsed = max(time.perf_counter() - self.start_time, 1e-9)
        rate = self.done / elapsed
        left = (self.total - self.done) / rate if rate else 0.0
        text = (
            f"{self.done}/{self.total} files, {self.failed} failed, {rate:.1f} files/s, "
            f"{self.nbytes / elapsed / 1e9:.2f} GB/s, {left:.0f} s left"
        )
        if self.tty:
            width = 24
            filled = int(width * self.done / max(self.total, 1))
            text = f"[{'#' * filled}{'.' * (width - filled)}] {text}"
        return f"translate: {text}"

    def _draw(self) -> None:
        if not self.enabled:
            return
        if self.tty:
            self.stream.write(f"\r{self.line()}\x1b[K")
            self.stream.flush()
        else:
            print(self.line(), file=self.stream, flush=True)

    def finish(self) -> None:
        if not self.enabled or not self.total:
            return
        if self.tty:
            self._draw()
            self.stream.write("\n")
        elif self.done:
            print(self.line(), file=self.stream, flush=True)
