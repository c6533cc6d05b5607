"""Event-driven cycle engine over the six instruction queues of one core.

Each queue runs its instructions in order, one at a time. An instruction
starts when its queue is free and, for every queue in its wait mask, a token
from that queue is available (it consumes one); when it ends it releases one
token to every queue in its release mask. LD/ST also need their HBM
pseudo-channels (PCs) over all cores, which run the same section in
lockstep: a transfer starts when every PC it uses is free, after a
read/write turnaround where a PC changes direction. Cycle counts come from
hwmodel.costs and hwmodel.transfer. A section starts and ends with every
queue idle, and its transfers' timing does not depend on base registers
(hwmodel.placement), so it is timed once, wherever it runs.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from functools import lru_cache

from hwmodel.costs import Work, compute_cycles, work
from hwmodel.errors import SimulationError
from hwmodel.hwconfig import HwConfig
from hwmodel.isa import NUM_QUEUES, QUEUES, Instr, Op, mask_to_queues
from hwmodel.placement import Placement
from hwmodel.program import Section, format_instr
from hwmodel.transfer import transfer_timing, turnaround_cycles
from sim.checks import check_section

WORK_FIELDS = tuple(Work.__dataclass_fields__)
ST_QUEUE = int(Op.ST)


@dataclass
class OpTiming:
    """One op label within a section: when it ran and what it did."""
    start: int
    end: int
    busy: list[int] = field(default_factory=lambda: [0] * NUM_QUEUES)
    work: dict[str, int] = field(default_factory=lambda: dict.fromkeys(WORK_FIELDS, 0))


@dataclass
class SectionTiming:
    name: str
    cycles: int
    instructions: int
    busy: list[int]
    work: dict[str, int]
    ops: dict[str, OpTiming]
    trace: list[tuple[int, int, int, str]]   # (queue, start, end, label) per instruction


def _pc_atoms(chans: list) -> tuple[list, int]:
    """Group the PCs that every transfer of the section uses together (all of a
    plan's group, typically) into one resource each: same timing, fewer updates."""
    sets = sorted({c for c in chans if c is not None})
    member: dict[int, list[int]] = {}
    for k, pcs in enumerate(sets):
        for pc in pcs:
            member.setdefault(pc, []).append(k)
    atom_of = {sig: a for a, sig in enumerate(sorted({tuple(v) for v in member.values()}))}
    pc_atom = {pc: atom_of[tuple(v)] for pc, v in member.items()}
    per_set = {pcs: tuple(sorted({pc_atom[pc] for pc in pcs})) for pcs in sets}
    return [None if c is None else per_set[c] for c in chans], len(atom_of)


def time_section(hw: HwConfig, sec: Section, placement: Placement, keep_trace: bool = False) -> SectionTiming:
    check_section(hw, sec, placement)
    instrs = sec.instrs
    n = len(instrs)
    queues, cycles, occupy, waits, releases, chans = _instruction_costs(hw, placement, instrs)
    chans, atoms = _pc_atoms(chans)
    head = [0] * NUM_QUEUES
    busy_until = [0] * NUM_QUEUES
    running = [False] * NUM_QUEUES
    tokens = [[0] * NUM_QUEUES for _ in range(NUM_QUEUES)]   # tokens[p][c]: released by p for c
    ch_free = [0] * atoms
    ch_writing = [False] * atoms
    turn = {True: turnaround_cycles(hw, True), False: turnaround_cycles(hw, False)}
    events: list[tuple[int, int, int]] = []   # (time, queue, instr): instr done, or -1: queue may issue
    start_of = [0] * n
    now, done, last_end = 0, 0, 0
    lengths = [len(qu) for qu in queues]
    while done < n:
        for q in range(NUM_QUEUES):
            if running[q] or head[q] >= lengths[q] or busy_until[q] > now:
                continue
            i = queues[q][head[q]]
            w = waits[i]
            if w and not all(tokens[p][q] for p in w):
                continue
            for p in w:
                tokens[p][q] -= 1
            start = now if now > busy_until[q] else busy_until[q]
            pcs = chans[i]
            if pcs is not None:
                writing = q == ST_QUEUE
                for c in pcs:
                    ready = ch_free[c] + (turn[writing] if ch_writing[c] != writing else 0)
                    if ready > start:
                        start = ready
            free = start + occupy[i]
            if pcs is not None:
                for c in pcs:
                    ch_free[c] = free
                    ch_writing[c] = writing
            start_of[i] = start
            running[q] = True
            busy_until[q] = free
            head[q] += 1
            heapq.heappush(events, (start + cycles[i], q, i))
            if free < start + cycles[i]:
                heapq.heappush(events, (free, q, -1))
        if not events:
            raise _deadlock(sec, now, queues, head)
        now, q, i = heapq.heappop(events)
        if i < 0 or occupy[i] == cycles[i]:
            running[q] = False
        if i < 0:
            continue
        done += 1
        last_end = max(last_end, now)
        for c in releases[i]:
            tokens[q][c] += 1
    _check_all_tokens_consumed(sec, tokens)
    return _summarize(hw, sec, instrs, sec.label_of(), start_of, cycles, occupy, last_end, keep_trace)


def _deadlock(sec: Section, now: int, queues: list[list[int]], head: list[int]) -> SimulationError:
    """No instruction runs and none can issue: name each queue's waiting head."""
    heads = "; ".join(f"{QUEUES[q]}: #{queues[q][head[q]]} {format_instr(sec.instrs[queues[q][head[q]]])}"
                      for q in range(NUM_QUEUES) if head[q] < len(queues[q]))
    return SimulationError(f"section {sec.name}: dependency deadlock at cycle {now}; queue heads: {heads}")


def _check_all_tokens_consumed(sec: Section, tokens: list[list[int]]) -> None:
    """A section leaves no dependency token behind (the next would start with it)."""
    leftover = [(QUEUES[p], QUEUES[c]) for p in range(NUM_QUEUES) for c in range(NUM_QUEUES) if tokens[p][c]]
    if leftover:
        raise SimulationError(f"section {sec.name}: ends with unconsumed tokens {leftover[0][0]}->{leftover[0][1]}")


def _instruction_costs(hw: HwConfig, placement: Placement, instrs: list[Instr]) -> tuple:
    """Per instruction: its queue's list, cycles to done, cycles it occupies its
    queue (a transfer's data phase), the queues it waits on and releases, its PCs."""
    queues: list[list[int]] = [[] for _ in range(NUM_QUEUES)]
    cycles, occupy, waits, releases, chans = [], [], [], [], []
    for i, ins in enumerate(instrs):
        q = int(ins.op)
        queues[q].append(i)
        waits.append(mask_to_queues(q, ins.wait))
        releases.append(mask_to_queues(q, ins.release))
        if ins.op in (Op.LD, Op.ST):
            tt = transfer_timing(hw, placement, ins)
            cycles.append(tt.cycles)
            occupy.append(tt.data_cycles)
            chans.append(tt.pcs)
        else:
            cycles.append(compute_cycles(hw, ins))
            occupy.append(cycles[-1])
            chans.append(None)
    return queues, cycles, occupy, waits, releases, chans


@lru_cache(maxsize=65536)
def _work_items(hw: HwConfig, op: Op, items: tuple) -> tuple[tuple[str, int], ...]:
    """The non-zero work of an instruction (cached: sections repeat instructions)."""
    w = work(hw, Instr(op, 0, 0, dict(items)))
    return tuple((k, getattr(w, k)) for k in WORK_FIELDS if getattr(w, k))


def _summarize(hw, sec, instrs, labels, start_of, cycles, occupy, last_end, keep_trace) -> SectionTiming:
    busy = [0] * NUM_QUEUES
    total = dict.fromkeys(WORK_FIELDS, 0)
    ops: dict[str, OpTiming] = {}
    trace = []
    for i, ins in enumerate(instrs):
        q, s, e = int(ins.op), start_of[i], start_of[i] + cycles[i]
        busy[q] += occupy[i]
        lab = labels[i]
        o = ops.get(lab)
        if o is None:
            o = ops[lab] = OpTiming(s, e)
        o.start, o.end = min(o.start, s), max(o.end, e)
        o.busy[q] += occupy[i]
        for k, v in _work_items(hw, ins.op, tuple(ins.f.items())):
            o.work[k] += v
            total[k] += v
        if keep_trace:
            trace.append((q, s, e, lab))
    return SectionTiming(sec.name, last_end, len(instrs), busy, total, ops, trace)
