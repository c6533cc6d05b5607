"""Every instruction's fields checked against the design before a section runs.

A program that decodes can still name what the hardware does not have: an
operand past its buffer, a MISC function or SYS kind with no unit behind it, a
base register beyond the four, a channel group a core lacks, a transfer of
nothing. The cycle engine would time such a program as if it were fine; the
check refuses it with the section and instruction index instead.
"""
from __future__ import annotations

from functools import lru_cache

from hwmodel.errors import SimulationError
from hwmodel.hwconfig import HwConfig
from hwmodel.isa import BASE_REGISTERS, Instr, MiscFunc, Op, SysKind, isa_for
from hwmodel.operands import operand_spans
from hwmodel.placement import Placement
from hwmodel.program import Section

KNOWN = {"func": frozenset(MiscFunc), "fuse": frozenset(MiscFunc), "kind": frozenset(SysKind)}
NON_EMPTY = {Op.LD: ("x_len", "y_len", "z_len"), Op.ST: ("len",), Op.MM: ("rows", "kblk", "tokens"),
             Op.MV: ("rows", "kblk", "tokens"), Op.MISC: ("len16", "rows"), Op.SYS: ()}


def _fault(hw: HwConfig, placement: Placement, ins: Instr) -> str | None:
    """What is wrong with one instruction on this design, or None."""
    f = ins.f
    for name, codes in KNOWN.items():
        if name in f and f[name] not in codes:
            return f"unknown {name} code {f[name]}"
    for name in NON_EMPTY[ins.op]:
        if f[name] == 0:
            return f"{name}=0: an empty operation"
    if ins.op in (Op.LD, Op.ST):
        if f["base"] >= BASE_REGISTERS:
            return f"base register {f['base']} (there are {BASE_REGISTERS})"
        first, count = f["ch_first"], f["ch_count"]
        if count < 1 or any(first + count > len(pcs) for pcs in placement.core_pcs):
            return (f"channel group {first}+{count} is outside the cores' {min(map(len, placement.core_pcs))} "
                    f"channels (placement {placement.name})")
    if ins.op == Op.SYS and f["kind"] == SysKind.EXCHANGE and f["lines"] % hw.slrs:
        return f"an exchange of {f['lines']} lines does not split among {hw.slrs} cores"
    if ins.op in (Op.MM, Op.MV) and 2 << f["n_log2"] > hw.sparsity_m:
        return f"N={2 << f['n_log2']} is more than M={hw.sparsity_m}"
    for name, start, nbytes in operand_spans(hw, ins):
        buf = hw.buffer_of(start // hw.line_bytes) if start >= 0 else None
        if buf is None or start + nbytes > buf.base + buf.bytes:
            where = f"buffer {buf.name} ends at byte {buf.base + buf.bytes}" if buf else "no buffer there"
            return f"{name}: {nbytes} bytes at on-chip byte {start} overflow the on-chip buffers ({where})"
    return None


@lru_cache(maxsize=8)
def _verdicts(hw: HwConfig, placement: Placement) -> dict:
    """Faults already found on this design, by instruction: sections repeat most
    of their instructions, so each distinct one is checked once."""
    return {}


MAX_VERDICTS = 1 << 20     # distinct instructions remembered per design, a bound on memory


def check_section(hw: HwConfig, sec: Section, placement: Placement) -> None:
    """Refuse the first instruction of `sec` the design cannot run."""
    isa = isa_for(hw)
    verdicts = _verdicts(hw, placement)
    for i, ins in enumerate(sec.instrs):
        key = (ins.op, tuple(ins.f.items()))
        fault = verdicts.get(key, False)
        if fault is False:
            fault = _fault(hw, placement, Instr(ins.op, ins.wait, ins.release, isa.full_fields(ins)))
            if len(verdicts) >= MAX_VERDICTS:
                verdicts.clear()
            verdicts[key] = fault
        if fault:
            raise SimulationError(f"section {sec.name}: instruction {i} ({ins.op.name}): {fault}")
