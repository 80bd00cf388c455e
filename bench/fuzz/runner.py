"""The fuzz loop: mutate a seed, run the reader, classify what happened.

Each input ends one of four ways: it loads; it is refused with a
``UnigraphError`` whose message names the input's path (both fine); or it
fails: any other exception, a ``UnigraphError`` that does not name the file,
a hang (over ``timeout`` seconds), or a memory blow-up (the process's peak
resident memory grew by more than ``memory_mb``; the data segment is also
capped at twice that over the start, so a huge allocation fails at once as a
``MemoryError`` instead of swapping). Failures are grouped by exception type
and the line that raised it; the first input of each group is saved with its
traceback.
"""

from __future__ import annotations

import dataclasses
import random
import resource
import shutil
import signal
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

from bench.fuzz.mutate import mutate_file
from bench.fuzz.targets import Target, write_seed


class Hang(BaseException):
    """Raised by the timer in an input that runs too long (a BaseException: readers' ``except
    Exception`` must not turn it into a refusal)."""


@dataclasses.dataclass
class Failure:
    kind: str  # "KeyError at unigraph/ir.py:324"
    message: str
    count: int = 0
    reproducer: Path | None = None


@dataclasses.dataclass
class Report:
    reader: str
    tried: int = 0
    loaded: int = 0
    refused: int = 0
    seconds: float = 0.0
    failures: dict[str, Failure] = dataclasses.field(default_factory=dict)

    @property
    def failed(self) -> int:
        return sum(f.count for f in self.failures.values())

    @property
    def rate(self) -> float:
        return self.tried / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        return (
            f"{self.reader}: {self.tried} inputs, {self.loaded} loaded, {self.refused} refused, "
            f"{self.failed} failures ({len(self.failures)} classes), {self.rate:.1f} inputs/s, {self.seconds:.0f} s"
        )


def mutated_input(target: Target, seeds: list[dict[str, bytes]], rng: random.Random) -> dict[str, bytes]:
    """One input: a seed with one of its files mutated (for a folder, sometimes one file dropped)."""
    seed = dict(rng.choice(seeds))
    name = rng.choice(sorted(seed))
    if target.folder and rng.random() < 0.05:
        del seed[name]
    else:
        seed[name] = mutate_file(rng, name, seed[name], nested=target.nested)
    return seed


def run(
    target: Target,
    count: int,
    *,
    seed: int = 0,
    out: Path | None = None,
    timeout: float = 20.0,
    memory_mb: int = 1024,
    progress_every: float = 0.0,
    start: int = 0,
) -> Report:
    """Runs ``count`` inputs (numbers ``start`` to ``start + count - 1`` of the stream ``seed``
    gives); saves reproducers under ``out`` when given."""
    warnings.simplefilter("ignore")
    seeds = target.seeds()
    report = Report(target.name)
    with tempfile.TemporaryDirectory(prefix=f"fuzz-{target.name}-") as tmp:
        work = Path(tmp)
        for i, s in enumerate(seeds):  # the seeds themselves load (and warm the reader up)
            target.load(write_seed(s, work / f"seed{i}", target.folder))
        baseline = _peak_mb()
        limits = resource.getrlimit(resource.RLIMIT_DATA)
        _cap_data(memory_mb)
        previous = signal.signal(signal.SIGALRM, _alarm)
        began = last = time.perf_counter()
        try:
            for i in range(start, start + count):
                rng = random.Random(f"{seed}:{i}")
                files = mutated_input(target, seeds, rng)
                directory = work / f"input{i}"
                path = write_seed(files, directory, target.folder)
                outcome = _attempt(target, path, timeout)
                report.tried += 1
                if outcome is None:
                    report.loaded += 1
                elif outcome is True:
                    report.refused += 1
                if outcome not in (None, True) or _peak_mb() - baseline > memory_mb:
                    kind, message = outcome if outcome not in (None, True) else (
                        "memory", f"peak resident memory grew by {_peak_mb() - baseline:.0f} MB")
                    if kind == "memory":
                        baseline = _peak_mb()  # report the next blow-up, not every later input
                    _record(report, kind, message, directory, out, i)
                shutil.rmtree(directory, ignore_errors=True)
                now = time.perf_counter()
                if progress_every and now - last >= progress_every:
                    report.seconds = now - began
                    print(report.line(), flush=True)
                    last = now
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
            resource.setrlimit(resource.RLIMIT_DATA, limits)
            report.seconds = time.perf_counter() - began
    return report


def _attempt(target: Target, path: Path, timeout: float):
    """None: loaded; True: refused as it should be; (kind, message): a failure."""
    from unigraph.errors import UnigraphError

    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        target.load(path)
    except Hang:
        return "hang", f"no result after {timeout} s"
    except UnigraphError as e:
        signal.setitimer(signal.ITIMER_REAL, 0)
        if str(path) not in str(e):
            return f"{type(e).__name__} without the file name at {_site(e)}", str(e)[:500]
        return True
    except Exception as e:  # noqa: BLE001  (what the fuzzer is looking for)
        signal.setitimer(signal.ITIMER_REAL, 0)
        return f"{type(e).__name__} at {_site(e)}", f"{type(e).__name__}: {e}"[:500] + "\n" + traceback.format_exc()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    return None


def _alarm(signum, frame):
    raise Hang


def _site(error: BaseException) -> str:
    """Where an exception was raised: the innermost frame of this project, else the innermost frame."""
    frames = traceback.extract_tb(error.__traceback__)
    ours = [f for f in frames if "/unigraph/" in f.filename or "/cli/" in f.filename or "/frontends/" in f.filename]
    frame = (ours or frames or [None])[-1]
    if frame is None:
        return "?"
    return f"{'/'.join(Path(frame.filename).parts[-2:])}:{frame.lineno}"


def _record(report: Report, kind: str, message: str, directory: Path, out: Path | None, index: int) -> None:
    failure = report.failures.setdefault(kind, Failure(kind, message))
    failure.count += 1
    if failure.count == 1:
        print(f"FAILURE (input {index}) {kind}: {message.splitlines()[0]}", flush=True)
        if out is not None:
            saved = out / report.reader / f"input{index}"
            shutil.rmtree(saved, ignore_errors=True)
            shutil.copytree(directory, saved)
            (saved.parent / f"input{index}.txt").write_text(f"{kind}\n{message}\n")
            failure.reproducer = saved


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _cap_data(memory_mb: int) -> None:
    """Caps the data segment at its size now plus a margin: a huge allocation fails fast."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[5])  # data + stack
    limit = pages * resource.getpagesize() + 2 * memory_mb * 2**20
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if hard == resource.RLIM_INFINITY or limit < hard:
        resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))


def print_report(report: Report, file=sys.stdout) -> None:
    print(report.line(), file=file)
    for failure in sorted(report.failures.values(), key=lambda f: -f.count):
        where = f" (reproducer: {failure.reproducer})" if failure.reproducer else ""
        print(f"  {failure.count}× {failure.kind}{where}\n    {failure.message.splitlines()[0]}", file=file)
