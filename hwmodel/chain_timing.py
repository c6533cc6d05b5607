"""Timing of one configurable sparse DSP chain — the formula the RTL must meet.

A chain of L DSP48s (L a power of two, groups of two) streams N:16 blocks: each
cycle it consumes L non-zero weight positions, so one output row over `kblk`
blocks of 16 columns takes ceil(kblk*N/L) cycles. Each DSP multiplies one weight
by two packed INT8 activations (two tokens), so a pass serves two tokens.
The cycle simulator and the roofline use these functions; the cocotb benches
measure the gateware (`hwmodel.gateware.mv_tile`) and assert equality.
"""
from __future__ import annotations

import math

# Pipeline registers between a row's last beat entering the tile and its result
# leaving it, as built in hwmodel/gateware (sparse_chain.py, mv_tile.py):
DEQUANT_STAGES = 1     # dequantizer output register
DSP_STAGES = 3         # DSP48 A/B, M and P registers of the chain's last slice
REDUCE_STAGES = 1      # reduction-node register (overflow-adjusted partial sums)
ACCUMULATE_STAGES = 1  # 48-bit accumulator / result register (the group scale before it)


def chain_latency(chain_length: int) -> int:
    """Cycles from a row's last weight beat entering the tile to its result
    leaving it: the last lane waits chain_length - 1 cycles of input skew for
    the systolic P cascade, then the DSP, reduction and accumulator registers."""
    return DEQUANT_STAGES + (chain_length - 1) + DSP_STAGES + REDUCE_STAGES + ACCUMULATE_STAGES


def row_cycles(kblk: int, n: int, chain_length: int) -> int:
    """Cycles one chain spends on one output row (one token pair) of `kblk` N:16 blocks."""
    return math.ceil(kblk * n / chain_length)


def tile_cycles(rows: int, kblk: int, n: int, chain_length: int, tokens: int = 1,
                macs_per_dsp: int = 2) -> int:
    """Cycles for one chain to produce `rows` outputs for `tokens` activation vectors,
    from the first input to the last result (streaming with no stalls)."""
    passes = math.ceil(tokens / macs_per_dsp)
    return rows * passes * row_cycles(kblk, n, chain_length) + chain_latency(chain_length)
