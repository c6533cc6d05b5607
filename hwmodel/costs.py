"""Cost formulas per instruction: cycles, bytes moved and actions performed.

Used by the cycle engine (timing), the roofline (work and bytes) and the
energy report (actions x energy per action). Nothing outside hwmodel computes
a cycle count or a byte count of an instruction.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from hwmodel.chain_timing import tile_cycles
from hwmodel.hwconfig import HwConfig
from hwmodel.isa import Instr, MiscFunc, Op, SysKind, bits_of, n_of
from hwmodel.transfer import transfer_bytes

TWO_PASS = (MiscFunc.SOFTMAX, MiscFunc.LAYERNORM, MiscFunc.RMSNORM)


def sparsity_n(ins: Instr) -> int:
    return n_of(ins.f["n_log2"])


def weight_bits(ins: Instr) -> int:
    return bits_of(ins.f["wbits"])


def matrix_cycles(hw: HwConfig, ins: Instr) -> int:
    """MM/MV on one core's MPE: rows spread over the chains, each chain streams
    its rows' N:16 blocks; two tokens share a pass (INT8 packing)."""
    return tile_cycles(math.ceil(ins.f["rows"] / hw.chains), ins.f["kblk"], sparsity_n(ins), hw.chain_length,
                       ins.f["tokens"], hw.macs_per_dsp)


def misc_elements(ins: Instr) -> int:
    return ins.f["len16"] * 16 * ins.f["rows"]


def misc_cycles(hw: HwConfig, ins: Instr) -> int:
    passes = hw.sfu_passes_softmax if ins.f["func"] in TWO_PASS else 1
    return math.ceil(misc_elements(ins) * passes / hw.sfu_lanes) + hw.misc_latency_cycles


def sys_cycles(hw: HwConfig, ins: Instr) -> int:
    """SLR sync: a handshake; an exchange also moves each core's share to the others."""
    if ins.f["kind"] == SysKind.EXCHANGE:
        moved = ins.f["lines"] * hw.line_bytes * (hw.slrs - 1) / hw.slrs
        return hw.slr_sync_latency_cycles + math.ceil(moved / hw.slr_link_bytes_per_cycle)
    return hw.slr_sync_latency_cycles


def compute_cycles(hw: HwConfig, ins: Instr) -> int:
    """Cycles of an MM, MV, MISC or SYS instruction from start to finish (LD/ST
    depend on the data placement: hwmodel.transfer.transfer_timing)."""
    if ins.op in (Op.MM, Op.MV):
        return matrix_cycles(hw, ins)
    if ins.op == Op.MISC:
        return misc_cycles(hw, ins)
    if ins.op == Op.SYS:
        return sys_cycles(hw, ins)
    raise ValueError(f"{ins.op.name}: a transfer is timed by hwmodel.transfer.transfer_timing")


@dataclass(frozen=True)
class Work:
    """What one instruction does, for rooflines and energy."""
    macs: int = 0            # useful (non-zero) INT8 MACs
    dense_macs: int = 0      # MACs of the dense equivalent
    weights: int = 0         # weights dequantized
    sfu_ops: int = 0         # FP16 element-passes on the SFU
    hbm_bytes: int = 0
    buffer_bytes: int = 0    # on-chip bytes read + written
    link_bytes: int = 0      # bytes over SLR crossings


def work(hw: HwConfig, ins: Instr) -> Work:
    op = ins.op
    if op in (Op.MM, Op.MV):
        rows, k, t = ins.f["rows"], ins.f["kblk"] * hw.sparsity_m, ins.f["tokens"]
        nnz_k = ins.f["kblk"] * sparsity_n(ins)
        wbytes = math.ceil(rows * nnz_k * weight_bits(ins) / 8)
        return Work(macs=rows * nnz_k * t, dense_macs=rows * k * t, weights=rows * nnz_k,
                    buffer_bytes=wbytes + t * k + 4 * t * rows)
    if op == Op.MISC:
        passes = hw.sfu_passes_softmax if ins.f["func"] in TWO_PASS else 1
        n = misc_elements(ins)
        return Work(sfu_ops=n * passes, buffer_bytes=n * (passes + 1))
    if op in (Op.LD, Op.ST):
        b = transfer_bytes(hw, ins)
        return Work(hbm_bytes=b, buffer_bytes=b)
    if ins.f["kind"] == SysKind.EXCHANGE:
        return Work(link_bytes=ins.f["lines"] * hw.line_bytes * (hw.slrs - 1) // hw.slrs)
    return Work()
