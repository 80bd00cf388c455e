"""``python -m bench.fuzz READER… [-n COUNT] [--seed S] [--out DIR]``: fuzz readers, print counts and failures.

Exits 1 when any input failed (see ``bench.fuzz.runner`` for what counts).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.fuzz.runner import print_report, run
from bench.fuzz.targets import TARGETS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fuzz", description=__doc__.splitlines()[0])
    parser.add_argument("readers", nargs="*", default=list(TARGETS), help=f"of {', '.join(TARGETS)} (default: all)")
    parser.add_argument("-n", "--count", type=int, default=100_000, help="inputs per reader (default 100000)")
    parser.add_argument("--seed", type=int, default=0, help="the input stream (default 0)")
    parser.add_argument("--start", type=int, default=0, help="the first input's number in the stream (resume a run)")
    parser.add_argument("--out", type=Path, default=Path("fuzz-failures"), help="where failing inputs are saved")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds an input may take (default 20)")
    parser.add_argument("--memory-mb", type=int, default=1024, help="memory growth that counts as a blow-up")
    parser.add_argument("--progress", type=float, default=60.0, help="seconds between progress lines (0: none)")
    args = parser.parse_args(argv)
    unknown = [r for r in args.readers if r not in TARGETS]
    if unknown:
        parser.error(f"unknown reader(s) {', '.join(unknown)}; readers are {', '.join(TARGETS)}")
    if "pt2" in args.readers or "hf" in args.readers or "keras" in args.readers:
        import torch  # noqa: F401  (before TensorFlow loads: unigraph.native_order)
    failed = 0
    for name in args.readers:
        report = run(
            TARGETS[name], args.count, seed=args.seed, start=args.start, out=args.out, timeout=args.timeout,
            memory_mb=args.memory_mb, progress_every=args.progress,
        )
        print_report(report)
        failed += report.failed
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
