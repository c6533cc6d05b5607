"""The cycle engine: token semantics, HBM channels, deadlock, buffers, formula = engine."""
from __future__ import annotations

import pytest

from hwmodel.costs import compute_cycles, transfer_cycles, transfer_data_cycles
from hwmodel.errors import SimulationError
from hwmodel.isa import Instr, MiscFunc, Op, SysKind, queues_to_mask
from hwmodel.program import Section
from sim.engine import time_section

LD, ST, MM, MV, MISC, SYS = (int(op) for op in Op)


def ld(u280, lines=64, wait=(), release=(), addr=None):
    addr = u280.buffers["wgt"].base // u280.line_bytes if addr is None else addr
    return Instr(Op.LD, queues_to_mask(LD, wait), queues_to_mask(LD, release),
                 dict(base=0, hbm=0, ch_first=0, ch_log2=5, addr=addr, x_len=lines, y_len=1, y_stride=0,
                      z_len=1, z_stride=0, zero=0))


def mv(rows=256, kblk=256, n_log2=3, wait=(), release=()):
    return Instr(Op.MV, queues_to_mask(MV, wait), queues_to_mask(MV, release),
                 dict(rows=rows, kblk=kblk, tokens=1, n_log2=n_log2, wbits=3, act=0, wgt=0, out=0, acc=0,
                      bias=0, fuse=0))


def misc(wait=(), release=()):
    return Instr(Op.MISC, queues_to_mask(MISC, wait), queues_to_mask(MISC, release),
                 dict(func=MiscFunc.SOFTMAX, len16=32, rows=1, src=0, src2=0, dst=0))


def test_single_instruction_takes_exactly_the_formula(u280):
    for ins in (mv(), mv(rows=100, kblk=7, n_log2=0), misc()):
        t = time_section(u280, Section("one", [ins]))
        assert t.cycles == compute_cycles(u280, ins)
    t = time_section(u280, Section("one", [ld(u280)]))
    assert t.cycles == transfer_cycles(u280, ld(u280))


def test_dependent_pair_serializes_and_independent_pair_overlaps(u280):
    a, b = ld(u280, release=[MV]), mv(wait=[LD])
    dep = time_section(u280, Section("dep", [a, b]))
    assert dep.cycles == transfer_cycles(u280, a) + compute_cycles(u280, b)
    free = time_section(u280, Section("free", [ld(u280), mv()]))
    assert free.cycles == max(transfer_cycles(u280, a), compute_cycles(u280, b))


def test_back_to_back_loads_hide_latency_but_share_channels(u280):
    a = ld(u280, lines=512)
    t = time_section(u280, Section("two", [a, ld(u280, lines=512)]))
    assert t.cycles == u280.hbm.latency_cycles + 2 * transfer_data_cycles(u280, a)


def test_double_buffered_stream_is_bound_by_the_slower_queue(u280):
    # LD i -> MV i; MV i frees the buffer for LD i+2: steady state runs at max(LD, MV)
    n = 20
    instrs = []
    for i in range(n):
        instrs.append(ld(u280, lines=2048, wait=[MV] if i >= 2 else [], release=[MV]))
        instrs.append(mv(rows=128, kblk=64, wait=[LD], release=[LD] if i < n - 2 else []))
    t = time_section(u280, Section("stream", instrs))
    per_ld = transfer_data_cycles(u280, instrs[0])
    assert per_ld > compute_cycles(u280, instrs[1])
    assert n * per_ld <= t.cycles <= n * per_ld + u280.hbm.latency_cycles + compute_cycles(u280, instrs[1])


def test_deadlock_names_the_head_of_every_stuck_queue(u280):
    instrs = [mv(wait=[MISC], release=[MISC]), misc(wait=[MV], release=[MV])]
    with pytest.raises(SimulationError) as err:
        time_section(u280, Section("loop", instrs))
    msg = str(err.value)
    assert "section loop: dependency deadlock" in msg
    assert "MV: #0 MV" in msg and "MISC: #1 MISC" in msg
    assert "\n" not in msg


def test_a_wait_nobody_releases_is_a_deadlock_not_a_hang(u280):
    with pytest.raises(SimulationError, match=r"queue heads: SYS: #1"):
        time_section(u280, Section("orphan", [ld(u280), Instr(Op.SYS, queues_to_mask(SYS, [ST]), 0,
                                                                   {"kind": SysKind.BARRIER, "lines": 0})]))


def test_unconsumed_token_is_reported(u280):
    with pytest.raises(SimulationError, match="unconsumed tokens LD->MV"):
        time_section(u280, Section("leak", [ld(u280, release=[MV])]))


def test_load_past_the_end_of_a_buffer(u280):
    end = (u280.buffers["wgt"].base + u280.buffers["wgt"].bytes) // u280.line_bytes
    with pytest.raises(SimulationError, match=r"instruction 0 \(LD\).*overflow.*buffer wgt"):
        time_section(u280, Section("big", [ld(u280, lines=64, addr=end - 10)]))
