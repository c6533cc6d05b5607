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
from hwmodel.isa import Instr, MiscFunc, Op, SysKind, sparsity_n
from hwmodel.operands import operand_spans
from hwmodel.transfer import transfer_bytes

TWO_PASS = (MiscFunc.SOFTMAX, MiscFunc.LAYERNORM, MiscFunc.RMSNORM)


def matrix_cycles(hw: HwConfig, ins: Instr) -> int:
    """MM/MV on one core's MPE: rows spread over the chains, each chain streams
    its rows' N:16 blocks; two tokens share a pass (INT8 packing)."""
    return tile_cycles(math.ceil(ins.f["rows"] / hw.chains), ins.f["kblk"], sparsity_n(ins), hw.chain_length,
                       ins.f["tokens"], hw.macs_per_dsp)


def misc_elements(ins: Instr) -> int:
    return ins.f["len16"] * 16 * ins.f["rows"]


def misc_passes(hw: HwConfig, ins: Instr) -> int:
    """Passes of the SFU over a MISC's input."""
    return hw.sfu_passes_softmax if ins.f["func"] in TWO_PASS else 1


def misc_cycles(hw: HwConfig, ins: Instr) -> int:
    return math.ceil(misc_elements(ins) * misc_passes(hw, ins) / hw.sfu_lanes) + hw.misc_latency_cycles


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
    """What an instruction does. Its buffer bytes are its operands' extents
    (`hwmodel.operands`), a two-pass SFU function reading its input twice."""
    op = ins.op
    moved = buffer_bytes(hw, ins)
    if op in (Op.MM, Op.MV):
        rows, k, t = ins.f["rows"], ins.f["kblk"] * hw.sparsity_m, ins.f["tokens"]
        nnz_k = ins.f["kblk"] * sparsity_n(ins)
        return Work(macs=rows * nnz_k * t, dense_macs=rows * k * t, weights=rows * nnz_k, buffer_bytes=moved)
    if op == Op.MISC:
        return Work(sfu_ops=misc_elements(ins) * misc_passes(hw, ins), buffer_bytes=moved)
    if op in (Op.LD, Op.ST):
        return Work(hbm_bytes=transfer_bytes(hw, ins), buffer_bytes=moved)
    if ins.f["kind"] == SysKind.EXCHANGE:
        return Work(link_bytes=ins.f["lines"] * hw.line_bytes * (hw.slrs - 1) // hw.slrs, buffer_bytes=moved)
    return Work()


def buffer_bytes(hw: HwConfig, ins: Instr) -> int:
    """On-chip bytes an instruction reads and writes: its operand extents, an SFU
    function's input once per pass."""
    passes = misc_passes(hw, ins) if ins.op == Op.MISC else 1
    return sum(nbytes * (passes if name == "src" else 1) for name, _, nbytes in operand_spans(hw, ins))
