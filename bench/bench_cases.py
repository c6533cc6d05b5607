"""Benchmark: FlightLLM's six workloads (prefill 128/512 x decode 512/1024/1536,
batch 1) for LLaMA2-7B on the VHK158 design, compiled as one program and
simulated case by case, each distinct section timed once.

Targets on the 2-core reference machine (issue 8): <= 10 s wall, <= 2 GB
memory (the largest of this process and its worker processes). Compile and
simulate use one worker process per core ($DSPFLIGHT_WORKERS=1: none).

    .venv/bin/python bench/bench_cases.py [--hw vhk158]
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time

from dspflight import api


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hw", default="vhk158")
    args = ap.parse_args()
    t0 = time.perf_counter()
    cases = api.run_cases("llama2-7b", args.hw, "flightllm")
    t1 = time.perf_counter()
    table = api.cases_table(cases)
    blobs = [json.dumps(sim.summary) for _, _, sim in cases.results]
    report_s = time.perf_counter() - t1
    wall = time.perf_counter() - t0
    peak_mb = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)) / 1024
    print(table)
    print(f"compile {cases.compiled.compile_s:.2f} s ({cases.compiled.program.instruction_count} instructions, "
          f"{len(cases.compiled.dfp)} bytes), simulate {cases.simulate_s:.2f} s, report {report_s:.3f} s "
          f"({len(blobs)} summaries)")
    print(f"all six workloads on {args.hw}: {wall:.2f} s wall (target <= 10 s), peak memory {peak_mb:.0f} MB "
          f"(target <= 2048 MB)")
    print(f"reproduce: .venv/bin/python bench/bench_cases.py --hw {args.hw}")
    return 0 if wall <= 10 and peak_mb <= 2048 else 1


if __name__ == "__main__":
    sys.exit(main())
