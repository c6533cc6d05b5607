"""Timing of one configurable sparse DSP chain — the formula the RTL must meet.

A chain of L DSP48s (L a power of two, groups of two) streams N:16 blocks: each
cycle it consumes L non-zero weight positions, so one output row over `kblk`
blocks of 16 columns takes ceil(kblk*N/L) cycles. Each DSP multiplies one weight
by two packed INT8 activations (two tokens), so a pass serves two tokens.
The cycle simulator and the roofline use these functions; the cocotb benches
measure the gateware and assert equality.
"""
from __future__ import annotations

import math

INPUT_STAGES = 2       # A/B input register, M (multiplier) register of the DSP48E2
REDUCE_STAGES = 2      # reduction node + INT32 accumulator at the end of the chain


def chain_latency(chain_length: int) -> int:
    """Cycles from the first weight entering the chain to its partial sum leaving it."""
    return INPUT_STAGES + chain_length + REDUCE_STAGES


def row_cycles(kblk: int, n: int, chain_length: int) -> int:
    """Cycles one chain spends on one output row (one token pair) of `kblk` N:16 blocks."""
    return math.ceil(kblk * n / chain_length)


def tile_cycles(rows: int, kblk: int, n: int, chain_length: int, tokens: int = 1,
                macs_per_dsp: int = 2) -> int:
    """Cycles for one chain to produce `rows` outputs for `tokens` activation vectors,
    from the first input to the last result (streaming with no stalls)."""
    passes = math.ceil(tokens / macs_per_dsp)
    return rows * passes * row_cycles(kblk, n, chain_length) + chain_latency(chain_length)
