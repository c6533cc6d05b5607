"""Instruction storage of length-adaptive compilation (FlightLLM §5.2).

Three ways to hold the instructions for every prompt length 1..P and every
decode context 1..C:
  separate  every length its own instruction stream, all layers and cores
            unrolled (FlightLLM: ~1.67 TB for LLaMA2-7B on the U280);
  bucketed  one unrolled stream per prefill chunk and decode bucket;
  shared    what dspflight stores: identical sections once, layers and cores
            sharing them through base registers (FlightLLM: 3.25 GB).
A length's own stream has the instruction count of its bucket (lengths in a
bucket differ only in field values), so `separate` is counted from the
bucket streams; tests check that on sampled lengths.
"""
from __future__ import annotations

import math
from typing import Callable

from compiler.model_config import ModelConfig
from compiler.pipeline import Buckets, compile_program
from compiler.weights.profile import Compression
from hwmodel.hwconfig import HwConfig
from hwmodel.isa import WORDS
from hwmodel.program import Program, Step, instruction_bytes
from hwmodel.published import STORAGE

def unrolled_bytes(prog: Program, step: Step, cores: int) -> int:
    """Bytes of a step's instructions with every call and core spelled out."""
    sizes = [4 * sum(WORDS[i.op] for i in s.instrs) for s in prog.sections]
    return cores * sum(sizes[c.section] for c in step.calls)


def storage_report(prog: Program, hw: HwConfig, max_prompt: int, max_context: int) -> dict:
    """The three storage figures for a program compiled with `cover=(max_prompt, max_context)`."""
    chunk, dbucket = prog.meta["prefill_bucket"], prog.meta["decode_bucket"]
    by_kind: dict[tuple[str, int], int] = {(s.phase, s.context): unrolled_bytes(prog, s, hw.slrs)
                                           for s in prog.steps}
    logits = by_kind[("logits", chunk)]
    chunks = [by_kind[("prefill", e)] for e in range(chunk, math.ceil(max_prompt / chunk) * chunk + 1, chunk)]
    prefix = [sum(chunks[:i + 1]) for i in range(len(chunks))]
    separate_prefill = sum(prefix[math.ceil(n / chunk) - 1] + logits for n in range(1, max_prompt + 1))
    separate_decode = sum(by_kind[("decode", math.ceil(c / dbucket) * dbucket)] for c in range(1, max_context + 1))
    bucketed = sum(by_kind.values())
    shared = instruction_bytes(prog)
    decode_step = by_kind[("decode", math.ceil(max_context / dbucket) * dbucket)]
    return {
        "model": prog.model, "hardware": prog.hw_name, "cores": hw.slrs,
        "max_prompt": max_prompt, "max_context": max_context,
        "prefill_bucket": chunk, "decode_bucket": dbucket,
        "separate_bytes": separate_prefill + separate_decode,
        "separate_prefill_bytes": separate_prefill, "separate_decode_bytes": separate_decode,
        "bucketed_bytes": bucketed, "shared_bytes": shared,
        "decode_step_bytes_per_core": decode_step // hw.slrs,
        "prefill_bytes_per_core": (prefix[-1] + logits) // hw.slrs,
        "sections": len(prog.sections), "steps": len(prog.steps),
        "flightllm": STORAGE,
    }


def compile_all_lengths(model: ModelConfig, comp: Compression, hw: HwConfig, max_prompt: int, max_context: int,
                        buckets: Buckets = Buckets(),
                        progress: Callable[[int, int], None] | None = None) -> Program:
    """One program for every prompt up to `max_prompt` and context up to `max_context`."""
    return compile_program(model, comp, hw, 1, 0, buckets, progress=progress, cover=(max_prompt, max_context))


def format_storage(r: dict) -> str:
    def size(b: float) -> str:
        for unit, div in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
            if b >= div:
                return f"{b / div:.2f} {unit}"
        return f"{b:.0f} B"

    f = r["flightllm"]
    return "\n".join([
        f"instruction storage, {r['model']} on {r['hardware']} ({r['cores']} cores), prompts 1-{r['max_prompt']}, "
        f"contexts 1-{r['max_context']} (buckets {r['prefill_bucket']}/{r['decode_bucket']}):",
        f"  every length compiled separately: {size(r['separate_bytes']):>10}   (FlightLLM: {size(f['separate_bytes'])})",
        f"  one stream per bucket:            {size(r['bucketed_bytes']):>10}",
        f"  shared sections (this program):   {size(r['shared_bytes']):>10}   (FlightLLM: {size(f['shared_bytes'])}; "
        f"{f['shared_bytes'] / r['shared_bytes']:.0f}x less here)",
        f"  per core: a decode step {size(r['decode_step_bytes_per_core'])}, a {r['max_prompt']}-token prefill "
        f"{size(r['prefill_bytes_per_core'])}; {r['sections']} distinct sections in {r['steps']} steps",
    ])
