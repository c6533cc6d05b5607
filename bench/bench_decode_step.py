"""Benchmark: compile and simulate one LLaMA2-7B decode step at context 512 on the
VHK158 design, and time `dspflight run` with its defaults.

Targets on the 2-core reference machine (issue 8, with the HBM timed from
mechanism): compile <= 0.1 s, simulate <= 0.05 s, `dspflight run` <= 10 s wall.

    .venv/bin/python bench/bench_decode_step.py
"""
from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time

from compiler.model_config import load_model
from compiler.pipeline import compile_decode_step
from compiler.weights.profile import load_compression
from hwmodel.hwconfig import load_hw
from hwmodel.program import from_bytes, to_bytes
from sim.stats import simulate

REPEATS = 5


def best_of(fn, repeats: int = REPEATS) -> tuple[float, float, object]:
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times), result


def main() -> int:
    def compile_once():
        hw = load_hw("vhk158")
        prog = compile_decode_step(load_model("llama2-7b"), load_compression("flightllm", hw), hw, 512)
        return hw, to_bytes(prog, hw)

    c_best, c_med, (hw, data) = best_of(compile_once)

    def simulate_once():
        return simulate(from_bytes(data, hw), hw)

    s_best, s_med, stats = best_of(simulate_once)
    dec = stats.phases["decode"]
    print(f"decode step, llama2-7b @ context 512 on vhk158: {dec.cycles} cycles = "
          f"{stats.seconds(dec.cycles) * 1e3:.2f} ms")
    print(f"compile  (configs + graph + passes + encode): best {c_best:.3f} s, median {c_med:.3f} s (target <= 0.1 s)")
    print(f"simulate (decode .dfp + engine):              best {s_best:.3f} s, median {s_med:.3f} s "
          f"(target <= 0.05 s); {stats.sections_timed} sections timed for {stats.section_calls} calls")
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "dspflight.cli", "run", "-o", out], check=True,
                       stdout=subprocess.DEVNULL)
        run_s = time.perf_counter() - t0
    print(f"dspflight run (llama2-7b, u280, prefill 128, decode 512, all reports): {run_s:.2f} s wall "
          f"(target <= 10 s)")
    print("reproduce: .venv/bin/python bench/bench_decode_step.py")
    ok = c_best <= 0.1 and s_best <= 0.05 and run_s <= 10
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
