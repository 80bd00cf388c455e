"""``unigraph translate`` throughput and memory against a plain safetensors load-and-save of the same files.

Writes N checkpoints of one MLP (random weights, one seed per file) as
safetensors into a temporary folder, then measures, in rounds that take each
measurement in turn (so that all see the same load on a shared machine; the
fastest of ``--repeats`` rounds counts):

- baseline: ``safetensors.numpy.load_file`` + ``save_file`` of every file,
  one after another, in this process (what a hand-written loop does);
- sha256 of every file (``hashlib``, 1 MiB reads), and the baseline plus the
  sha256 of each input and each output: what translate must do at least, as
  its manifest records both digests;
- ``unigraph translate`` of the folder (``--to safetensors`` by default), run
  as its own process, with each ``-j`` asked for. Its throughput is the
  report's (the translation, from the first file to the last); "wall" adds
  start-up and the one trace of the architecture.

"cpu s" is the CPU time of the work (every thread; for translate, its
report's ``cpu_seconds``, summed over files), and "cpu vs base" the ratio of
the baseline's to it: on a machine with no idle core, wall time follows it.
Translate hashes its input and its output on threads of its own, beside its
reads, transposes and writes, so with an idle core "vs base" can rise above
"cpu vs base". Without one it cannot reach 0.5x: on a loaded 2-CPU machine
sha256 ran at about 1 GB/s and a load and save at about 0.7 GB/s of file, so
the two hashes alone took about 1.4x the baseline's time; the row "load+save,
sha256 in & out" is the bar there.

Both read files the page cache already holds (they are read once first), so
the figures compare the work, not the disk. Memory is the translate
process's peak resident set (``wait4``; with ``-j`` > 1, the largest of its
processes), sampled over the whole process tree with psutil when it is
installed, compared with a run that translates the smallest file alone (the
fixed cost: Python, torch, JAX, the trace) and with the largest checkpoint.

    python bench/bench_translate.py                                # 8 files of 33.6 MB
    python bench/bench_translate.py --files 20 --width 2048 --layers 6 --jobs 1 4
    python bench/bench_translate.py --to torch
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

from unigraph.io.safetensors_file import file_sha256

UNIGRAPH = Path(sys.executable).with_name("unigraph")


def make_model(width: int, layers: int) -> torch.nn.Module:
    blocks = []
    for _ in range(layers):
        blocks += [torch.nn.Linear(width, width), torch.nn.GELU()]
    return torch.nn.Sequential(*blocks, torch.nn.Linear(width, 10)).eval()


def write_checkpoints(folder: Path, files: int, width: int, layers: int) -> Path:
    """``folder/runs/run{k}.safetensors`` for seeds 0..files-1, and the architecture as ``model.pt2``."""
    from safetensors.torch import save_file

    runs = folder / "runs"
    runs.mkdir()
    for k in range(files):
        torch.manual_seed(k)
        save_file(make_model(width, layers).state_dict(), runs / f"run{k:03d}.safetensors")
    model = make_model(width, layers)
    program = torch.export.export(model, (torch.randn(2, width),), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, folder / "model.pt2")
    return runs


def read_all(paths: list[Path]) -> None:
    for path in paths:
        with open(path, "rb", buffering=0) as f:
            while f.read(1 << 24):
                pass


def baseline(paths: list[Path], out: Path, *, hashed: bool = False) -> tuple[float, float]:
    """Seconds and CPU seconds to load and save every file with safetensors.numpy, one after another
    (``hashed``: and to hash each input and output)."""
    from safetensors.numpy import load_file, save_file

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    start, cpu = time.perf_counter(), time.process_time()
    for path in paths:
        save_file(load_file(path), out / path.name)
        if hashed:
            file_sha256(path)
            file_sha256(out / path.name)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    shutil.rmtree(out)
    return seconds, cpu


def hashing(paths: list[Path]) -> tuple[float, float]:
    start, cpu = time.perf_counter(), time.process_time()
    for path in paths:
        file_sha256(path)
    return time.perf_counter() - start, time.process_time() - cpu


class TreeSampler:
    """The peak of the summed resident sets of a process and its descendants (psutil, every 10 ms)."""

    def __init__(self, pid: int):
        import psutil

        self.root = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                processes = [self.root, *self.root.children(recursive=True)]
                total = 0
                for p in processes:
                    try:
                        total += p.memory_info().rss
                    except psutil.Error:
                        pass
                self.peak = max(self.peak, total)
            except psutil.Error:
                return
            time.sleep(0.01)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def run_translate(source: str, arch: Path, out: Path, to: str, jobs: int) -> dict:
    """Runs ``unigraph translate`` as a process; its report, wall time and peak memory."""
    report = out.with_suffix(".json")
    command = [str(UNIGRAPH), "translate", source, "-o", str(out), "--arch", str(arch), "--to", to,
               "-j", str(jobs), "-q", "--report", str(report)]
    log = out.with_suffix(".log")
    start = time.perf_counter()
    with open(log, "wb") as f:
        process = subprocess.Popen(command, stdout=f, stderr=subprocess.STDOUT)
    try:
        sampler = TreeSampler(process.pid)
    except ImportError:
        sampler = None
    # wait4 gives this child's own resource usage: ru_maxrss is the largest of it and the
    # processes it reaped (its workers), in KiB on Linux
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    tree_peak = sampler.stop() if sampler else None
    if process.returncode != 0:
        raise SystemExit(f"translate failed ({process.returncode}):\n{log.read_text()}")
    result = json.loads(report.read_text())
    maxrss = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    return dict(result, wall=wall, maxrss=maxrss, tree_peak=tree_peak)


def gb(n: float) -> str:
    return f"{n / 1e9:.3f} GB"


def mb(n: float | None) -> str:
    return "n/a" if n is None else f"{n / 2**20:8.0f} MiB"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=8, help="checkpoints to translate (default 8)")
    parser.add_argument("--width", type=int, default=1024, help="MLP width (default 1024: 4 MiB per layer)")
    parser.add_argument("--layers", type=int, default=8, help="MLP hidden layers (default 8)")
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2], help="-j values to run (default 1 2)")
    parser.add_argument("--to", default="safetensors", choices=("safetensors", "torch", "ug", "orbax"))
    parser.add_argument("--repeats", type=int, default=3, help="rounds of the measurements, each taking them all in turn; the fastest counts, the largest peak (default 3)")
    parser.add_argument("--dir", help="work in this folder (kept) instead of a temporary one")
    options = parser.parse_args(argv)

    folder = Path(options.dir or tempfile.mkdtemp(prefix="bench_translate_"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        runs = write_checkpoints(folder, options.files, options.width, options.layers)
        paths = sorted(runs.iterdir())
        sizes = [p.stat().st_size for p in paths]
        total, largest = sum(sizes), max(sizes)
        print(f"torch {torch.__version__}, {os.cpu_count()} CPUs; {options.files} checkpoints of an MLP "
              f"({options.layers}x{options.width}), {gb(total)} in all, largest {largest / 2**20:.1f} MiB; --to {options.to}")
        print(f"files are read once first: every figure below reads from the page cache; best of {options.repeats} rounds\n")
        read_all(paths)

        single = run_translate(str(paths[0]), folder / "model.pt2", folder / "single", options.to, 1)
        loops: dict[str, list[tuple[float, float]]] = {"base": [], "sha256": [], "hashed": []}
        translations: dict[int, list[dict]] = {jobs: [] for jobs in options.jobs}
        for _ in range(options.repeats):
            loops["base"].append(baseline(paths, folder / "baseline"))
            loops["sha256"].append(hashing(paths))
            loops["hashed"].append(baseline(paths, folder / "baseline", hashed=True))
            for jobs in options.jobs:
                out = folder / f"out_j{jobs}"
                shutil.rmtree(out, ignore_errors=True)
                translations[jobs].append(run_translate(str(runs), folder / "model.pt2", out, options.to, jobs))
                shutil.rmtree(out)
        best = {k: (min(r[0] for r in v), min(r[1] for r in v)) for k, v in loops.items()}
        seconds, cpu = best["base"]
        print(f"{'':28} {'seconds':>8} {'GB/s':>7} {'vs base':>8} {'cpu s':>7} {'cpu vs base':>11} {'wall s':>7} {'peak RSS':>12} {'tree peak':>12}")

        def row(label: str, s: float, c: float, rest: str = "") -> None:
            print(f"{label:28} {s:8.2f} {total / s / 1e9:7.3f} {seconds / s:8.2f} {c:7.2f} {cpu / c:11.2f}{rest}")

        row("safetensors load+save", seconds, cpu)
        row("sha256 of every file", *best["sha256"], "   (translate hashes each input and each output: the manifest's checksums)")
        row("load+save, sha256 in & out", *best["hashed"], "   (the least translate must do)")
        print(f"{'translate, 1 file':28} {single['seconds']:8.2f} {'':7} {'':8} {'':7} {'':11} {single['wall']:7.1f} "
              f"{mb(single['maxrss']):>12} {mb(single['tree_peak']):>12}")
        for jobs, runs_of_jobs in translations.items():
            r = min(runs_of_jobs, key=lambda r: r["seconds"])
            r["maxrss"] = max(x["maxrss"] for x in runs_of_jobs)
            r["tree_peak"] = max((x["tree_peak"] or 0 for x in runs_of_jobs), default=0) or None
            assert len(r["translated"]) == options.files and not r["failed"], r
            row(f"translate -j {jobs}", r["seconds"], min(x["cpu_seconds"] for x in runs_of_jobs),
                f" {r['wall']:7.1f} {mb(r['maxrss']):>12} {mb(r['tree_peak']):>12}")
            growth = r["maxrss"] - single["maxrss"]
            print(f"{'':28} peak RSS over the 1-file run: {growth / 2**20:+.0f} MiB "
                  f"= {growth / largest:+.2f} x the largest checkpoint ({options.files} files: {total / largest:.0f} x)")
        print("\nvs base > 1: faster than a plain safetensors load and save of the same files; cpu vs base: the same by CPU time.")
        print("peak RSS: the largest single process (wait4); tree peak: all its processes summed (psutil, shared pages counted once per process).")
    finally:
        if not options.dir:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
