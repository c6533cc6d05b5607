"""Functional executor speed and memory on the tiny model.

Prefill of 16 tokens and 16 greedy decode steps of the seeded random tiny
LLaMA-style model (configs/models/tiny.yaml), compiled for a design with a
decode bucket of 1; times Executor.generate alone (compression, compilation
and packing excluded) and reports its peak traced memory (numpy buffers
included) and the process's peak resident set.

    .venv/bin/python bench/bench_executor.py [--hw vhk158] [--decode 16] [--repeat 3]
"""
from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
import tracemalloc
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from compiler.model_config import load_model  # noqa: E402
from compiler.pipeline import Buckets, compile_program  # noqa: E402
from compiler.weights.checkpoint import load_checkpoint, write_random_llama  # noqa: E402
from compiler.weights.compress import compress  # noqa: E402
from compiler.weights.pack import pack  # noqa: E402
from compiler.weights.profile import load_compression  # noqa: E402
from hwmodel.hwconfig import load_hw  # noqa: E402
from sim.functional import Executor  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hw", default="vhk158")
    ap.add_argument("--prefill", type=int, default=16)
    ap.add_argument("--decode", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    hw = load_hw(args.hw)
    comp = load_compression("flightllm", hw)
    with tempfile.TemporaryDirectory() as tmp:
        ck = load_checkpoint(write_random_llama(Path(tmp) / "tiny", load_model("tiny"), seed=0))
    cm = compress(ck, comp, np.random.default_rng(0).integers(0, ck.model.vocab, (4, 64)))
    prog = compile_program(ck.model, comp, hw, args.prefill, args.decode, Buckets(args.prefill, 1))
    image = pack(cm, prog, hw)
    prompt = list(range(args.prefill))
    best = float("inf")
    for _ in range(args.repeat):
        ex = Executor(prog, hw, replace(image, hbm=image.hbm.copy()))
        t0 = time.perf_counter()
        tokens = ex.generate(prompt, args.decode)
        best = min(best, time.perf_counter() - t0)
    instructions = ex.instructions
    tracemalloc.start()             # a separate run (tracing slows numpy-heavy code down), buffers included
    Executor(prog, hw, replace(image, hbm=image.hbm.copy())).generate(prompt, args.decode)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    steps = args.decode + 1
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"executor on {args.hw} ({hw.slrs} cores), tiny model, prefill {args.prefill} + {args.decode} decode steps")
    print(f"  best of {args.repeat}: {best:.3f} s, {instructions} instructions executed over all cores "
          f"({instructions / best / 1e3:.1f} k instructions/s)")
    print(f"  {(args.prefill + args.decode) / best:.1f} tokens/s (prompt + decode), {steps / best:.1f} generated "
          f"tokens/s, {len(tokens)} tokens")
    print(f"  peak traced memory {peak / 2**20:.1f} MiB (executor with its HBM image of "
          f"{image.hbm.nbytes / 2**20:.2f} MiB and {hw.slrs} on-chip images of {hw.onchip_bytes / 2**20:.1f} MiB); "
          f"process peak RSS {rss:.0f} MiB")
    print(f"  reproduce: .venv/bin/python bench/bench_executor.py --hw {args.hw} --prefill {args.prefill} "
          f"--decode {args.decode} --repeat {args.repeat}")


if __name__ == "__main__":
    main()
