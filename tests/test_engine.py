"""The cycle engine: token semantics, HBM channels, deadlock, buffers, formula = engine."""
from __future__ import annotations

import pytest

import math

from compiler.passes.place_hbm import spread
from hwmodel.costs import compute_cycles
from hwmodel.errors import SimulationError
from hwmodel.isa import Instr, MiscFunc, Op, SysKind, queues_to_mask
from hwmodel.program import Section
from hwmodel.transfer import transfer_timing
from sim.engine import time_section as _time_section

LD, ST, MM, MV, MISC, SYS = (int(op) for op in Op)


def time_section(hw, sec):
    return _time_section(hw, sec, spread(hw))


def transfer_cycles(hw, ins):
    return transfer_timing(hw, spread(hw), ins).cycles


def transfer_data_cycles(hw, ins):
    return transfer_timing(hw, spread(hw), ins).data_cycles


def ld(u280, lines=64, wait=(), release=(), addr=None, count=10, rows=1, stride=0, hbm=0):
    addr = u280.buffers["wgt"].base // u280.line_bytes if addr is None else addr
    return Instr(Op.LD, queues_to_mask(LD, wait), queues_to_mask(LD, release),
                 dict(base=0, hbm=hbm, ch_first=0, ch_count=count, addr=addr, x_len=lines, y_len=rows,
                      y_stride=stride, z_len=1, z_stride=0, zero=0))


def st(u280, lines=64, wait=(), release=()):
    return Instr(Op.ST, queues_to_mask(ST, wait), queues_to_mask(ST, release),
                 dict(base=0, hbm=0, ch_first=0, ch_count=10, addr=0, len=lines))


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
    assert t.cycles == u280.hbm_latency_cycles + 2 * transfer_data_cycles(u280, a)


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
    assert n * per_ld <= t.cycles <= n * per_ld + u280.hbm_latency_cycles + compute_cycles(u280, instrs[1])


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


def test_a_linear_load_streams_at_the_sustained_rate_of_its_pcs(u280):
    """8192 bursts over a core's 10 PCs: each PC streams its share at 14.4 GB/s x (1 - tRFC/tREFI)."""
    ins = ld(u280, lines=8192)
    per_pc = math.ceil(8192 / 10) * 64
    ns = per_pc / (14.4 * (1 - 260 / 3900))
    assert transfer_data_cycles(u280, ins) == math.ceil(ns * 0.225)
    assert transfer_timing(u280, spread(u280), ins).pcs == tuple(range(30))   # every core's PCs, lockstep


def test_small_strided_reads_are_bound_by_row_openings(u280):
    """One burst per 2 KB row stride opens a row per read: slower per byte than a linear read, and
    slower on 4 PCs than on 10."""
    strided = ld(u280, lines=1, rows=4096, stride=32, count=10)
    linear = ld(u280, lines=4096, count=10)
    assert transfer_data_cycles(u280, strided) > 1.5 * transfer_data_cycles(u280, linear)
    narrow = ld(u280, lines=1, rows=4096, stride=32, count=4)
    assert transfer_data_cycles(u280, narrow) > 2 * transfer_data_cycles(u280, strided)


def test_timing_does_not_depend_on_the_row_aligned_base(u280):
    row_unit = 10 * u280.hbm.address_map.row_bytes // u280.hbm.burst_bytes
    for ins in (ld(u280, lines=777, hbm=5), ld(u280, lines=2, rows=300, stride=22, hbm=3)):
        moved = Instr(ins.op, 0, 0, dict(ins.f, hbm=ins.f["hbm"] + 7 * row_unit))
        assert transfer_timing(u280, spread(u280), moved) == transfer_timing(u280, spread(u280), ins)


def test_a_store_after_a_load_on_the_same_pcs_pays_the_turnaround(u280):
    a, b = ld(u280, lines=640), st(u280, lines=640)
    t = time_section(u280, Section("rw", [a, b]))
    turn = math.ceil(u280.hbm.timing.tRTW * 0.225)
    assert t.cycles == transfer_data_cycles(u280, a) + turn + transfer_cycles(u280, b)


def test_a_group_outside_the_cores_channels_is_refused(u280):
    with pytest.raises(SimulationError, match=r"instruction 0 \(LD\): channel group 5\+10 is outside"):
        time_section(u280, Section("wide", [Instr(Op.LD, 0, 0, dict(ld(u280).f, ch_first=5))]))


def test_periodic_shortcut_of_long_strided_loads_is_exact():
    """Long y-loops are timed from two periods of their (start mod channels x row) pattern;
    the result equals counting every run."""
    import numpy as np

    from hwmodel import transfer
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.choice([1, 3, 4, 8, 10, 13]))
        f = dict(hbm=int(rng.integers(0, 500)), x_len=int(rng.integers(1, 40)), y_len=int(rng.integers(1, 400)),
                 y_stride=int(rng.integers(0, 90)), z_len=1, z_stride=0, ch_count=n)
        fast = transfer._channel_loads.__wrapped__(Op.LD, tuple(sorted(f.items())), n, 16)
        count, opens = transfer._per_run(*transfer._runs(f, Op.LD), n, 16)
        assert np.array_equal(fast[0], count.sum(0)) and np.array_equal(fast[1], opens.sum(0)), f


def test_a_clock_variant_reuses_the_sections_plan_and_times_as_if_fresh(tmp_path, u280):
    """Designs with one program_key share a section's clock-free plan and transfer
    streams; the timing on the second design equals a timing made from nothing,
    and differs from the first's."""
    from conftest import edited_config

    from compiler.model_config import load_model
    from compiler.pipeline import Buckets, compile_program
    from compiler.weights.profile import load_compression
    from hwmodel.hwconfig import load_hw
    from hwmodel import transfer
    from sim import engine
    from sim.stats import program_placement
    fast = load_hw(edited_config(tmp_path, u280.source, "fast.yaml", "clock_mhz: 225", "clock_mhz: 300"))
    prog = compile_program(load_model("tiny"), load_compression("flightllm", u280), u280, 20, 4, Buckets(16, 16))
    placement = program_placement(prog, u280)
    sec = max(prog.sections, key=lambda s: len(s.instrs))
    engine._PLANS.clear()
    transfer._STREAMS.clear()
    slow = _time_section(u280, sec, placement)
    streams = len(transfer._STREAMS)
    shared = _time_section(fast, sec, placement)
    assert len(engine._PLANS) == 1                  # one plan served both designs
    assert len(transfer._STREAMS) == streams > 0    # and one set of transfer streams
    engine._PLANS.clear()
    transfer._STREAMS.clear()
    transfer.transfer_timing_of.cache_clear()
    assert shared == _time_section(fast, sec, placement)
    assert shared.cycles != slow.cycles                # HBM time is the same ns, more cycles of a faster clock
