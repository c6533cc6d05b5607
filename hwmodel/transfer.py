"""How long an LD or ST takes, from the addresses it touches.

A transfer is a set of runs of consecutive bursts (an LD's 3-D loop, an ST's
one run) in the space of its channel group. Burst b goes to the group's
virtual channel b mod n at PC offset b // n, so each run puts a contiguous
stretch on every PC it reaches. Per PC this gives the bytes moved and the
rows opened (a run that starts in another row than the last one ended in
opens a new row; rows are the address map's row size on each PC). All cores
run the same instruction at the same time on their own groups (lockstep), so
a PC shared by several cores serves all their bytes; the transfer ends when
its busiest PC is done (hwmodel.hbm.Hbm.stream_ns). Vectorized over runs and
channels: no loop per burst.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from hwmodel.hwconfig import HwConfig
from hwmodel.isa import Instr, Op
from hwmodel.placement import Placement

MAX_RUNS = 1 << 16       # longer loops are timed from their first MAX_RUNS runs, scaled (the pattern is periodic)


def transfer_bytes(hw: HwConfig, ins: Instr) -> int:
    """Bytes an LD or ST moves between HBM and an on-chip buffer."""
    if ins.op == Op.LD:
        return ins.f["x_len"] * ins.f["y_len"] * ins.f["z_len"] * hw.hbm.burst_bytes
    return ins.f["len"] * hw.hbm.burst_bytes


def _runs(f: dict, op: Op) -> tuple[np.ndarray, int]:
    """(start burst of every run, run length) of an LD's 3-D loop or an ST's one run."""
    if op == Op.ST:
        return np.array([f["hbm"]], np.int64), f["len"]
    y = np.arange(f["y_len"], dtype=np.int64) * f["y_stride"]
    z = np.arange(f["z_len"], dtype=np.int64) * f["z_stride"]
    return (f["hbm"] + z[:, None] + y[None, :]).reshape(-1), f["x_len"]


def _per_run(starts: np.ndarray, x: int, n: int, row_bursts: int) -> tuple[np.ndarray, np.ndarray]:
    """[run][channel] bursts moved and rows opened, runs in order."""
    v = np.arange(n, dtype=np.int64)[None, :]
    first = starts[:, None] + (v - starts[:, None]) % n               # first burst of the run on channel v
    last_b = starts[:, None] + x - 1
    last = last_b - (last_b - v) % n                                   # last burst of the run on channel v
    hit = first <= last
    count = np.where(hit, (last - first) // n + 1, 0)
    row_first = np.where(hit, first // n // row_bursts, -1)
    row_last = np.where(hit, last // n // row_bursts, -1)
    opens = np.where(hit, row_last - row_first + 1, 0)
    # a run continuing in the row the channel's previous run ended in opens nothing new
    idx = np.where(hit, np.arange(len(starts))[:, None], -1)
    prev = np.maximum.accumulate(idx, axis=0)
    prev = np.vstack([np.full((1, n), -1), prev[:-1]])
    prev_row = np.where(prev >= 0, np.take_along_axis(row_last, np.maximum(prev, 0), axis=0), -2)
    return count, opens - (hit & (prev_row == row_first))


@lru_cache(maxsize=65536)
def _channel_loads(op: Op, key: tuple, n: int, row_bursts: int) -> tuple[np.ndarray, np.ndarray]:
    f = dict(key)
    starts, x = _runs(f, op)
    if x == 0:
        return np.zeros(n), np.zeros(n)
    runs = len(starts)
    # one y-loop of constant stride is periodic in (start mod n x row): after a first period
    # (whose first run has no predecessor) every period moves and opens the same
    period = n * row_bursts // math.gcd(f.get("y_stride", 0) % (n * row_bursts), n * row_bursts)
    if op == Op.LD and f["z_len"] == 1 and runs > 3 * period:
        count, opens = _per_run(starts[:2 * period], x, n, row_bursts)
        whole, rest = divmod(runs - period, period)
        total = lambda a: a[:period].sum(0) + whole * a[period:].sum(0) + a[period:period + rest].sum(0)
        return total(count).astype(float), total(opens).astype(float)
    scale = 1.0
    if runs > MAX_RUNS:
        scale, starts = runs / MAX_RUNS, starts[:MAX_RUNS]
    count, opens = _per_run(starts, x, n, row_bursts)
    return count.sum(axis=0) * scale, opens.sum(axis=0) * scale


def channel_loads(hw: HwConfig, ins: Instr) -> tuple[np.ndarray, np.ndarray]:
    """(bytes, rows opened) on each virtual channel of the transfer's group, for one core."""
    return _loads(hw, ins.op, tuple(sorted(ins.f.items())))


def _loads(hw: HwConfig, op: Op, key: tuple) -> tuple[np.ndarray, np.ndarray]:
    row_bursts = hw.hbm.address_map.row_bytes // hw.hbm.burst_bytes
    count, opens = _channel_loads(op, key, dict(key)["ch_count"], row_bursts)
    return count * hw.hbm.burst_bytes, opens


@dataclass(frozen=True)
class TransferTiming:
    data_cycles: int          # cycles the busiest PC streams (the queue and the PCs are held this long)
    cycles: int               # latency + data: issue to last byte in place
    pcs: tuple[int, ...]      # every PC the instruction uses, over all cores


@lru_cache(maxsize=4096)
def _group_pcs(placement: Placement, first: int, count: int) -> tuple[np.ndarray, tuple[int, ...], bool]:
    """[core][channel] PC of a group, the sorted PCs all cores use, and whether any PC serves two cores."""
    table = np.array([placement.pcs_of(core, first, count) for core in range(len(placement.core_pcs))])
    pcs = tuple(int(p) for p in np.unique(table))
    return table, pcs, len(pcs) < table.size


def transfer_timing(hw: HwConfig, placement: Placement, ins: Instr) -> TransferTiming:
    """Time of an LD/ST executed by every core at once (lockstep)."""
    return transfer_timing_of(hw, placement, ins.op, tuple(sorted(ins.f.items())))


def transfer_pcs(placement: Placement, ins: Instr) -> tuple[int, ...]:
    """Every PC an LD/ST uses, over all cores (`TransferTiming.pcs`, without the timing)."""
    return _group_pcs(placement, ins.f["ch_first"], ins.f["ch_count"])[1]


@lru_cache(maxsize=65536)
def transfer_timing_of(hw: HwConfig, placement: Placement, op: Op, key: tuple) -> TransferTiming:
    """`transfer_timing` of an instruction given as its op and sorted fields."""
    core_bytes, busiest, pcs = _stream(hw, placement, op, key)
    dma = core_bytes / (hw.dma_port_gbps * hw.hbm.ports_per_pc)   # one core's side of its ports
    data = math.ceil(max(busiest, dma) * hw.clock_mhz / 1000)
    return TransferTiming(data, hw.hbm_latency_cycles + data, pcs)


_STREAMS: dict[tuple, tuple[float, float, tuple[int, ...]]] = {}
MAX_STREAMS = 1 << 16


def _stream(hw: HwConfig, placement: Placement, op: Op, key: tuple) -> tuple[float, float, tuple[int, ...]]:
    """(one core's bytes on its busiest channel, ns of the busiest PC, PCs used): the
    timing but for the clock, so designs of one `program_key` (a sweep's clock
    variants) compute it once."""
    memo = (hw.program_key, placement, op, key)
    hit = _STREAMS.get(memo)
    if hit is not None:
        return hit
    nbytes, opens = _loads(hw, op, key)
    core_bytes = float(nbytes.max())
    f = dict(key)
    table, pcs, shared = _group_pcs(placement, f["ch_first"], f["ch_count"])
    if shared:                      # a PC serves the sum of the cores' streams
        per_pc_bytes = np.zeros(hw.hbm.channels)
        per_pc_opens = np.zeros(hw.hbm.channels)
        np.add.at(per_pc_bytes, table, np.broadcast_to(nbytes, table.shape))
        np.add.at(per_pc_opens, table, np.broadcast_to(opens, table.shape))
        nbytes, opens = per_pc_bytes, per_pc_opens
    if len(_STREAMS) >= MAX_STREAMS:
        _STREAMS.clear()
    _STREAMS[memo] = hit = (core_bytes, float(hw.hbm.stream_ns(nbytes, opens).max()), pcs)
    return hit


def turnaround_cycles(hw: HwConfig, to_write: bool) -> int:
    """Dead time when a PC switches between reading and writing."""
    t = hw.hbm.timing.tRTW if to_write else hw.hbm.timing.tWTR
    return math.ceil(t * hw.clock_mhz / 1000)


def streaming_gbps(hw: HwConfig, placement: Placement, region: str = "weights") -> tuple[int, float]:
    """(PCs, GB/s) the cores can stream a region at when every PC runs a linear
    read: the roof of a memory-bound phase under this placement."""
    pcs = {pc for core in range(len(placement.core_pcs)) for pc in placement.pcs_of(core, *placement.group(region))}
    per_pc = min(hw.hbm.pc_link_gbps(), hw.dma_port_gbps * hw.hbm.ports_per_pc)
    return len(pcs), len(pcs) * per_pc
