"""`bench/fuzz.py configs`: mutations of the shipped config files
(dspflight/fuzz_configs.py), each judged in-process with a per-case time
limit; counts by outcome, peak memory (resource.getrusage), the slowest case
and the command that reproduces any case. Exit status 1 if any case crashed,
hung or printed a bad message.

    .venv/bin/python bench/fuzz.py configs --n 10000 [--seed 0] [--limit 5]
"""
from __future__ import annotations

import argparse
import collections
import resource
import tempfile
import time
from pathlib import Path

from dspflight import fuzz_configs

GOOD = ("loaded", "refused")


def run_configs(args: argparse.Namespace) -> int:
    counts: collections.Counter = collections.Counter()
    slowest, failures = None, []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for case in fuzz_configs.cases(args.seed, args.n, args.start):
            r = fuzz_configs.run(case, Path(tmp), args.limit)
            counts[r.outcome] += 1
            if slowest is None or r.seconds > slowest.seconds:
                slowest = r
            if r.outcome not in GOOD:
                failures.append(r)
    wall = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"configs: {args.n} mutations (seed {args.seed}) in {wall:.1f} s")
    for outcome in fuzz_configs.OUTCOMES:
        print(f"  {outcome:12s} {counts[outcome]}")
    print(f"peak memory: {peak_mib:.0f} MiB (max RSS)")
    if slowest is not None:
        print(f"slowest: case {slowest.case.index} ({slowest.case.kind}, {slowest.case.source}, "
              f"{slowest.case.mutation[:80]}): {slowest.seconds:.3f} s -> {slowest.outcome}")
    for r in failures[:20]:
        print(f"  {r.outcome}: case {r.case.index} ({r.case.source}, {r.case.mutation[:60]}): {r.detail[:200]}")
    example = failures[0].case.index if failures else (slowest.case.index if slowest else 0)
    print(f"reproduce: .venv/bin/python bench/fuzz.py configs --seed {args.seed} --start {example} --n 1 "
          f"(--keep DIR writes the file)")
    if args.keep:
        case = fuzz_configs.case(args.seed, example)
        path = Path(args.keep) / f"case-{case.index}{case.suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(case.data)
        print(f"wrote {path} ({case.kind})")
    return 1 if failures else 0


def register(sub) -> None:
    """Add the `configs` subcommand to bench/fuzz.py."""
    p = sub.add_parser("configs", help="mutations of the shipped config files")
    p.add_argument("--n", type=int, default=10_000, help="mutations (default: 10000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the mutations (default: 0)")
    p.add_argument("--start", type=int, default=0, help="index of the first case (default: 0)")
    p.add_argument("--limit", type=float, default=5.0, help="seconds a case may take (default: 5)")
    p.add_argument("--keep", help="write the first failing (else the slowest) case's file into this folder")
    p.set_defaults(func=run_configs)
