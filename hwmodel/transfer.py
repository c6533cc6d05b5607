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


def _runs(ins: Instr) -> tuple[np.ndarray, int, float]:
    """(start burst of every run, run length, scale for runs not enumerated)."""
    f = ins.f
    if ins.op == Op.ST:
        return np.array([f["hbm"]], np.int64), f["len"], 1.0
    y = np.arange(f["y_len"], dtype=np.int64) * f["y_stride"]
    z = np.arange(f["z_len"], dtype=np.int64) * f["z_stride"]
    starts = (f["hbm"] + z[:, None] + y[None, :]).reshape(-1)
    scale = 1.0
    if len(starts) > MAX_RUNS:
        scale = len(starts) / MAX_RUNS
        starts = starts[:MAX_RUNS]
    return starts, f["x_len"], scale


@lru_cache(maxsize=65536)
def _channel_loads(op: Op, key: tuple, n: int, row_bursts: int) -> tuple[np.ndarray, np.ndarray]:
    ins = Instr(op, f=dict(key))
    starts, x, scale = _runs(ins)
    if x == 0:
        return np.zeros(n), np.zeros(n)
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
    opens = opens - (hit & (prev_row == row_first))
    return count.sum(axis=0) * scale, opens.sum(axis=0) * scale


def channel_loads(hw: HwConfig, ins: Instr) -> tuple[np.ndarray, np.ndarray]:
    """(bytes, rows opened) on each virtual channel of the transfer's group, for one core."""
    n = ins.f["ch_count"]
    row_bursts = hw.hbm.address_map.row_bytes // hw.hbm.burst_bytes
    count, opens = _channel_loads(ins.op, tuple(sorted(ins.f.items())), n, row_bursts)
    return count * hw.hbm.burst_bytes, opens


@dataclass(frozen=True)
class TransferTiming:
    data_cycles: int          # cycles the busiest PC streams (the queue and the PCs are held this long)
    cycles: int               # latency + data: issue to last byte in place
    pcs: tuple[int, ...]      # every PC the instruction uses, over all cores


def transfer_timing(hw: HwConfig, placement: Placement, ins: Instr) -> TransferTiming:
    """Time of an LD/ST executed by every core at once (lockstep)."""
    nbytes, opens = channel_loads(hw, ins)
    first, count = ins.f["ch_first"], ins.f["ch_count"]
    per_pc_bytes: dict[int, float] = {}
    per_pc_opens: dict[int, float] = {}
    for core in range(len(placement.core_pcs)):
        for pc, b, o in zip(placement.pcs_of(core, first, count), nbytes, opens):
            per_pc_bytes[pc] = per_pc_bytes.get(pc, 0.0) + b
            per_pc_opens[pc] = per_pc_opens.get(pc, 0.0) + o
    pcs = tuple(sorted(per_pc_bytes))
    busiest = float(np.max(hw.hbm.stream_ns(np.array([per_pc_bytes[p] for p in pcs]),
                                            np.array([per_pc_opens[p] for p in pcs]))))
    dma = float(np.max(nbytes)) / (hw.dma_port_gbps * hw.hbm.ports_per_pc)   # one core's side of its ports
    ns = max(busiest, dma)
    data = math.ceil(ns * hw.clock_mhz / 1000)
    return TransferTiming(data, hw.hbm_latency_cycles + data, pcs)


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
