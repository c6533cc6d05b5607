"""Benchmark: SmolLM2-135M (the built-in GGUF checkpoint) on the functional
executor: prefill and decode tokens/s of the compiled program, and one
profile's perplexity run through the executor, with peak memory.

Targets (issue 13): >= 5 tokens/s decode; the 2,048-token perplexity run of
one profile <= 5 min on 2 cores.

    .venv/bin/python bench/bench_real_model.py [--hw u280] [--tokens 2048] [--compression flightllm]
"""
from __future__ import annotations

import argparse
import resource
import sys
import time

import numpy as np

from compiler.pipeline import Buckets, compile_program
from compiler.weights.checkpoint import load_checkpoint
from compiler.weights.compress import compress
from compiler.weights.pack import pack
from compiler.weights.profile import load_compression
from dspflight.perplexity import default_text, perplexity_rows, table
from hwmodel.hwconfig import load_hw
from sim.functional import Executor


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hw", default="u280")
    ap.add_argument("--tokens", type=int, default=2048)
    ap.add_argument("--compression", default="flightllm")
    args = ap.parse_args()
    ck = load_checkpoint("smollm2")
    hw = load_hw(args.hw)
    comp = load_compression(args.compression, hw)
    cm = compress(ck, comp, np.random.default_rng(0).integers(0, ck.model.vocab, (4, 64)))
    prog = compile_program(ck.model, comp, hw, 64, 32, Buckets(64, 1))
    ex = Executor(prog, hw, pack(cm, prog, hw))
    marks: list[tuple[str, float]] = []
    t0 = time.perf_counter()
    ex.generate(list(range(64)), 32,
                lambda ph, p, layer, x: marks.append((ph, time.perf_counter())) if layer == ck.model.layers - 1 else None)
    prefill_s = next(t for ph, t in marks if ph == "prefill") - t0
    dec = [t for ph, t in marks if ph == "decode"]
    decode_rate = (len(dec) - 1) / (dec[-1] - dec[0])
    print(f"executor on {hw.name}, {comp.name}: prefill 64 tokens {prefill_s:.2f} s ({64 / prefill_s:.1f} tokens/s, "
          f"first use of every weight record included), decode {decode_rate:.2f} tokens/s (target >= 5)")
    t1 = time.perf_counter()
    rows = perplexity_rows(ck, [comp], default_text(), args.tokens, executor_hw=hw)
    ppl_s = time.perf_counter() - t1
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(table(rows))
    print(f"perplexity run of {args.tokens} tokens, one profile, with the executor: {ppl_s:.0f} s (target <= 300 s); "
          f"peak memory {peak:.0f} MB")
    print(f"reproduce: .venv/bin/python bench/bench_real_model.py --hw {args.hw} --tokens {args.tokens} "
          f"--compression {args.compression}")
    return 0 if decode_rate >= 5 and ppl_s <= 300 else 1


if __name__ == "__main__":
    sys.exit(main())
