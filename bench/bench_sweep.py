"""Benchmark: `dspflight sweep` on this machine: LLaMA2-7B, prefill 128 +
decode 512, on U280 variants (MPE chains and chain length, SLRs, clock), a
LocalCluster of 2 single-threaded worker processes; and the speed-up from 1 to 2
workers on a smaller sweep.

Targets (issue 10): 256 points <= 3 min wall with 2 workers; speed-up >= 1.7x.

    .venv/bin/python bench/bench_sweep.py [--points 256] [--speedup-points 16]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time

from dspflight.sweep import load_sweep, points, run_sweep

AXES = {"hw.mpe.chains": [64, 80, 96, 112, 128, 144, 160, 176],
        "hw.mpe.chain_length": [8, 16],
        "hw.slrs": [1, 2, 3, 4],
        "hw.clock_mhz": [200, 225, 250, 300]}


def sweep_spec(n: int) -> dict:
    return {"base": {"model": "llama2-7b", "hw": "u280", "compression": "flightllm"},
            "workloads": [{"prefill": 128, "decode": 512}], "axes": AXES,
            "search": {"mode": "random", "points": n, "seed": 0},
            "objectives": [{"decode_tokens_per_s": "max"}, {"tokens_per_joule": "max"}]}


def timed(n: int, workers: int) -> tuple[float, int]:
    spec = load_sweep(sweep_spec(n), "bench sweep")
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        table = run_sweep(spec, out, workers=workers)
        return time.perf_counter() - t0, len(table)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=256)
    ap.add_argument("--speedup-points", type=int, default=16)
    args = ap.parse_args()
    assert len(points(load_sweep(sweep_spec(256), "bench sweep"))) == 256
    one, _ = timed(args.speedup_points, 1)
    two, _ = timed(args.speedup_points, 2)
    print(f"{args.speedup_points} points: 1 worker {one:.1f} s, 2 workers {two:.1f} s: "
          f"speed-up {one / two:.2f}x (target >= 1.7x)")
    wall, rows = timed(args.points, 2)
    print(f"{args.points} points ({rows} rows), 2 workers: {wall:.1f} s wall, {args.points / wall:.2f} points/s "
          f"(target: 256 points <= 180 s)")
    print(f"reproduce: .venv/bin/python bench/bench_sweep.py --points {args.points} "
          f"--speedup-points {args.speedup_points}")
    return 0 if one / two >= 1.7 and (args.points < 256 or wall <= 180) else 1


if __name__ == "__main__":
    sys.exit(main())
